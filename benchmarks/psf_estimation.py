"""Can the PSF width be found from the noisy data? Both routes against the known sigma.

For each dataset and true sigma, on data made with that sigma:

* ``true``: DecoNoising trained with the true sigma (the reference PSNR);
* route (a), ``learned``: one run whose PSF sigma is a trainable parameter
  (:mod:`napari_deconoising.core.learned_psf`), started at ``--init-sigma``; its PSNR
  is that run's own best model (with the learned sigma fixed: no retraining);
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
from napari_deconoising.core.learned_psf import learned_sigma_model, learned_sigma_trainer  # noqa: E402
from napari_deconoising.core.psf_search import search_psf_sigma  # noqa: E402


def log(*a):
    print(*a, flush=True)


def model_psnr(ds: datasets.Dataset, model) -> float:
    den = model.predict(ds.noisy, axes="SYX", precision="fp32").denoised
    return float(np.mean([common.psnr(ds.clean[i], den[i]) for i in range(len(den))]))


def psnr_of(ds: datasets.Dataset, config: TrainConfig) -> float:
    trainer = Trainer(ds.noisy, config, axes="SYX")
    for _ in trainer.run():
        pass
    return model_psnr(ds, trainer.model)


def learned(ds: datasets.Dataset, config: TrainConfig, init: float) -> tuple[float, float]:
    """Route (a) in one run: the learned sigma and the PSNR of that same model."""
    trainer = learned_sigma_trainer(ds.noisy, config, axes="SYX", init_sigma=init)
    for _ in trainer.run():
        pass
    model = learned_sigma_model(trainer)
    return float(np.mean(model.config.sigma_per_axis)), model_psnr(ds, model)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="text,filaments")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.7, 1.0, 1.5, 2.0, 2.5])
    ap.add_argument("--routes", default="learned,search")
    ap.add_argument("--steps", type=int, default=300, help="steps of every full training")
    ap.add_argument("--search-steps", type=int, default=150, help="steps of each short search run")
    ap.add_argument("--init-sigma", type=float, default=3.0, help="route (a): starting sigma")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "psf_estimation")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    log(common.machine_line(info))
    base = TrainConfig(epochs=max(1, a.steps // 10), steps_per_epoch=10, batch_size=a.batch, patch_size=64,
                       depth=a.depth, channels=a.channels, seed=a.seed)
    routes = a.routes.split(",")
    rows = []
    for name in a.datasets.split(","):
        for sigma in a.sigmas:
            ds = datasets.make(name, 3, a.size, seed=0, log=log, sigma=sigma)
            if ds is None:
                continue
            t0 = time.perf_counter()
            row = {"dataset": name, "true_sigma": sigma,
                   "psnr_true": psnr_of(ds, base.replace(psf_sigma=sigma))}
            if "learned" in routes:
                est, psnr = learned(ds, base, a.init_sigma)
                row |= {"learned_sigma": est, "psnr_learned": psnr}
            if "search" in routes:
                res = search_psf_sigma(ds.noisy, base, axes="SYX", steps=a.search_steps)
                row |= {"search_sigma": res.sigma, "search_clear": res.clear, "search_message": res.message,
                        "search_scores": sorted(res.scores.items()),
                        "psnr_search": psnr_of(ds, base.replace(psf_sigma=res.sigma))}
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            log(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                            if k != "search_scores"}))
            (a.out / "psf_estimation.json").write_text(json.dumps(
                {"machine": info, "args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=1))
    log("\n" + fmt(rows))
    return {"rows": rows}


def fmt(rows: list[dict]) -> str:
    lines = ["| dataset | true sigma | PSNR true (dB) | (a) learned sigma | (a) PSNR − true | (b) search sigma "
             "| (b) PSNR − true |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        la = f"{r['learned_sigma']:.2f}" if "learned_sigma" in r else ""
        pa = f"{r['psnr_learned'] - r['psnr_true']:+.2f}" if "psnr_learned" in r else ""
        sb = (f"{r['search_sigma']:.2f}" + ("" if r["search_clear"] else " (default)")) if "search_sigma" in r else ""
        pb = f"{r['psnr_search'] - r['psnr_true']:+.2f}" if "psnr_search" in r else ""
        lines.append(f"| {r['dataset']} | {r['true_sigma']:g} | {r['psnr_true']:.2f} | {la} | {pa} | {sb} | {pb} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
