"""Ideas for a faster 2D fp32 training step on the CPU, each timed against what the engine does (issue 8, stop 23).

The one target of issue 8 still missed is 2D training in fp32 (CPUs without bf16 units) at
1.5x CAREamics. Stop 16's roofline put the step's convolutions at 78-100 % of the CPU's
fp32 rate, so what is left lies in how the step is run. Each idea below is timed on the
demo network (depth 2, 32 channels, 16 patches of 64 px, PSF sigma 1), channels-last fp32,
inside the engine's retained heap (``core/heap.py``), variants taking turns in rounds (the
fastest and the median of each variant are reported, in ms):

* ``flops``: not a timing: the floating-point operations (``FlopCounterMode``) of a training
  step and of a validation (64 patches, forward) with each U-Net decoder, and of a forward
  pass at the paper's size (depth 3, 64 channels, one 104² patch); the lean decoder is
  CAREamics' layout;
* ``adam``: the optimiser step, PyTorch's default per-parameter loop against its fused CPU
  kernel (what ``cuda_graph.adam`` now builds on the CPU);
* ``threads``: forward and backward of 16 patches on both cores against two threads taking
  8 patches each on one core (no barrier between the two halves' operators);
* ``micro``: the same 16 patches as two passes of 8 (smaller maps, better cache use);
* ``pointwise``: the U-Net's 1x1 convolutions (head, up-sampling branch) as matrix products
  over the channels-last pixels, forward and backward, against the convolution;
* ``wgrad``: a 3x3 convolution's weight gradient as nine matrix products over shifted
  pixels, against oneDNN's backward;
* ``compile``: the forward and loss through ``torch.compile`` (inductor), with the time of
  the first (compiling) step;
* ``thp``: PyTorch's transparent huge pages for tensors of 2 MiB and more
  (``THP_MEM_ALLOC_ENABLE=1``, read when torch loads: each side runs in its own processes,
  ``rounds // 2`` of them, which also report how much of their memory was in huge pages);
* ``profile``: not an idea: ``torch.profiler`` over training steps of the engine's
  ``Trainer`` (fp32, each decoder): the convolutions forward and backward (ms a step, GFLOP/s)
  and the other operators that take the most time.

Usage::

    python benchmarks/speed_train_ideas.py [flops adam threads micro pointwise wgrad compile thp profile]
        [--rounds 5] [--out bench-output/speed-train-ideas]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from napari_deconoising.core.heap import retained_heap  # noqa: E402
from napari_deconoising.core.network import DecoNoisingNet  # noqa: E402
from napari_deconoising.core.psf import gaussian_psf  # noqa: E402

CL = torch.channels_last
IDEAS = ("flops", "adam", "threads", "micro", "pointwise", "wgrad", "compile", "thp", "profile")


def _net() -> tuple[DecoNoisingNet, torch.Tensor]:
    torch.manual_seed(0)
    net = DecoNoisingNet(gaussian_psf(1.0), depth=2, channels=32, ndim=2).to(memory_format=CL)
    return net, torch.randn(16, 1, 64, 64).contiguous(memory_format=CL)


def _loss(net: torch.nn.Module, x: torch.Tensor, share: float = 1.0) -> torch.Tensor:
    denoised, phantom = net(x)
    return (denoised.square().mean() + phantom.neg().clamp_min(0).mean()) * share


def _rounds(variants: dict, rounds: int, reps: int = 10) -> dict[str, dict[str, float]]:
    """Fastest and median ms of each variant, variants taking turns ``rounds`` times (``reps`` calls a turn)."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for f in variants.values():
        f(), f()
    for _ in range(rounds):
        for k, f in variants.items():
            for _ in range(reps):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return {k: {"fastest_ms": round(min(t) * 1e3, 3), "median_ms": round(float(np.median(t)) * 1e3, 3)}
            for k, t in times.items()}


def flops(rounds: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    for decoder in ("wide", "lean"):
        net = DecoNoisingNet(gaussian_psf(1.0), depth=2, channels=32, ndim=2, decoder=decoder)
        with FlopCounterMode(display=False) as step:
            _loss(net, torch.randn(16, 1, 64, 64)).backward()
        with FlopCounterMode(display=False) as val, torch.no_grad():
            net(torch.randn(64, 1, 64, 64))
        paper = DecoNoisingNet(gaussian_psf(1.0), depth=3, channels=64, ndim=2, decoder=decoder)
        with FlopCounterMode(display=False) as fwd, torch.no_grad():
            paper(torch.randn(1, 1, 104, 104))
        out[decoder] = {"demo step GFLOP": step.get_total_flops() / 1e9,
                        "demo validation GFLOP": val.get_total_flops() / 1e9,
                        "demo parameters": sum(p.numel() for p in net.parameters()),
                        "paper forward 104^2 GFLOP": fwd.get_total_flops() / 1e9,
                        "paper parameters": sum(p.numel() for p in paper.parameters())}
    return out


def adam(rounds: int) -> dict:
    net, _ = _net()
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    loop = torch.optim.Adam(net.parameters(), 1e-3, foreach=False)
    fused = torch.optim.Adam(net.parameters(), 1e-3, fused=True)
    return _rounds({"loop (before)": loop.step, "fused (now)": fused.step}, rounds)


def _fb(net, x):
    def run():
        net.zero_grad(set_to_none=True)
        _loss(net, x).backward()
    return run


def threads(rounds: int) -> dict:
    net, x = _net()
    pool = ThreadPoolExecutor(2, initializer=torch.set_num_threads, initargs=(1,))

    def half(part):
        _loss(net, part, part.shape[0] / x.shape[0]).backward()

    def split():
        net.zero_grad(set_to_none=True)
        for f in [pool.submit(half, part) for part in torch.tensor_split(x, 2)]:
            f.result()

    _fb(net, x)()
    whole = [p.grad.clone() for p in net.parameters()]
    split()
    diff = max(float((a - p.grad).abs().max() / a.abs().max()) for a, p in zip(whole, net.parameters()))
    out = _rounds({"both cores, 16 patches (now)": _fb(net, x), "2 threads x 1 core, 8 patches each": split}, rounds)
    pool.shutdown()
    return {**out, "gradient max relative difference": diff}


def micro(rounds: int) -> dict:
    net, x = _net()

    def two():
        net.zero_grad(set_to_none=True)
        for part in torch.tensor_split(x, 2):
            _loss(net, part, 0.5).backward()

    return _rounds({"one pass of 16 (now)": _fb(net, x), "two passes of 8": two}, rounds)


def _as_matmul(x, w, b):
    # channels-last x: its (N, H, W, C) view is contiguous, so the 1x1 convolution is one product
    return F.linear(x.permute(0, 2, 3, 1), w.flatten(1), b).permute(0, 3, 1, 2)


def _pointwise_one(cin: int, cout: int, side: int, rounds: int) -> dict:
    conv = torch.nn.Conv2d(cin, cout, 1).to(memory_format=CL)
    x = torch.randn(16, cin, side, side).contiguous(memory_format=CL).requires_grad_()
    g = torch.randn(16, cout, side, side).contiguous(memory_format=CL)
    return _rounds({"convolution (now)": lambda: conv(x).backward(g),
                    "matrix product": lambda: _as_matmul(x, conv.weight, conv.bias).backward(g)}, rounds)


def pointwise(rounds: int) -> dict:
    return {f"{cin}->{cout} at {side}^2": _pointwise_one(cin, cout, side, rounds)
            for cin, cout, side in ((32, 1, 64), (64, 32, 32), (128, 64, 16))}


def _wgrad_gemm(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """3x3 weight gradient (padding 1): nine products of the zero-padded pixels, shifted, with the gradient."""
    n, co, h, w = g.shape
    ci = x.shape[1]
    xp = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).contiguous().reshape(-1, ci)
    gp = F.pad(g, (0, 2, 0, 2)).permute(0, 2, 3, 1).contiguous().reshape(-1, co)
    rows = gp.shape[0] - (2 * (w + 2) + 2)
    gt = gp[:rows].t()
    out = torch.empty(3, 3, co, ci)
    for ky in range(3):
        for kx in range(3):
            off = ky * (w + 2) + kx
            torch.mm(gt, xp[off:off + rows], out=out[ky, kx])
    return out.permute(2, 3, 0, 1)


def _wgrad_one(cin: int, cout: int, side: int, rounds: int) -> dict:
    x = torch.randn(16, cin, side, side).contiguous(memory_format=CL)
    w = torch.randn(cout, cin, 3, 3).contiguous(memory_format=CL)
    g = torch.randn(16, cout, side, side).contiguous(memory_format=CL)

    def onednn():
        return torch.ops.aten.convolution_backward(g, x, w, [cout], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                   [False, True, False])[1]

    err = float((onednn() - _wgrad_gemm(g, x)).abs().max() / onednn().abs().max())
    return {**_rounds({"oneDNN backward (now)": onednn, "nine matrix products": lambda: _wgrad_gemm(g, x)}, rounds, 5),
            "relative difference": err}


def wgrad(rounds: int) -> dict:
    return {f"{cin}->{cout} at {side}^2": _wgrad_one(cin, cout, side, rounds)
            for cin, cout, side in ((32, 32, 64), (64, 32, 64), (64, 64, 32), (128, 64, 32))}


def compile(rounds: int) -> dict:  # noqa: A001 - the idea's name
    net, x = _net()
    opt = torch.optim.Adam(net.parameters(), 1e-3, fused=True)
    compiled = torch.compile(lambda xx: _loss(net, xx))

    def step(f):
        def run():
            opt.zero_grad(set_to_none=True)
            f(x).backward()
            opt.step()
        return run

    t0 = time.perf_counter()
    step(compiled)()
    first = time.perf_counter() - t0
    return {**_rounds({"eager (now)": step(lambda xx: _loss(net, xx)), "torch.compile": step(compiled)}, rounds),
            "first compiled step s": round(first, 1)}


def _fb_only(rounds: int) -> dict:
    net, x = _net()
    out = _rounds({"forward + backward": _fb(net, x)}, rounds)["forward + backward"]
    rollup = Path("/proc/self/smaps_rollup")
    huge = [ln.split()[1] for ln in rollup.read_text().splitlines() if ln.startswith("AnonHugePages:")] \
        if rollup.exists() else []
    return {**out, "huge_pages_mib": int(huge[0]) / 1024 if huge else None}


def thp(rounds: int) -> dict:
    out: dict[str, list] = {"0": [], "1": []}
    for _ in range(max(1, rounds // 2)):
        for value, runs in out.items():
            res = subprocess.run([sys.executable, __file__, "--fb-only", "--rounds", str(rounds)],
                                 env=dict(os.environ, THP_MEM_ALLOC_ENABLE=value), capture_output=True, text=True)
            if res.returncode:
                raise RuntimeError(f"the THP_MEM_ALLOC_ENABLE={value} child failed:\n{res.stderr[-2000:]}")
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    names = {"0": "THP_MEM_ALLOC_ENABLE=0 (now)", "1": "THP_MEM_ALLOC_ENABLE=1"}
    return {names[v]: {"fastest_ms": min(r["fastest_ms"] for r in runs),
                       "median_ms": float(np.median([r["median_ms"] for r in runs])),
                       "huge_pages_mib": [r["huge_pages_mib"] for r in runs]} for v, runs in out.items()}


def _profile_one(decoder: str, steps: int) -> dict:
    from speed_train_whole import stack
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    from torch.utils.flop_counter import FlopCounterMode

    from napari_deconoising.core import TrainConfig, Trainer

    images = stack(16)  # the whole-training benchmark's data
    cfg = TrainConfig(depth=2, channels=32, patch_size=64, batch_size=16, epochs=1, steps_per_epoch=10,
                      precision="fp32", psf="gaussian", psf_sigma=1.0, decoder=decoder)
    trainer = Trainer(images, cfg, axes="SYX")
    for _ in range(3):
        trainer._step()
    with FlopCounterMode(display=False) as counter:
        trainer._step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer._step()
    ms = {e.key: e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages()}
    gflop = counter.get_total_flops() / 1e9
    fwd, bwd = ms.get("aten::mkldnn_convolution", 0.0), ms.get("aten::convolution_backward", 0.0)
    others = sorted(((k, round(v, 2)) for k, v in ms.items()
                     if k.startswith("aten::") and k not in ("aten::mkldnn_convolution", "aten::convolution_backward")),
                    key=lambda kv: -kv[1])
    return {"step GFLOP": gflop, "profiled ms a step": round(sum(ms.values()), 1),
            "convolutions forward ms": round(fwd, 1), "convolutions backward ms": round(bwd, 1),
            # a third of the operations forward, two thirds backward (the first layer's input gradient aside)
            "forward GFLOP/s": round(gflop / 3 / fwd * 1e3), "backward GFLOP/s": round(gflop * 2 / 3 / bwd * 1e3),
            "other operators ms (self time)": dict(others[:8])}


def profile(rounds: int) -> dict:
    return {d: _profile_one(d, 2 * rounds) for d in ("wide", "lean")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ideas", nargs="*", metavar="IDEA", help=f"any of {', '.join(IDEAS)} (default: all)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fb-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "speed-train-ideas")
    a = ap.parse_args(argv)
    unknown = sorted(set(a.ideas) - set(IDEAS))
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    if unknown:
        ap.error(f"unknown idea(s) {', '.join(unknown)}; choose from {', '.join(IDEAS)}")
    if a.fb_only:
        with retained_heap(True):
            print(json.dumps(_fb_only(a.rounds)))
        return
    run_named({k: globals()[k] for k in a.ideas or IDEAS}, a.rounds, a.out / "speed_train_ideas.json", "ideas")


def run_named(functions: dict, rounds: int, path: Path, key: str) -> dict:
    """Run each ``functions[name](rounds)`` inside the engine's retained heap, printing each result as
    it comes; write them under ``key`` to ``path`` with the machine's description, and return them."""
    results = {"machine": common.machine_info(), "torch threads": torch.get_num_threads(), key: {}}
    with retained_heap(True):
        for name, f in functions.items():
            t0 = time.perf_counter()
            results[key][name] = f(rounds)
            print(f"{name} ({time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f}): "
                  f"{json.dumps(results[key][name])}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
