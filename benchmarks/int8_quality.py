"""What int8 prediction costs in quality: fp32 against int8 on trained models, over seeds.

For each dataset of the quality benchmark and each training seed, one DecoNoising model and
one Noise2Void model are trained (the ``default`` preset of ``quality.py``: 256 px images,
depth 2, 32 channels, 600 steps), then each predicts the noisy images in fp32 and in int8.
Reported per run: PSNR of the denoised output against the clean image and of the
deconvolved output against the phantom in both precisions, int8's error against fp32
(the RMS difference relative to fp32's spread, per output), and the engine's own check on the
image's crops (int8 is forced here; the engine falls back to fp32 beyond the tolerance).

    python benchmarks/int8_quality.py --seeds 0 1 2 --out bench-output/int8-quality
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import datasets  # noqa: E402
from quality_runs import PRESETS  # noqa: E402

from napari_deconoising.core import TrainConfig, Trainer  # noqa: E402
from napari_deconoising.core.precision import TOLERANCE  # noqa: E402


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / (np.std(b) or 1.0))


def run(dname: str, seed: int, preset, sigma: float) -> list[dict]:
    ds = datasets.make(dname, preset.n_images, preset.size, seed=0, sigma=sigma)
    rows = []
    for method, psf_sigma in (("DecoNoising", ds.sigma), ("Noise2Void", 0.0)):
        cfg = TrainConfig(epochs=preset.steps // preset.steps_per_epoch, steps_per_epoch=preset.steps_per_epoch,
                          batch_size=preset.batch, patch_size=preset.patch, depth=preset.depth,
                          channels=preset.channels, seed=seed, psf_sigma=psf_sigma, psf="gaussian")
        t0 = time.perf_counter()
        trainer = Trainer(ds.noisy, cfg, axes="SYX")
        for _ in trainer.run():
            pass
        model, train_s = trainer.model, time.perf_counter() - t0
        out, plans = {}, []
        # int8 is forced (no fall-back), so that its PSNR is measured whatever its check says; the
        # check's own error and verdict at the engine's tolerance are recorded beside it.
        tol = TOLERANCE["predict"]
        for prec in ("fp32", "int8"):
            TOLERANCE["predict"] = float("inf") if prec == "int8" else tol
            try:
                out[prec] = model.predict(ds.noisy, axes="SYX", device="cpu", precision=prec,
                                          on_plan=plans.append)
            finally:
                TOLERANCE["predict"] = tol
        check = float(plans[-1].reason.rsplit("error ", 1)[-1].split("%")[0]) / 100
        row = {"dataset": dname, "seed": seed, "method": method, "train_s": train_s,
               "int8_check_error": check, "int8_kept_by_engine": check <= tol}
        n = ds.noisy.shape[0]
        for prec, pred in out.items():
            row[f"psnr_{prec}"] = float(np.mean([common.psnr(ds.clean[i], pred.denoised[i]) for i in range(n)]))
            if method == "DecoNoising":
                row[f"phantom_psnr_{prec}"] = float(np.mean([common.psnr(ds.phantom[i], pred.deconvolved[i])
                                                             for i in range(n)]))
        row["int8_err_denoised"] = _rel(out["int8"].denoised, out["fp32"].denoised)
        row["int8_err_deconvolved"] = _rel(out["int8"].deconvolved, out["fp32"].deconvolved)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="text,filaments,nuclei")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    ap.add_argument("--depth", type=int, help="U-Net depth (default: the preset's)")
    ap.add_argument("--channels", type=int, help="first-level channels (default: the preset's)")
    ap.add_argument("--data-sigma", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "int8-quality")
    a = ap.parse_args(argv)
    preset = PRESETS[a.preset]
    preset.steps = a.steps or preset.steps
    preset.depth = a.depth or preset.depth
    preset.channels = a.channels or preset.channels
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for dname in a.datasets.split(","):
        for seed in a.seeds:
            rows += run(dname, seed, preset, a.data_sigma)
    info = common.machine_info()
    (a.out / "int8_quality.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    print("| data | method | seed | int8 check (kept?) | denoised PSNR fp32 / int8 | deconvolved PSNR fp32 / int8 "
          "| int8 error, denoised / deconvolved |")
    print("|---|---|---:|---|---|---|---|")
    for r in rows:
        dec = (f"{r['phantom_psnr_fp32']:.3f} / {r['phantom_psnr_int8']:.3f}" if "phantom_psnr_fp32" in r else "")
        kept = "yes" if r["int8_kept_by_engine"] else "no"
        print(f"| {r['dataset']} | {r['method']} | {r['seed']} | {r['int8_check_error']:.2%} ({kept}) "
              f"| {r['psnr_fp32']:.3f} / {r['psnr_int8']:.3f} | {dec} "
              f"| {r['int8_err_denoised']:.2%} / {r['int8_err_deconvolved']:.2%} |")


if __name__ == "__main__":
    main()
