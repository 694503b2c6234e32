"""Why does ``--psf-sigma auto`` miss? The loss over sigma, and the pull against the data's slope.

For each dataset and true sigma (data made as in ``psf_estimation.py``):

* ``--fixed``: a short training (``--steps``) with each fixed sigma; its best validation
  loss and PSNR (the loss landscape over sigma as the learning run sees it);
* ``--fixed`` also records the phantom's 0.001 quantile on the validation patches, at the
  physical zero level and in units of the phantom's standard deviation (``phantom_q``):
  where the PSF is wider than the data's blur, the phantom must ring below zero to explain
  the sharpest detail. Train those runs without the positivity term (``--positivity 0``) so
  that nothing holds the phantom up; ``--wiener-eps`` adds the preconditioned phantom;
* ``--trace``: one learning run of route (a) (``core/learned_psf.py``, the default pull
  unless ``--sigma-pull``), recording per epoch its sigma and the mean slope of the data
  loss along ln(sigma), ``dL/d ln(sigma)`` (the pull is ``-w ln(sigma)``: sigma stops
  sinking where this slope equals ``w``).

Usage::

    python benchmarks/psf_landscape.py --datasets filaments --sigmas 0.7 2.5 --fixed 0.5 0.7 1 1.5 2 2.5 3 --trace
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import datasets  # noqa: E402
import torch  # noqa: E402
from psf_estimation import model_psnr  # noqa: E402

from napari_deconoising.core import TrainConfig, Trainer  # noqa: E402
from napari_deconoising.core.learned_psf import SIGMA_PULL, LearnedSigmaTrainer  # noqa: E402


def trace(ds: datasets.Dataset, config: TrainConfig, pull: float) -> list[dict]:
    """Per epoch: sigma (mean over axes), validation loss, mean data slope dL/d ln(sigma)."""
    trainer = LearnedSigmaTrainer(ds.noisy, config, axes="SYX", sigma_pull=pull)
    psf = trainer.net.psf
    slopes: list[float] = []
    scale = pull / trainer.config.micro_batches

    def record(g):  # runs after the pull's hook: add the pull back to see the data's own slope
        data = g + scale * psf.log_sigma_slope()
        slopes.append(float((data / psf.log_sigma_slope()).mean()))

    psf.raw.register_hook(record)
    rows = []
    for ev in trainer.run():
        if ev.kind == "epoch":
            h = trainer.history[-1]
            rows.append({"epoch": h["epoch"], "sigma": round(float(np.mean(h["psf_sigma"])), 3),
                         "val": round(h["val_loss"], 5), "slope": round(float(np.mean(slopes)), 5)})
            slopes.clear()
    rows[-1]["psnr_best"] = model_psnr(ds, trainer.model)
    return rows


def fixed(ds: datasets.Dataset, config: TrainConfig) -> dict:
    """One training with a fixed sigma: best validation loss, PSNR, and the phantom's low quantile."""
    trainer = Trainer(ds.noisy, config, axes="SYX")
    for _ in trainer.run():
        pass
    model = trainer.model
    with torch.no_grad():
        _, phantom = model.build_network().eval()(trainer.val_target)
    z = phantom + trainer._zero_level
    q = float(torch.quantile(z.flatten()[::7], 0.001) / z.std())
    return {"val": round(trainer.best_val, 5), "psnr": round(model_psnr(ds, model), 3), "phantom_q": round(q, 4)}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="text,filaments")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.7, 1.5, 2.5], help="true sigmas")
    ap.add_argument("--fixed", type=float, nargs="*", default=[], help="fixed sigmas to train with")
    ap.add_argument("--trace", action="store_true", help="also one learning run, traced")
    ap.add_argument("--sigma-pull", type=float, default=SIGMA_PULL)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--positivity", type=float, default=1.0, help="positivity weight of the fixed runs")
    ap.add_argument("--wiener-eps", type=float, default=0.0, help="preconditioned phantom in the fixed runs")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256, help="image size (3 images)")
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "psf_landscape")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    print(common.machine_line(info), flush=True)
    base = TrainConfig(epochs=max(1, a.steps // 10), steps_per_epoch=10, batch_size=8, patch_size=64, depth=2,
                       channels=16, seed=a.seed, precision=a.precision)
    rows = []
    for name in a.datasets.split(","):
        for sigma in a.sigmas:
            ds = datasets.make(name, 3, a.size, seed=0, sigma=sigma)
            row = {"dataset": name, "true_sigma": sigma, "fixed": {}}
            for s in a.fixed:
                cfg = base.replace(positivity=a.positivity, wiener_eps=a.wiener_eps)
                row["fixed"][s] = fixed(ds, cfg.replace(psf_sigma=s) if s > 0 else cfg.replace(psf="none"))
                print(name, sigma, "fixed", s, row["fixed"][s], flush=True)
            if a.trace:
                row["trace"] = trace(ds, base, a.sigma_pull)
                print(name, sigma, "trace", json.dumps(row["trace"]), flush=True)
            rows.append(row)
            (a.out / "psf_landscape.json").write_text(json.dumps(
                {"machine": info, "args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
