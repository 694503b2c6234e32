"""PSF width from 3D data (``--psf-sigma auto`` on a stack): the learned sigma and its lateral check.

For each lateral sigma, a stack ``make_sample_3d(shape, sigma=(ratio * s, s, s))`` (filaments and
vesicles, Poisson and read noise) is made; the network learns the PSF sigma per axis in one run
(:class:`~napari_deconoising.core.learned_psf.LearnedSigmaTrainer`, as ``--psf-sigma auto`` does),
and its estimate is checked against the lines and edges of slabs of the stack
(:mod:`napari_deconoising.core.psf_check`). With ``--retrain`` the model is then trained with the
checked sigma and with the true one, and both PSNRs are given.

Goal (issue 12): estimate within 0.15 px of the truth (here: the lateral sigma).

``--edges-only`` skips the training: only the lateral sigma of the slabs' lines and edges, for
the data seeds of ``--data-seeds`` (``--slabs``/``--slab-planes`` change the slabs, e.g. ``--slabs
1 --slab-planes 1000`` sums every plane).

Usage::

    python benchmarks/psf_estimation3d.py --sigmas 0.7 1.5 2.5 --seed 0
    python benchmarks/psf_estimation3d.py --edges-only --sigmas 0.7 1.0 1.5 2.0 2.5 --data-seeds 0 1 2
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

from napari_deconoising.core import TrainConfig, Trainer, psf_check  # noqa: E402
from napari_deconoising.core.learned_psf import LearnedSigmaTrainer  # noqa: E402
from napari_deconoising.core.sample3d import make_sample_3d  # noqa: E402


def psnr_of(model, s) -> float:
    den = model.predict(s.noisy, axes="ZYX", precision="fp32").denoised
    return float(common.psnr(s.clean, den))


def trained(s, config: TrainConfig) -> float:
    trainer = Trainer(s.noisy, config, axes="ZYX")
    for _ in trainer.run():
        pass
    return psnr_of(trainer.model, s)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.7, 1.5, 2.5], help="lateral sigmas (px)")
    ap.add_argument("--ratio", type=float, default=2.0, help="axial sigma / lateral sigma")
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 160, 160])
    ap.add_argument("--seed", type=int, default=0, help="training seed (the data is seed 0)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, nargs=3, default=[16, 64, 64])
    ap.add_argument("--retrain", action="store_true", help="train with the checked and the true sigma")
    ap.add_argument("--edges-only", action="store_true", help="no training: the slabs' edge fit alone")
    ap.add_argument("--data-seeds", type=int, nargs="+", default=[0], help="with --edges-only")
    ap.add_argument("--slabs", type=int, default=psf_check.SLABS)
    ap.add_argument("--slab-planes", type=int, default=psf_check.SLAB_PLANES)
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "psf_estimation3d")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    print(common.machine_line(info), flush=True)
    if a.slabs < 1 or a.slab_planes < 1:
        ap.error("--slabs and --slab-planes must be at least 1")
    saved = psf_check.SLABS, psf_check.SLAB_PLANES
    psf_check.SLABS, psf_check.SLAB_PLANES = a.slabs, a.slab_planes
    try:  # the engine's own values again afterwards (the script runs inside the tests too)
        return edges_only(a, info) if a.edges_only else estimate_all(a, info)
    finally:
        psf_check.SLABS, psf_check.SLAB_PLANES = saved


def estimate_all(a: argparse.Namespace, info: dict) -> list[dict]:
    """The learning run, its check and (with --retrain) both trainings, per lateral sigma."""
    cfg = TrainConfig(ndim=3, epochs=max(1, a.steps // 10), steps_per_epoch=10, batch_size=a.batch,
                      patch_size=tuple(a.patch), depth=a.depth, channels=a.channels, seed=a.seed)
    rows = []
    for lateral in a.sigmas:
        truth = (a.ratio * lateral, lateral, lateral)
        s = make_sample_3d(tuple(a.shape), sigma=truth, seed=0)
        t0 = time.perf_counter()
        learner = LearnedSigmaTrainer(s.noisy, cfg, axes="ZYX")
        for _ in learner.run():
            pass
        plain = learner.estimate(check_edges=False)
        t1 = time.perf_counter()
        checked = learner.estimate()
        row = {"true": truth, "seed": a.seed, "learned": plain["learned"], "learned_clear": plain["clear"],
               "edges": checked["edges"], "checked": checked["sigma"], "clear": checked["clear"],
               "method": checked["method"], "message": checked["message"],
               "seconds_learn": t1 - t0, "seconds_check": time.perf_counter() - t1,
               "trail": [h["psf_sigma"] for h in learner.history]}
        lat = checked["sigma"] if isinstance(checked["sigma"], float) else float(np.mean(checked["sigma"][-2:]))
        row["lateral_error"] = lat - lateral
        if a.retrain:
            row["psnr_true"] = trained(s, cfg.replace(psf_sigma=truth))
            row["psnr_checked"] = trained(s, cfg.replace(psf_sigma=checked["sigma"]))
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "trail"}), flush=True)
        (a.out / "psf_estimation3d.json").write_text(json.dumps(
            {"machine": info, "args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=1))
    return rows


def edges_only(a: argparse.Namespace, info: dict) -> list[dict]:
    """The lateral sigma of the slabs' lines and edges, per lateral sigma and data seed."""
    rows = []
    for lateral in a.sigmas:
        for seed in a.data_seeds:
            s = make_sample_3d(tuple(a.shape), sigma=(a.ratio * lateral, lateral, lateral), seed=seed)
            t0 = time.perf_counter()
            found = psf_check.edge_sigma([s.noisy])
            row = {"lateral": lateral, "data_seed": seed, "edges": found, "seconds": time.perf_counter() - t0,
                   "error": None if found is None else found["sigma"] - lateral}
            rows.append(row)
            print(json.dumps(row), flush=True)
            (a.out / "psf_edges3d.json").write_text(json.dumps(
                {"machine": info, "args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=1))
    ok = sum(r["error"] is not None and abs(r["error"]) <= 0.15 for r in rows)
    print(f"within 0.15 px: {ok} of {len(rows)}")
    return rows


if __name__ == "__main__":
    main()
