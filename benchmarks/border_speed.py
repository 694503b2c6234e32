"""Prediction cost before/after a change to the tiling: interleaved A/B over source trees.

Each measurement is a fresh process that imports napari_deconoising from one tree's
``src`` (``--trees``: e.g. a worktree of the old commit and one of the new), predicts one
image with an untrained network of the given size (the cost does not depend on the
weights) in fp32 on the CPU with one thread, and reports CPU seconds (``process_time``,
which a shared CPU's neighbours do not inflate) and the voxels the network computed (the
sum of its input sizes over all forward passes) per voxel predicted. The trees alternate
within each round, so both see the same load.

Usage::

    python benchmarks/border_speed.py --trees ../old ../new --cases q3d-32x256x256 demo-2048x2048 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NETS = {
    # the 3D quality benchmark's network (speed3d.py "q3d")
    "q3d": dict(ndim=3, depth=2, channels=16, sigma=(2.0, 1.0, 1.0), patch=(16, 64, 64)),
    # the demo configuration (speed.py "demo")
    "demo": dict(ndim=2, depth=2, channels=32, sigma=1.0, patch=64),
}


def child(case: str) -> dict:
    import torch

    from napari_deconoising.core import DecoNoisingModel, DecoNoisingNet, TrainConfig, gaussian_psf

    name, shape = case.split("-")
    c = NETS[name]
    shape = tuple(int(n) for n in shape.split("x"))
    cfg = TrainConfig(ndim=c["ndim"], depth=c["depth"], channels=c["channels"], psf_sigma=c["sigma"],
                      patch_size=c["patch"])
    psf = gaussian_psf(c["sigma"], ndim=c["ndim"])
    torch.manual_seed(0)
    net = DecoNoisingNet(psf, depth=c["depth"], channels=c["channels"], ndim=c["ndim"])
    model = DecoNoisingModel(cfg, net.state_dict(), 100.0, 10.0, psf)
    computed = []
    build = model.build_network

    def counting_build():  # every forward pass adds its input's voxels
        n = build()
        n.register_forward_pre_hook(lambda mod, args: computed.append(int(args[0].numel())))
        return n

    object.__setattr__(model, "build_network", counting_build)
    img = np.random.default_rng(0).normal(100, 10, shape).astype(np.float32)
    axes = "ZYX" if c["ndim"] == 3 else "YX"
    model.predict(img[tuple(slice(0, min(n, 64)) for n in shape)], axes, device="cpu", precision="fp32")  # warm-up
    computed.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    model.predict(img, axes, device="cpu", precision="fp32")
    return {"cpu_seconds": time.process_time() - c0, "wall_seconds": time.perf_counter() - t0,
            "forward_passes": len(computed), "computed_per_predicted": sum(computed) / img.size}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", nargs="+", type=Path, default=[], help="source trees (each with src/)")
    ap.add_argument("--cases", nargs="+", default=["q3d-32x256x256", "demo-2048x2048"],
                    help="NET-SHAPE, NET one of " + ", ".join(NETS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child)))
        return []
    rows = []
    for rnd in range(a.rounds):
        for case in a.cases:
            for tree in a.trees:
                env = dict(os.environ, PYTHONPATH=str(tree.resolve() / "src"), OMP_NUM_THREADS="1")
                load = os.getloadavg()[0]
                r = subprocess.run([sys.executable, __file__, "--child", case], env=env, capture_output=True,
                                   text=True)
                if r.returncode != 0:
                    raise RuntimeError(r.stderr[-2000:])
                row = {"round": rnd, "case": case, "tree": str(tree), "load": [load, os.getloadavg()[0]],
                       **json.loads(r.stdout.strip().splitlines()[-1])}
                rows.append(row)
                print(f"[r{rnd}] {case} {tree}: {row['cpu_seconds']:.1f} CPU s ({row['wall_seconds']:.1f} s wall), "
                      f"{row['forward_passes']} passes, {row['computed_per_predicted']:.2f} voxels computed per voxel; "
                      f"load {load:.2f}", flush=True)
                if a.out:
                    a.out.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
