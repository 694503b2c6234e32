"""The up-sampled branch's gradient layout: why ``unet._merge`` makes it dense (issue 8, stop 15).

``torch.cat``'s backward hands each input a channel slice of the concatenation's gradient.
In channels-last memory a channel slice is strided, and up-sampling's backward on such a
gradient takes a slow path. Two measurements, variants taking turns in one process (the
fastest round counts, so other work on the machine slows all of them alike):

* ``upsample``: bilinear (2D) / trilinear (3D) up-sampling, forward and backward, with the
  gradient as a channel slice of a channels-last concatenation against the same gradient
  made dense first, fp32 and bf16, at the demo network's two up-sampling shapes;
* ``train``: whole training steps (``Trainer._step``) with ``unet._merge`` as it is against
  a plain ``torch.cat``, fp32 and bf16; ``2d`` is the demo network (depth 2, 32 channels,
  16 patches of 64 px), ``3d`` depth 2, 16 channels, 4 patches of 16 x 64 x 64.

Usage::

    python benchmarks/speed_grad_layout.py upsample
    python benchmarks/speed_grad_layout.py train 2d
    python benchmarks/speed_grad_layout.py train 3d
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F

import napari_deconoising.core.unet as unet
from napari_deconoising.core import TrainConfig, Trainer, make_sample
from napari_deconoising.core.sample3d import make_sample_3d


def _fastest(variants: dict, rounds: int) -> dict[str, float]:
    for f in variants.values():  # warm-up
        f()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for k, f in variants.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: min(t) for k, t in times.items()}


def _upsample_ab(x: torch.Tensor, mode: str, grad: torch.Tensor, fmt: torch.memory_format,
                 reps: int) -> dict[str, float]:
    def run(dense: bool) -> None:
        for _ in range(reps):
            g = grad.contiguous(memory_format=fmt) if dense else grad
            F.interpolate(x, scale_factor=2, mode=mode, align_corners=False).backward(g)

    return _fastest({"slice": lambda: run(False), "dense": lambda: run(True)}, 3)


def upsample(reps: int = 20) -> None:
    for shape in ((16, 32, 32, 32), (16, 64, 16, 16), (4, 16, 16, 32, 32)):
        fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
        mode = "bilinear" if len(shape) == 4 else "trilinear"
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(shape).to(dtype).contiguous(memory_format=fmt).requires_grad_(True)
            out_shape = (shape[0], 2 * shape[1], *(2 * n for n in shape[2:]))
            grad = torch.ones(out_shape, dtype=dtype).contiguous(memory_format=fmt)[:, : shape[1]]
            t = _upsample_ab(x, mode, grad, fmt, reps)
            print(f"{mode} {tuple(shape)} {str(dtype)[6:]}: gradient as a channel slice "
                  f"{t['slice'] / reps * 1e3:.2f} ms, dense (copy included) {t['dense'] / reps * 1e3:.2f} ms "
                  f"({t['slice'] / t['dense']:.1f}x)", flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


def train(kind: str, rounds: int = 8) -> None:
    if kind == "2d":
        data = make_sample((512, 512), sigma=1.0, seed=0).noisy
        cfg = dict(depth=2, channels=32, patch_size=64, batch_size=16, psf_sigma=1.0)
    else:
        data = make_sample_3d((32, 128, 128), sigma=(2.0, 1.0, 1.0), seed=0).noisy
        cfg = dict(depth=2, channels=16, patch_size=(16, 64, 64), batch_size=4, psf_sigma=(2.0, 1.0, 1.0), ndim=3)
    dense = unet._merge

    def plain(x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        return x if skip is None else torch.cat([x, skip], dim=1)

    variants = {}
    for precision in ("fp32", "bf16"):
        for name, merge in (("cat", plain), ("dense", dense)):
            tr = Trainer(data, TrainConfig(precision=precision, **cfg))

            def step(tr: Trainer = tr, merge=merge) -> None:
                unet._merge = merge
                tr._step()

            variants[f"{precision} {name}"] = step
    t = _fastest(variants, rounds)
    unet._merge = dense
    for precision in ("fp32", "bf16"):
        a, b = t[f"{precision} cat"], t[f"{precision} dense"]
        print(f"train {kind} {precision}: plain cat {a * 1e3:.1f} ms/step, dense gradient {b * 1e3:.1f} ms/step "
              f"({a / b:.2f}x)", flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if sys.argv[1] == "upsample":
        upsample()
    else:
        train(sys.argv[2])
