"""Where a 2D fp32 training's time goes beyond what stop 23 measured, and what is left to win (issue 8, stop 24).

Stop 23 timed seven ideas for the fp32 step and kept one. What it left open: how much of a
whole training is validation (ours validates 64 patches an epoch, CAREamics 8), whether some
of oneDNN's kernels run far below the others, and why CAREamics' step is slower on the
same kernels. Each part runs the demo network (depth 2, 32 channels, 16 patches of 64 px,
PSF sigma 1) in fp32 on the CPU, inside the engine's retained heap (``core/heap.py``):

* ``split``: whole trainings at the whole-training benchmark's budget (its 16-image stack,
  160 steps in epochs of 10), each decoder: seconds of setup, of steps and of the epochs'
  ends (validation, the scheduler, keeping the best weights), and one validation alone;
* ``int8``: one validation as it runs (fp32) against the same 64 patches through the int8
  body that prediction uses (``core.quantize``), quantising the weights each time as an
  epoch would have to, and how far the int8 loss is from the fp32 one;
* ``layers``: oneDNN's own time for every convolution of a training step (its verbose
  mode, in a child process), by pass (forward, data gradient, weight gradient), with each
  kernel's name and rate;
* ``layout``: forward and backward of the demo network in the engine's channels-last memory
  against contiguous (NCHW) memory, CAREamics' layout, and without oneDNN at all;
* ``fused``: a 3x3 convolution and its ReLU as two operators against oneDNN's convolution
  with the ReLU as a post-op (``torch.ops.mkldnn._convolution_pointwise``), forward only.

Usage::

    python benchmarks/speed_train_limits.py [split int8 layers layout fused] [--rounds 3]
        [--out bench-output/speed-train-limits]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from speed_train_ideas import _fb, _net, _rounds, run_named  # noqa: E402
from speed_train_whole import stack  # noqa: E402

from napari_deconoising.core.heap import retained_heap  # noqa: E402

PARTS = ("split", "int8", "layers", "layout", "fused")
CL = torch.channels_last


def _trainer(decoder: str = "wide", epochs: int = 16, images: np.ndarray | None = None):
    from napari_deconoising.core import TrainConfig, Trainer

    cfg = TrainConfig(depth=2, channels=32, patch_size=64, batch_size=16, epochs=epochs, steps_per_epoch=10,
                      precision="fp32", psf="gaussian", psf_sigma=1.0, decoder=decoder)
    return Trainer(stack(16) if images is None else images, cfg, axes="SYX")


def split(rounds: int) -> dict:
    images = stack(16)
    runs: dict[str, list[dict]] = {"wide": [], "lean": []}
    for _ in range(rounds):
        for decoder, rows in runs.items():
            t0 = time.perf_counter()
            trainer = _trainer(decoder, images=images)
            t1 = last = time.perf_counter()
            spent = {"step": 0.0, "epoch": 0.0}
            for ev in trainer.run():
                now = time.perf_counter()
                spent[ev.kind] += now - last
                last = now
            whole = time.perf_counter() - t0
            v0 = time.perf_counter()
            trainer.validation_loss()
            one = time.perf_counter() - v0
            rows.append({"whole s": round(whole, 2), "setup s": round(t1 - t0, 2), "steps s": round(spent["step"], 2),
                         "epoch ends s": round(spent["epoch"], 2), "one validation s": round(one, 3),
                         "validation patches": int(trainer.val_x.shape[0])})
    out = {}
    for decoder, rows in runs.items():
        best = min(rows, key=lambda r: r["whole s"])
        out[decoder] = {"rounds": rows, "fastest": best,
                        "epoch ends share of the fastest": round(best["epoch ends s"] / best["whole s"], 3)}
    return out


def int8(rounds: int) -> dict:
    from napari_deconoising.core.loss import deconoising_loss
    from napari_deconoising.core.quantize import int8_unavailable, quantize

    trainer = _trainer(epochs=2)
    for _ in trainer.run():
        pass
    if (why := int8_unavailable(trainer.config)) is not None:
        return {"skipped": why}
    net = trainer.net.eval()

    def int8_validation() -> float:
        qnet = quantize(net, [trainer.val_x[:4].contiguous()])
        losses = []
        with torch.inference_mode():
            for i in range(0, trainer.val_x.shape[0], 16):
                denoised, phantom = qnet(trainer.val_x[i:i + 16].contiguous())
                loss, _, _ = deconoising_loss(denoised, phantom, trainer.val_target[i:i + 16],
                                              trainer.val_mask[i:i + 16], trainer.config.positivity,
                                              trainer._zero_level)
                losses.append(float(loss))
        return float(np.mean(losses))

    fp32, q = trainer.validation_loss(), int8_validation()
    times = _rounds({"fp32 validation (engine)": trainer.validation_loss,
                     "int8: quantise + validation": int8_validation}, rounds, reps=3)
    return {**times, "loss fp32": fp32, "loss int8": q, "relative difference": abs(q - fp32) / fp32}


_VERBOSE = re.compile(r"onednn_verbose,(?:v1,)?primitive,exec,cpu,convolution,([^,]+),([^,]+),.*,"
                      r"mb(\d+)_ic(\d+)oc(\d+)_ih(\d+)oh(\d+)kh(\d+)\S*?_iw(\d+)ow(\d+)kw(\d+)\S*,([0-9.]+)\s*$")


def parse_verbose(lines, steps: int) -> dict:
    """Per convolution kind and pass: oneDNN's ms a step, the kernel's name and GFLOP/s, from verbose lines."""
    agg: dict[tuple, list] = collections.defaultdict(lambda: [0.0, 0.0, set()])
    for line in lines:
        m = _VERBOSE.search(line)
        if m is None:
            continue
        impl, prop = m.group(1), m.group(2)
        mb, ic, oc, _ih, oh, kh, _iw, ow, kw = (int(g) for g in m.groups()[2:11])
        key = (prop, f"{ic}->{oc} {kh}x{kw} at {oh}x{ow}")
        agg[key][0] += float(m.group(12))
        agg[key][1] += 2.0 * mb * ic * oc * kh * kw * oh * ow
        agg[key][2].add(impl)
    rows = {f"{prop} {shape}": {"ms a step": round(ms / steps, 3), "GFLOP/s": round(flop / ms / 1e6),
                                "kernel": sorted(impls)}
            for (prop, shape), (ms, flop, impls) in sorted(agg.items(), key=lambda kv: -kv[1][0])}
    by_pass: dict[str, float] = collections.defaultdict(float)
    for (prop, _), (ms, _, _) in agg.items():
        by_pass[prop] += ms / steps
    return {"by pass ms a step": {k: round(v, 2) for k, v in by_pass.items()}, "convolutions": rows}


def _layers_child(steps: int) -> None:
    trainer = _trainer(epochs=1)
    for _ in range(3):
        trainer._step()
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        for _ in range(steps):
            trainer._step()


def layers(rounds: int) -> dict:
    steps = max(1, rounds)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    out = subprocess.run([sys.executable, __file__, "--layers-child", str(steps)], capture_output=True, text=True,
                         env=env, check=True).stdout
    return {"steps": steps, **parse_verbose(out.splitlines(), steps)}


def layout(rounds: int) -> dict:
    net, x = _net()
    contiguous, _ = _net()
    contiguous = contiguous.to(memory_format=torch.contiguous_format)
    plain = _fb(contiguous, x.contiguous())

    def no_onednn() -> None:
        with torch.backends.mkldnn.flags(enabled=False):
            plain()

    return _rounds({"channels-last (engine)": _fb(net, x), "contiguous NCHW (CAREamics' layout)": plain,
                    "contiguous, oneDNN off": no_onednn}, rounds, reps=3)


def _fused_one(batch: int, rounds: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(batch, 32, 64, 64).contiguous(memory_format=CL)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1).to(memory_format=CL)
    w, b = conv.weight.detach(), conv.bias.detach()

    @torch.no_grad()
    def two() -> torch.Tensor:
        return torch.relu(conv(x))

    def one() -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")

    row = _rounds({"convolution, then ReLU": two, "ReLU as oneDNN's post-op": one}, rounds)
    return {**row, "max difference": float((two() - one()).abs().max())}


def fused(rounds: int) -> dict:
    return {f"32->32 at 64x64, batch {batch}": _fused_one(batch, rounds) for batch in (16, 64)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("parts", nargs="*", metavar="PART", help=f"any of {', '.join(PARTS)} (default: all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "speed-train-limits")
    a = ap.parse_args(argv)
    if a.layers_child:
        with retained_heap(True):
            _layers_child(a.layers_child)
        return
    unknown = sorted(set(a.parts) - set(PARTS))
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    run_named({k: globals()[k] for k in a.parts or PARTS}, a.rounds, a.out / "speed_train_limits.json", "parts")


if __name__ == "__main__":
    main()
