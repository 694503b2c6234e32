"""Can the PSF width be found from the noisy data? Both routes against the known sigma.

For each dataset and true sigma, on data made with that sigma:

* ``true``: DecoNoising trained with the true sigma (the reference PSNR);
* route (a), ``learned``: one run whose PSF sigma is a trainable parameter
  (:mod:`napari_deconoising.core.learned_psf`), started at ``--init-sigma``, for
  ``--estimate-steps``; its PSNR is that run's own best model (learned sigma fixed);
* ``retrain`` (with ``learned``): a fresh training with the learned sigma (the
  estimate's, i.e. the default when the estimate is not clear), ``--steps`` long;
* route (b), ``search``: :func:`napari_deconoising.core.psf_search.search_psf_sigma`
  (short runs scored by validation loss), then a training with the chosen sigma.

Goal (issue 12): estimate within 0.15 px of the truth, PSNR within 0.2 dB of ``true``.

Usage::

    python benchmarks/psf_estimation.py --datasets text --sigmas 0.7 1.5 2.5
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

from napari_deconoising.core import TrainConfig, Trainer  # noqa: E402
from napari_deconoising.core.learned_psf import (  # noqa: E402
    SIGMA_PULL,
    learned_sigma_model,
    learned_sigma_trainer,
)
from napari_deconoising.core.psf_search import search_psf_sigma  # noqa: E402


def log(*a):
    print(*a, flush=True)


def model_psnr(ds: datasets.Dataset, model) -> float:
    den = model.predict(ds.noisy, axes="SYX", precision="fp32").denoised
    return float(np.mean([common.psnr(ds.clean[i], den[i]) for i in range(len(den))]))


def trained(ds: datasets.Dataset, config: TrainConfig) -> tuple[float, float]:
    """PSNR and best validation loss of one training with ``config``."""
    trainer = Trainer(ds.noisy, config, axes="SYX")
    for _ in trainer.run():
        pass
    return model_psnr(ds, trainer.model), trainer.best_val


def learned(ds: datasets.Dataset, config: TrainConfig, a: argparse.Namespace) -> dict:
    """Route (a) in one run: the learned sigma, the PSNR of that same model, the trail."""
    trainer = learned_sigma_trainer(ds.noisy, config, axes="SYX", init_sigma=a.init_sigma, sigma_lr=a.sigma_lr,
                                    param=a.sigma_param, sigma_pull=a.sigma_pull)
    for _ in trainer.run():
        pass
    model = learned_sigma_model(trainer)
    est = trainer.estimate(check_edges=not a.no_edge_check)
    plain = trainer.estimate(check_edges=False)  # the learning run alone, as before stop 21
    best = min(trainer.history, key=lambda h: h["val_loss"])["epoch"]
    return {"learned_sigma": float(np.mean(model.config.sigma_per_axis)), "psnr_learned": model_psnr(ds, model),
            "estimate_clear": est["clear"], "estimate_sigma": est["sigma"], "estimate_message": est["message"],
            "estimate_method": est["method"], "edge": est.get("edges"),
            "unchecked_clear": plain["clear"], "unchecked_sigma": plain["sigma"],
            "best_epoch": best, "val_learned": trainer.best_val,
            "trail": [round(float(np.mean(h["psf_sigma"])), 3) for h in trainer.history]}


def add_network_args(ap: argparse.ArgumentParser) -> None:
    """The network and data size every PSF-width benchmark shares (small, so that it fits a CPU)."""
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="text,filaments")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.7, 1.0, 1.5, 2.0, 2.5])
    ap.add_argument("--no-edge-check", action="store_true",
                    help="the learned estimate without its check against the sharpest lines and edges (before stop 21)")
    ap.add_argument("--routes", default="learned,retrain,search", help="of learned,retrain,search ('none': only "
                    "the true sigma); retrain needs learned")
    ap.add_argument("--steps", type=int, default=300, help="steps of every full training")
    ap.add_argument("--search-steps", type=int, default=150, help="steps of each short search run")
    ap.add_argument("--init-sigma", type=float, default=3.0, help="route (a): starting sigma")
    ap.add_argument("--sigma-lr", type=float, default=1e-2, help="route (a): learning rate of sigma")
    ap.add_argument("--sigma-param", default="sigmoid", choices=["sigmoid", "log"], help="route (a): sigma's parameter")
    ap.add_argument("--sigma-pull", type=float, default=SIGMA_PULL, help="route (a): weight of -ln(sigma) in the loss")
    ap.add_argument("--estimate-steps", type=int, help="route (a): steps of the learning run (default --steps)")
    ap.add_argument("--true-from", type=Path, help="take the true sigma's PSNR from this psf_estimation.json")
    add_network_args(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "psf_estimation")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    log(common.machine_line(info))
    base = TrainConfig(epochs=max(1, a.steps // 10), steps_per_epoch=10, batch_size=a.batch, patch_size=64,
                       depth=a.depth, channels=a.channels, seed=a.seed)
    routes = a.routes.split(",")
    est_cfg = base.replace(epochs=max(1, (a.estimate_steps or a.steps) // 10))
    known = {}
    if a.true_from:  # same data and training: the reference need not be trained again
        known = {(r["dataset"], r["true_sigma"]): r["psnr_true"] for r in json.loads(a.true_from.read_text())["rows"]}
    rows = []
    for name in a.datasets.split(","):
        for sigma in a.sigmas:
            ds = datasets.make(name, 3, a.size, seed=0, log=log, sigma=sigma)
            if ds is None:
                continue
            t0 = time.perf_counter()
            true = known.get((name, sigma))
            row = {"dataset": name, "true_sigma": sigma,
                   "psnr_true": true if true is not None else trained(ds, base.replace(psf_sigma=sigma))[0]}
            if "learned" in routes:
                row |= learned(ds, est_cfg, a)
                if "retrain" in routes:
                    row["psnr_retrain"], row["val_retrain"] = trained(ds, base.replace(psf_sigma=row["estimate_sigma"]))
            if "search" in routes:
                res = search_psf_sigma(ds.noisy, base, axes="SYX", steps=a.search_steps)
                row |= {"search_sigma": res.sigma, "search_clear": res.clear, "search_message": res.message,
                        "search_scores": sorted(res.scores.items()),
                        "psnr_search": trained(ds, base.replace(psf_sigma=res.sigma))[0]}
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            log(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                            if k not in ("search_scores", "estimate_message")}))
            (a.out / "psf_estimation.json").write_text(json.dumps(
                {"machine": info, "args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=1))
    log("\n" + fmt(rows))
    return {"rows": rows}


def fmt(rows: list[dict]) -> str:
    lines = ["| dataset | true sigma | PSNR true (dB) | (a) learned sigma | (a) PSNR − true | (a) retrained − true "
             "| (b) search sigma | (b) PSNR − true |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        la = f"{r['learned_sigma']:.2f}" if "learned_sigma" in r else ""
        la += "" if r.get("estimate_clear", True) else " (unclear)"
        pa = f"{r['psnr_learned'] - r['psnr_true']:+.2f}" if "psnr_learned" in r else ""
        ra = f"{r['psnr_retrain'] - r['psnr_true']:+.2f}" if "psnr_retrain" in r else ""
        sb = (f"{r['search_sigma']:.2f}" + ("" if r["search_clear"] else " (default)")) if "search_sigma" in r else ""
        pb = f"{r['psnr_search'] - r['psnr_true']:+.2f}" if "psnr_search" in r else ""
        lines.append(f"| {r['dataset']} | {r['true_sigma']:g} | {r['psnr_true']:.2f} | {la} | {pa} | {ra} | {sb} "
                     f"| {pb} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
