"""How close a 2D fp32 training step is to this CPU's achievable rate (issue 8, stop 16).

The 2D training target on CPUs without bf16 units (1.5x CAREamics at equal network size,
fp32) is a question of arithmetic: if CAREamics already runs its step at a share ``e`` of the
rate the CPU can reach in fp32, no implementation doing the same work can be more than
``1 / e`` times faster. This measures the pieces of that bound on the machine it runs on:

* ``peak``: the achievable fp32 rate, the fastest of large matrix products (MKL / oneDNN
  sgemm), of a large channels-last 3x3 convolution, and of the step's own convolutions
  timed alone (forward and backward);
* ``step``: the floating-point operations of one training step of our engine, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions forward and backward, matrix
  products), the step's time (fastest of several) with glibc's allocator settings and with the
  engine's retained heap (``core/heap.py``), and the share of the peak;
* ``layers``: each convolution of the step alone (its input shape recorded in a real
  forward), forward and backward in channels-last fp32, its operations and rate: where a
  step loses time against the peak;
* ``careamics``: the same count for CAREamics' U-Net at the same depth, channels and batch
  (built by CAREamics itself in the benchmark venv), so that its measured step time (from
  ``speed.py``, passed with ``--careamics-step``) gives its share of the peak and the bound.

Usage::

    python benchmarks/roofline.py --out bench-output/roofline [--careamics-step SECONDS]

The default network is the demo's (depth 2, 32 channels, 16 patches of 64 px, PSF sigma 1).
Run it on a quiet machine, one process at a time: it times with every core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_VENV, RUNNER, machine_info, machine_line  # noqa: E402

from napari_deconoising.core import TrainConfig, Trainer, make_sample  # noqa: E402
from napari_deconoising.core.heap import retained_heap  # noqa: E402


def fastest(f, rounds: int, warmup: int = 1) -> float:
    """The fastest of ``rounds`` calls of ``f`` after ``warmup`` untimed ones, in seconds."""
    for _ in range(warmup):
        f()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def peak(rounds: int = 5, sizes: tuple[int, ...] = (2048, 4096)) -> dict:
    """The achievable fp32 rate in GFLOP/s: sgemm at two sizes and a large 3x3 convolution."""
    out = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        t = fastest(lambda a=a, b=b: torch.mm(a, b), rounds)
        out[f"sgemm {n}"] = 2 * n**3 / t / 1e9
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(16, 128, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        t = fastest(lambda: conv(x), rounds)
    out["conv3x3 128->128, 16x64x64, channels-last"] = 2 * 9 * 128 * 128 * 16 * 64 * 64 / t / 1e9
    return out


def demo_trainer(precision: str = "fp32") -> Trainer:
    data = make_sample((512, 512), sigma=1.0, seed=0).noisy
    return Trainer(data, TrainConfig(depth=2, channels=32, patch_size=64, batch_size=16, psf_sigma=1.0,
                                     precision=precision, cuda_graph=False))


def count_step(tr: Trainer) -> int:
    """Floating-point operations of one ``Trainer._step`` (FlopCounterMode's count)."""
    with FlopCounterMode(display=False) as counter:
        tr._step()
    return int(counter.get_total_flops())


def conv_layers(tr: Trainer) -> list[tuple[str, torch.nn.Module, tuple[int, ...]]]:
    """Each convolution of the trainer's network with the input shape it sees in a step."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, m in tr.net.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            def record(mod, args, name=name) -> None:
                shapes.setdefault(name, tuple(args[0].shape))

            hooks.append(m.register_forward_pre_hook(record))
    tr._step()
    for h in hooks:
        h.remove()
    return [(n, m, shapes[n]) for n, m in tr.net.named_modules() if n in shapes]


def layer_rates(tr: Trainer, rounds: int) -> list[dict]:
    """Each convolution alone: forward and backward, channels-last fp32, fastest of ``rounds``."""
    rows = []
    for name, m, shape in conv_layers(tr):
        conv = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, padding=m.padding)
        conv = conv.to(memory_format=torch.channels_last)
        first = shape[1] == 1  # the input image needs no gradient
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_(not first)
        out_px = shape[0] * shape[2] * shape[3]
        fwd = 2 * m.in_channels * m.out_channels * int(np.prod(m.kernel_size)) * out_px
        flops = fwd * (2 if first else 3)

        def run(conv=conv, x=x) -> None:
            conv(x).sum().backward()

        t = fastest(run, rounds)
        rows.append({"layer": name, "input": list(shape), "out_channels": m.out_channels,
                     "kernel": list(m.kernel_size), "gflop": flops / 1e9, "ms": t * 1e3,
                     "gflops_per_s": flops / t / 1e9})
    return rows


def careamics_flops(depth: int, channels: int, batch: int, patch: int) -> dict | None:
    """FLOPs of a forward and backward of CAREamics' U-Net, counted in the benchmark venv."""
    py = BENCH_VENV / "bin" / "python"
    if not py.exists():
        print(f"no benchmark venv at {BENCH_VENV}: CAREamics not counted", flush=True)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        job, res = Path(tmp) / "job.json", Path(tmp) / "res.json"
        noisy = Path(tmp) / "x.npy"
        np.save(noisy, make_sample((256, 256), sigma=1.0, seed=0).noisy.astype(np.float32))
        job.write_text(json.dumps({"mode": "flops", "noisy": str(noisy), "steps": 1, "depth": depth,
                                   "channels": channels, "patch": patch, "batch": batch}))
        subprocess.run([str(py), str(RUNNER), str(job), str(res)], check=True)
        return json.loads(res.read_text())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench-output/roofline"))
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--careamics-step", type=float, default=None,
                   help="CAREamics' measured fp32 step time in seconds (speed.py), for its share of the peak")
    p.add_argument("--no-careamics", action="store_true")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    print(machine_line(info), flush=True)

    rates = peak()
    tr = demo_trainer("fp32")
    rows = layer_rates(tr, a.rounds)
    # The fastest convolution of the network, forward and backward, may beat both: it counts as the peak too.
    rates["fastest layer of the step, forward + backward"] = max(r["gflops_per_s"] for r in rows)
    best = max(rates.values())
    for k, v in rates.items():
        print(f"peak: {k}: {v:.0f} GFLOP/s", flush=True)

    result: dict = {"machine": info, "peak_gflops": rates, "peak_best": best, "steps": {}, "layers": rows}
    # Every row with glibc's settings before any with the retained heap: mallopt's changes outlast it.
    for retained in (False, True):
        for precision in ("fp32", "bf16"):
            tr = demo_trainer(precision)
            flops = count_step(tr)
            with retained_heap(retained):
                t = fastest(tr._step, a.rounds, warmup=2)
            name = f"{precision}, {'retained heap' if retained else 'glibc defaults'}"
            result["steps"][name] = {"gflop": flops / 1e9, "s": t, "gflops_per_s": flops / t / 1e9,
                                     "share_of_fp32_peak": flops / t / 1e9 / best}
            print(f"our step, {name}: {flops / 1e9:.1f} GFLOP in {t * 1e3:.0f} ms = {flops / t / 1e9:.0f} GFLOP/s "
                  f"({flops / t / 1e9 / best:.0%} of the fp32 peak)", flush=True)

    total_ms = sum(r["ms"] for r in rows)
    for r in rows:
        print(f"  {r['layer']:<22} in {tuple(r['input'])} -> {r['out_channels']:>3}: {r['gflop']:5.2f} GFLOP "
              f"{r['ms']:6.1f} ms {r['gflops_per_s']:5.0f} GFLOP/s ({r['gflops_per_s'] / best:.0%})", flush=True)
    step = result["steps"]["fp32, retained heap"]
    print(f"convolutions alone: {total_ms:.0f} ms of the step's {step['s'] * 1e3:.0f} ms", flush=True)
    result["layers_ms"] = total_ms

    if not a.no_careamics:
        ce = careamics_flops(2, 32, 16, 64)
        result["careamics"] = ce
        if ce:
            print(f"CAREamics' U-Net (depth 2, 32 channels, batch norm {ce['batch_norm']}): "
                  f"{ce['gflop']:.1f} GFLOP per step (ours {step['gflop']:.1f})", flush=True)
            if a.careamics_step:
                share = ce["gflop"] / a.careamics_step / best
                bound = a.careamics_step / (step["gflop"] / best)
                result["careamics_share_of_peak"], result["bound_speedup_at_peak"] = share, bound
                print(f"CAREamics at {a.careamics_step * 1e3:.0f} ms/step runs at {share:.0%} of the fp32 peak; "
                      f"ours at the peak would be {bound:.2f}x it (now {a.careamics_step / step['s']:.2f}x)",
                      flush=True)
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    (a.out / "roofline.json").write_text(json.dumps(result, indent=1))
    print(f"load {result['load_avg_1min_at_end']}; wrote {a.out / 'roofline.json'}")


if __name__ == "__main__":
    main()
