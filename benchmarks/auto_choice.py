"""Which precision ``precision="auto"`` picks for training at the paper's sizes, and why.

Builds a :class:`~napari_deconoising.core.Trainer` in 2D (batch 20 of 100² patches) and in 3D
(batch 4 of 16×64×64, PSF sigma (2, 1, 1)) at depth 3 / 64 channels, and prints its execution
plan: the precision, the measured speeds and errors, and how long the probe took. Set
``NAPARI_DECONOISING_CACHE`` to an empty folder to measure afresh instead of reading a cached
decision.

Usage::

    python benchmarks/auto_choice.py --device cuda
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_deconoising.core import TrainConfig, Trainer, make_sample

PAPER = dict(depth=3, channels=64)
TINY = dict(depth=2, channels=8)


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny networks on the CPU (tests)")
    a = ap.parse_args(argv)
    net, device = (TINY, "cpu") if a.smoke else (PAPER, a.device)
    img2d = make_sample((256, 256) if a.smoke else (512, 512), sigma=1.5, seed=0).noisy
    stack = np.stack([make_sample((96, 96) if a.smoke else (160, 160), seed=i).noisy for i in range(32)])
    lines = []
    for name, data, kw in (("2D", img2d, dict(patch_size=100, batch_size=20, psf_sigma=1.5)),
                           ("3D", stack, dict(ndim=3, patch_size=(16, 64, 64), batch_size=4,
                                              psf_sigma=(2.0, 1.0, 1.0)))):
        t0 = time.perf_counter()
        trainer = Trainer(data, TrainConfig(precision="auto", device=device, **net, **kw))
        lines.append(f"{name} (probe {time.perf_counter() - t0:.1f} s): {trainer.plan.describe()}")
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
