"""2D prediction with the tiles of the old (40 bytes per pixel) and the new (28) memory estimate, A/B.

The paper-size model of ``speed_ab.py models`` on a 2048^2 image, fp32, one thread, CPU seconds,
the two tile shapes alternating; prints the largest difference between the two outputs.

Usage::

    python benchmarks/speed_ab.py models && OMP_NUM_THREADS=1 python benchmarks/tile_budget_ab.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed_ab import load  # noqa: E402

from napari_deconoising.core import tile_plan  # noqa: E402
from napari_deconoising.core.sample import make_sample  # noqa: E402

ESTIMATES = {"old (40 B)": (40, 20), "new (28 B)": (28, 14)}


def main(rounds: int = 2) -> dict[str, float]:
    torch.set_num_threads(1)
    m = load("paper")
    img = np.tile(make_sample((512, 512), sigma=1.5, seed=0).noisy, (4, 4))
    shapes = {}
    for label, (fp32, reduced) in ESTIMATES.items():
        tile_plan._BYTES_PER_PIXEL_CHANNEL, tile_plan._BYTES_PER_PIXEL_CHANNEL_REDUCED = fp32, reduced
        shapes[label] = tile_plan.auto_tile_shape(m, torch.device("cpu"), img.shape)
    print(shapes, flush=True)
    m.predict(img[:512, :512], device="cpu", precision="fp32")  # kernels built before timing
    cpu: dict[str, list[float]] = {k: [] for k in shapes}
    outs = {}
    for r in range(rounds):
        for k, t in shapes.items():
            c0, t0 = time.process_time(), time.perf_counter()
            outs[k] = m.predict(img, device="cpu", precision="fp32", tile_size=t, batch_size=1).denoised
            cpu[k].append(time.process_time() - c0)
            print(r, k, t, f"{cpu[k][-1]:.1f} CPU-s, {time.perf_counter() - t0:.1f} s wall", flush=True)
    a, b = outs.values()
    print("max |diff| / std", float(np.abs(a - b).max() / a.std()))
    best = {k: min(v) for k, v in cpu.items()}
    print("fastest CPU-s:", best)
    return best


if __name__ == "__main__":
    main()
