"""3D quality benchmark: 3D DecoNoising vs its Noise2Void mode vs 2D slice by slice.

All methods see the same synthetic stack (core/sample3d.py: filaments and vesicles,
anisotropic Gaussian PSF, Poisson + read noise), the same U-Net size and the same
number of voxels per optimiser step (the 2D run takes ``batch * Z-patch`` 2D patches
of the same Y/X size). Scores against the known ground truth, over the whole stack:

* denoised: PSNR of the denoised stack against the clean stack (phantom * PSF);
* deconvolved: PSNR of the predicted phantom against the true phantom (for
  Noise2Void its output is shown as the phantom estimate).

The returned model is the best by validation loss (the engine's default).

Usage::

    python benchmarks/quality3d.py                 # 300 steps, one seed, 32x160x160
    python benchmarks/quality3d.py --steps 600 --seeds 0 1 2
    python benchmarks/quality3d.py --smoke         # seconds; for the test suite
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

from napari_deconoising.core import TrainConfig, Trainer  # noqa: E402
from napari_deconoising.core.sample3d import make_sample_3d  # noqa: E402

SIGMA = (2.0, 1.0, 1.0)


def log(*a) -> None:
    print(*a, flush=True)


def run_method(noisy: np.ndarray, name: str, args: argparse.Namespace, seed: int) -> tuple[dict, float]:
    pz, py, px = args.patch
    common_cfg = dict(depth=args.depth, channels=args.channels, seed=seed, precision=args.precision,
                      device="cpu", steps_per_epoch=min(10, args.steps), epochs=max(1, args.steps // 10),
                      lr=args.lr)
    if name == "2D slice-by-slice DecoNoising":
        cfg = TrainConfig(ndim=2, psf_sigma=SIGMA[1:], patch_size=(py, px), batch_size=args.batch * pz,
                          **common_cfg)
    else:
        psf = "none" if "Noise2Void" in name else "gaussian"
        cfg = TrainConfig(ndim=3, psf=psf, psf_sigma=SIGMA, patch_size=(pz, py, px), batch_size=args.batch,
                          pool_z=args.pool_z, **common_cfg)
    t0 = time.perf_counter()
    trainer = Trainer(noisy, cfg, axes="ZYX")
    for _ in trainer.run():
        pass
    seconds = time.perf_counter() - t0
    pred = trainer.model.predict(noisy, "ZYX", device="cpu", precision="fp32")
    return {"denoised": pred.denoised, "phantom": pred.deconvolved,
            "pool_z": trainer.config.pool_z}, seconds


METHODS = ("3D DecoNoising", "3D Noise2Void mode", "2D slice-by-slice DecoNoising")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 160, 160])
    ap.add_argument("--patch", type=int, nargs=3, default=[16, 64, 64])
    ap.add_argument("--batch", type=int, default=4, help="3D patches per step")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pool-z", default=None, choices=["auto", "yes", "no"])
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--out", default="bench-output", help="folder for quality3d.json")
    ap.add_argument("--methods", nargs="+", choices=range(len(METHODS)), type=int, default=list(range(len(METHODS))),
                    help="which methods to run: " + ", ".join(f"{i} = {m}" for i, m in enumerate(METHODS)))
    ap.add_argument("--smoke", action="store_true", help="a tiny run to check the script works")
    args = ap.parse_args(argv)
    args.pool_z = {None: None, "auto": None, "yes": True, "no": False}[args.pool_z]
    if args.smoke:
        args.steps, args.shape, args.patch, args.batch, args.channels = 2, [8, 40, 40], [8, 32, 32], 2, 4
    info = common.machine_info()
    log(common.machine_line(info))
    results: dict = {}
    for seed in args.seeds:
        s = make_sample_3d(tuple(args.shape), sigma=SIGMA, seed=seed)
        row = {"raw": {"denoised": common.psnr(s.clean, s.noisy), "deconvolved": common.psnr(s.phantom, s.noisy)}}
        log(f"seed {seed}: raw {row['raw']['denoised']:.2f} dB (vs clean), {row['raw']['deconvolved']:.2f} dB "
            "(vs phantom)")
        for name in (METHODS[i] for i in args.methods):
            out, seconds = run_method(s.noisy, name, args, seed)
            row[name] = {"denoised": common.psnr(s.clean, out["denoised"]),
                         "deconvolved": common.psnr(s.phantom, out["phantom"]), "seconds": seconds,
                         "pool_z": out["pool_z"]}
            log(f"seed {seed}: {name:32s} denoised {row[name]['denoised']:.2f} dB, deconvolved "
                f"{row[name]['deconvolved']:.2f} dB ({seconds:.0f} s)")
        results[str(seed)] = row
    summary = {"machine": info, "args": {k: v for k, v in vars(args).items()}, "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality3d.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
