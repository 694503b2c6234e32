"""Interleaved A/B measurements behind the speed choices of issue 8 (robust to a shared CPU).

Usage::

    python benchmarks/speed_ab.py models                 # train the two models the others use
    python benchmarks/speed_ab.py predict demo 2048      # layouts, precisions, tile sizes
    python benchmarks/speed_ab.py predict paper 1024
    python benchmarks/speed_ab.py tiles demo 2048 fp32 756,1096,whole   # tile sides (or the whole image)
    python benchmarks/speed_ab.py probe                  # what precision="auto" measures, per model
    python benchmarks/speed_ab.py memory MODE SIDE DEPTH CHANNELS   # fresh process per call
    python benchmarks/speed_ab.py memory-4096 PRECISION CAP_GIB TILES  # fresh process per call
    python benchmarks/speed_ab.py train-layout           # fp32/bf16 x contiguous/channels-last steps
    python benchmarks/speed_ab.py compile                # torch.compile and jit.freeze vs eager
    python benchmarks/speed_ab.py profile                # where a training step's time goes

Variants take turns in one process and the fastest round of each is reported, so that other
work on the machine slows all of them alike. The numbers in docs/benchmarks.md ("Speed on
machine 1") come from these commands. Models are kept in ``bench-output/ab/``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from napari_deconoising.core import TrainConfig, load_model, make_sample, train
from napari_deconoising.core import device as device_mod
from napari_deconoising.core.network import DecoNoisingNet
from napari_deconoising.core.probe import measure, prediction_probe
from napari_deconoising.core.psf import gaussian_psf

OUT = Path(__file__).resolve().parent.parent / "bench-output" / "ab"
P = importlib.import_module("napari_deconoising.core.predict")
MODELS = {  # name: (config, what the docs call it)
    "demo": TrainConfig(depth=2, channels=32, patch_size=64, batch_size=16, steps_per_epoch=10, epochs=6,
                        precision="fp32", psf="gaussian", psf_sigma=1.5),
    "paper": TrainConfig(depth=3, channels=64, patch_size=64, batch_size=8, steps_per_epoch=5, epochs=2,
                         precision="fp32", psf="gaussian", psf_sigma=1.5),
}


def load(name: str):
    return load_model(OUT / f"{name}.pt")


def models() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    s = make_sample((256, 256), sigma=1.5, seed=0)
    for name, cfg in MODELS.items():
        train(s.noisy, cfg).save(OUT / f"{name}.pt")
        print(name, "trained for", cfg.total_steps, "steps", flush=True)


def _layout(cl: bool) -> None:
    device_mod.uses_channels_last = lambda device_type, *_: cl and device_type in ("cpu", "cuda")


def predict(name: str, size: int, rounds: int = 2) -> None:
    m = load(name)
    img = np.tile(make_sample((512, 512), sigma=1.5, seed=0).noisy, (size // 512, size // 512))
    cpu, mult = torch.device("cpu"), 2**m.config.depth
    t0_side = P.auto_tile_size(m, cpu, 768 * 1024**2)  # the tile before issue 8
    t1, t2 = int(t0_side * 1.414) // mult * mult, int(t0_side * 2) // mult * mult
    variants = [("fp32 contiguous T0 b2", "fp32", False, t0_side, 2), ("fp32 CL T0 b2", "fp32", True, t0_side, 2),
                ("fp32 CL T1 b1", "fp32", True, t1, 1), ("bf16 CL T0 b2", "bf16", True, t0_side, 2),
                ("bf16 CL T1 b1", "bf16", True, t1, 1), ("bf16 CL T2 b1", "bf16", True, t2, 1)]
    times: dict[str, list[float]] = {v[0]: [] for v in variants}
    outs = {}
    for r in range(rounds + 1):  # round 0 warms up on a crop
        for label, prec, cl, tile, batch in variants:
            _layout(cl)
            t0 = time.perf_counter()
            p = m.predict(img if r else img[:512, :512], device="cpu", precision=prec, tile_size=tile,
                          batch_size=batch)
            if r:
                times[label].append(time.perf_counter() - t0)
                outs[label] = p.denoised
            print(r, label, tile, f"{time.perf_counter() - t0:.2f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    ref = outs[variants[0][0]]
    for label, *_ in variants:
        err = np.sqrt(np.mean((outs[label] - ref) ** 2)) / ref.std()
        print(f"{name} {size}^2 {label}: fastest {min(times[label]):.2f} s, median {np.median(times[label]):.2f} s, "
              f"error {err:.4%}")


def tiles(name: str, size: int, precision: str, sides: str, rounds: int = 2) -> None:
    """Prediction time per tile side (``whole``: one tile holding the image and its halo), interleaved."""
    m = load(name)
    img = np.tile(make_sample((512, 512), sigma=1.5, seed=0).noisy, (size // 512, size // 512))
    halo, mult = P.tile_halo(m), 2**m.config.depth
    variants = {s: (-(-size // mult) * mult + 2 * halo if s == "whole" else int(s)) for s in sides.split(",")}
    times: dict[str, list[float]] = {s: [] for s in variants}
    outs = {}
    for r in range(rounds + 1):  # round 0 warms up on a crop
        for label, side in variants.items():
            t0 = time.perf_counter()
            p = m.predict(img if r else img[:512, :512], device="cpu", precision=precision, tile_size=side)
            if r:
                times[label].append(time.perf_counter() - t0)
                outs[label] = p.denoised
            print(r, label, side, f"{time.perf_counter() - t0:.2f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    ref = outs[next(iter(variants))]
    for label, side in variants.items():
        origins, cores = P._tile_origins((size, size), [side - 2 * halo] * 2, [mult] * 2)
        pixels = len(origins) * (cores[0] + 2 * halo) ** 2 / size**2
        err = np.sqrt(np.mean((outs[label] - ref) ** 2)) / ref.std()
        print(f"{name} {size}^2 {precision} tile {side} ({len(origins)} tiles of {cores[0] + 2 * halo}^2 = "
              f"{pixels:.2f}x the image): fastest {min(times[label]):.2f} s, median {np.median(times[label]):.2f} s, "
              f"error {err:.4%}", flush=True)


def probe() -> None:
    for name in MODELS:
        m = load(name)
        c = m.config
        side = 2 * P.tile_halo(m) + 256  # the probe's tile core when the docs' numbers were taken (now 512)
        pr = prediction_probe(m.build_network, dict(depth=c.depth, channels=c.channels, ndim=2), m.psf.shape,
                              (side, side))
        s, e = measure(pr, torch.device("cpu"), ["fp32", "bf16"])
        print(f"{name} predict probe {side}^2: {s} errors {e}; load {os.getloadavg()[0]:.1f}", flush=True)


def memory(mode: str, side: int, depth: int, channels: int) -> None:
    """Peak memory of one inference pass per pixel and first-level channel (run in a fresh process)."""

    def status(key: str) -> int:
        return [int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith(key)][0] * 1024

    net = DecoNoisingNet(gaussian_psf(1.0), depth=depth, channels=channels).eval()
    cl = mode != "fp32"
    fmt = torch.channels_last if cl else torch.contiguous_format
    net = net.to(memory_format=fmt)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16" else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), ctx:
        net(torch.randn(1, 1, 64, 64).contiguous(memory_format=fmt))
    base = status("VmRSS")
    with torch.inference_mode(), ctx:
        net(torch.randn(1, 1, side, side).contiguous(memory_format=fmt))
    print(mode, side, depth, channels, "bytes per pixel and channel",
          round((status("VmHWM") - base) / side**2 / channels, 1))


def memory_4096(precision: str, cap_gib: float, tiles: int) -> None:
    """Peak RSS predicting 4096^2 with the paper model and a tile budget of ``cap_gib``, stopped after ``tiles`` tiles.

    Every array of the image (input, normalised, padded) exists from the first tile on and one
    tile's activations set the rest, so the peak is reached early; the two outputs (128 MiB) are
    allocated untouched and fill up tile by tile: their full size is added to the reported peak.
    """
    from napari_deconoising.core.predict import Cancelled, peak_rss_bytes

    m = load("paper")
    img = np.tile(make_sample((512, 512), sigma=1.5, seed=0).noisy, (8, 8))
    side = P.auto_tile_size(m, torch.device("cpu"), int(cap_gib * 2**30), reduced=precision != "fp32")
    done = []
    t0 = time.perf_counter()
    with contextlib.suppress(Cancelled):
        m.predict(img, device="cpu", precision=precision, tile_size=side, batch_size=1,
                  progress=lambda d, t: done.append((d, t)), cancel=lambda: len(done) >= tiles)
    outputs = 2 * img.size * 4
    print(f"paper 4096^2 {precision} budget {cap_gib} GiB: tile {side}, {done[-1][0]} of {done[-1][1]} tiles in "
          f"{time.perf_counter() - t0:.0f} s; peak RSS {peak_rss_bytes() / 2**30:.2f} GiB + outputs "
          f"{outputs / 2**30:.2f} GiB = {(peak_rss_bytes() + outputs) / 2**30:.2f} GiB; load {os.getloadavg()[0]:.1f}")


def _steps(variants, step, rounds: int = 6) -> dict[str, float]:
    for v in variants:
        step(v)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            times[v].append(step(v))
    return {v: round(min(t), 4) for v, t in times.items()}


def train_layout() -> None:
    torch.manual_seed(0)
    net = DecoNoisingNet(gaussian_psf(1.0), depth=2, channels=32)
    opt = torch.optim.Adam(net.parameters())
    x = torch.randn(16, 1, 64, 64)

    def step(v: str) -> float:
        fmt = torch.channels_last if v.endswith("CL") else torch.contiguous_format
        n = net.to(memory_format=fmt)
        bf16 = v.startswith("bf16")
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
        t0 = time.perf_counter()
        opt.zero_grad()
        with ctx:
            d, _ = n(x.contiguous(memory_format=fmt))
        ((d.float() - x) ** 2).mean().backward()
        opt.step()
        return time.perf_counter() - t0

    print("demo training step, fastest of 6:", _steps(["fp32", "fp32 CL", "bf16 CL", "bf16"], step),
          f"load {os.getloadavg()[0]:.1f}")


def compile_ab() -> None:
    warnings.simplefilter("ignore")
    m = load("demo")
    net = m.build_network().eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 1, 760, 760).contiguous(memory_format=torch.channels_last)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    t0 = time.perf_counter()
    compiled = torch.compile(net)
    with torch.inference_mode(), bf16:
        compiled(x)
    print(f"torch.compile + first call: {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, x, check_trace=False)))
        frozen(x)
    print(f"jit trace + freeze + first call: {time.perf_counter() - t0:.1f} s", flush=True)

    def run(v: str) -> float:
        f, ctx = {"eager bf16": (net, bf16), "compiled bf16": (compiled, bf16),
                  "eager fp32": (net, torch.autocast("cpu", enabled=False)),
                  "frozen fp32": (frozen, torch.autocast("cpu", enabled=False))}[v]
        t0 = time.perf_counter()
        with torch.inference_mode(), ctx:
            f(x)
        return time.perf_counter() - t0

    print("760^2 tile, fastest of 3:", _steps(["eager bf16", "compiled bf16", "eager fp32", "frozen fp32"], run, 3),
          f"load {os.getloadavg()[0]:.1f}")


def profile() -> None:
    from napari_deconoising.core import Trainer
    from napari_deconoising.core.masking import apply_blind_spots

    img = make_sample((1024, 1024), sigma=1.0, seed=0).noisy
    tc = TrainConfig(depth=2, channels=32, patch_size=64, batch_size=16, precision="fp32", psf_sigma=1.0)
    tr = Trainer(img, tc)
    tr._step()
    parts: dict[str, list[float]] = {"sample": [], "mask": [], "forward+backward": [], "adam": []}
    for _ in range(5):
        t = [time.perf_counter()]
        p = tr.plan.to_device(tr.sampler.sample(16))
        t.append(time.perf_counter())
        masked, mask = apply_blind_spots(p, tc.mask_fraction, tc.mask_radius, tr.gen)
        t.append(time.perf_counter())
        tr._forward_loss(p, masked, mask)[0].backward()
        t.append(time.perf_counter())
        tr.optimizer.step()
        tr.optimizer.zero_grad()
        t.append(time.perf_counter())
        for k, a, b in zip(parts, t, t[1:]):
            parts[k].append(b - a)
    print("fp32 demo step parts, fastest of 5:", {k: round(min(v), 4) for k, v in parts.items()},
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"models": models, "probe": probe, "train-layout": train_layout, "compile": compile_ab, "profile": profile,
     "predict": lambda: predict(args[0], int(args[1])),
     "tiles": lambda: tiles(args[0], int(args[1]), args[2], args[3]),
     "memory": lambda: memory(args[0], *map(int, args[1:4])),
     "memory-4096": lambda: memory_4096(args[0], float(args[1]), int(args[2]))}[cmd]()
