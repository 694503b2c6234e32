"""CAREamics' 3D Noise2Void on the 3D quality benchmark's stacks (the external peer).

Same data and budget as ``benchmarks/quality3d.py``: ``make_sample_3d(shape, sigma=(2, 1, 1),
seed)``, U-Net depth 2 with 16 initial channels, 4 patches of 16 x 64 x 64 per step,
Adam at lr 1e-3, the same number of steps. CAREamics 0.3.5 runs in the benchmark venv
(``common.peer_python``; ``DECONOISING_BENCH_VENV``) through ``careamics_runner.py``
with axes ZYX and its default augmentation (X/Y flips and 90-degree rotations in YX;
it has no Z flip, ours flips Z too).

CAREamics samples patches on a grid of patch-sized cells (32 x 160 x 160 has 8 cells of
16 x 64 x 64), so one cell is held out for validation (``n_val_patches=1``; its default,
8, would leave nothing to train on) and the last, partial batch of each pass is dropped
so that every step sees 4 patches, as ours. The whole stack is predicted twice: from the
last weights (CAREamics' default for Noise2Void) and from the checkpoint with the lowest
validation loss (what our engine returns). Caveat: in the 150-step runs of 2026-11-25 the two
outputs were identical although the best checkpoints were from other steps (see
docs/benchmarks.md, "Checkpoint caveat"); treat the pair as one result until that is
understood. Scores, as in quality3d.json: denoised PSNR
against the clean stack and, for the phantom column, the same output against the
phantom (Noise2Void does not deconvolve).

Usage::

    python benchmarks/peer3d.py --steps 600 --seeds 0 1 2 --out bench-output/peer3d
    python benchmarks/peer3d.py --smoke       # seconds; skipped by the tests without CAREamics
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from quality3d import add_budget_args  # noqa: E402

from napari_deconoising.core.config import default_lr  # noqa: E402
from napari_deconoising.core.sample3d import make_sample_3d  # noqa: E402

SIGMA = (2.0, 1.0, 1.0)
METHODS = {"last": "CAREamics 3D N2V (last weights)", "best": "CAREamics 3D N2V (best validation)"}


def log(*a) -> None:
    print(*a, flush=True)


def run_seed(py: Path, noisy: np.ndarray, args: argparse.Namespace, seed: int) -> tuple[dict, dict]:
    """Train CAREamics on ``noisy`` and return ``({"last": pred, "best": pred}, runner result)``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "noisy.npy"
        np.save(src, noisy)
        outs = {k: str(Path(tmp) / f"{k}.npy") for k in METHODS}
        job = {"mode": "quality", "ndim": 3, "noisy": str(src), "steps": args.steps, "depth": args.depth,
               "channels": args.channels, "patch": list(args.patch), "batch": args.batch, "seed": seed,
               "lr": default_lr(3, args.channels) if args.lr is None else args.lr,  # "auto": our engine's rate
               "threads": args.threads, "n_val_patches": 1, "drop_last": True,
               "checkpoints": outs}
        t0 = time.perf_counter()
        res = common.run_peer(py, job)
        res["wall_seconds"] = time.perf_counter() - t0
        return {k: np.load(v) for k, v in outs.items()}, res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_budget_args(ap, steps=600, seeds=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the CAREamics process")
    ap.add_argument("--no-install", action="store_true", help="fail instead of installing CAREamics")
    ap.add_argument("--out", default="bench-output", help="folder for peer3d.json")
    ap.add_argument("--smoke", action="store_true", help="a tiny run to check the script works")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.shape, args.patch, args.batch, args.channels = 2, [16, 48, 48], [8, 16, 16], 2, 8
    py, note = common.peer_python(install=not args.no_install, log=log)
    if py is None:
        raise SystemExit(f"peer3d: {note}")
    info = common.machine_info()
    log(common.machine_line(info))
    log(note)
    results: dict = {}
    for seed in args.seeds:
        s = make_sample_3d(tuple(args.shape), sigma=SIGMA, seed=seed)
        row = {"raw": {"denoised": common.psnr(s.clean, s.noisy), "deconvolved": common.psnr(s.phantom, s.noisy)}}
        preds, res = run_seed(py, s.noisy, args, seed)
        for key, name in METHODS.items():
            row[name] = {"denoised": common.psnr(s.clean, preds[key]),
                         "deconvolved": common.psnr(s.phantom, preds[key]),
                         "seconds": res["train_seconds"] + res[f"predict_seconds_{key}"],
                         "checkpoint": res[f"checkpoint_{key}"]}
            log(f"seed {seed}: {name:36s} denoised {row[name]['denoised']:.2f} dB, vs phantom "
                f"{row[name]['deconvolved']:.2f} dB (raw {row['raw']['denoised']:.2f} dB; "
                f"{row[name]['seconds']:.0f} s)")
        row["peer"] = {k: v for k, v in res.items() if k not in ("step_durations", "step_intervals", "batch_sizes")}
        results[str(seed)] = row
    info["load_avg_1min_at_end"] = round(__import__("os").getloadavg()[0], 2)
    summary = {"machine": info, "peer": note, "args": vars(args), "results": results}
    common.write_summary(args.out, "peer3d.json", summary)
    return summary


if __name__ == "__main__":
    main()
