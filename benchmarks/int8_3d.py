"""int8 against fp32 and bf16 for a trained 3D model: time, error and PSNR on one volume.

    python benchmarks/int8_3d.py MODEL.pt NOISY.tif [CLEAN.tif]

Each precision predicts the whole volume once after a warm-up on a corner (auto's probe is not
involved: the precisions are given). int8's check against fp32 is not relaxed, so the line says
which precision actually ran.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import tifffile


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("noisy")
    ap.add_argument("clean", nargs="?")
    ap.add_argument("--precisions", default="fp32,bf16,int8")
    a = ap.parse_args(argv)
    from napari_deconoising.core import load_model

    model = load_model(a.model)
    vol = tifffile.imread(a.noisy).astype(np.float32)
    clean = tifffile.imread(a.clean).astype(np.float32) if a.clean else None
    out = {}
    for prec in a.precisions.split(","):
        model.predict(vol[:8, :128, :128], "ZYX", device="cpu", precision=prec)  # warm-up
        plans = []
        t0 = time.perf_counter()
        pred = model.predict(vol, "ZYX", device="cpu", precision=prec, on_plan=plans.append)
        dt = time.perf_counter() - t0
        row = {"precision": prec, "ran": plans[-1].precision, "reason": plans[-1].reason,
               "seconds": dt, "mvoxel_per_s": vol.size / 1e6 / dt}
        if clean is not None:
            rng = float(clean.max() - clean.min())
            row["psnr"] = float(10 * np.log10(rng**2 / np.mean((pred.denoised - clean) ** 2)))
        out[prec] = pred
        if prec != "fp32" and "fp32" in out:
            for k in ("denoised", "deconvolved"):
                a_, b_ = getattr(pred, k), getattr(out["fp32"], k)
                row[f"error_{k}"] = float(np.sqrt(np.mean((a_ - b_) ** 2)) / b_.std())
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
