"""Training steps with and without the retained heap (``core/heap.py``; issue 8, stop 16).

The allocator's settings are process-wide and cannot be undone inside a process, so each
variant runs in a child process of its own (``DECONOISING_RETAIN_HEAP=1`` / ``0``), the two
taking turns ``--rounds`` times; every child builds the trainer, warms up, then times
``--steps`` steps of ``Trainer.run`` (the engine's loop, validation included) and counts the
minor page faults. The fastest child of each variant and the median of all its steps count.

Usage::

    python benchmarks/speed_heap.py --config demo --precision fp32 [--rounds 4] [--steps 10]
    python benchmarks/speed_heap.py --config 3d --precision fp32

``demo``: depth 2, 32 channels, 16 patches of 64 px (the demo network); ``paper``: depth 3,
64 channels, 20 patches of 96 px; ``3d``: depth 2, 16 channels, 4 patches of 16 x 64 x 64.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "demo": dict(depth=2, channels=32, patch_size=64, batch_size=16, psf_sigma=1.0),
    "paper": dict(depth=3, channels=64, patch_size=96, batch_size=20, psf_sigma=1.0),
    "3d": dict(depth=2, channels=16, patch_size=(16, 64, 64), batch_size=4, psf_sigma=(2.0, 1.0, 1.0), ndim=3),
}


def child(config: str, precision: str, steps: int) -> dict:
    """Time ``steps`` steps of ``Trainer.run`` in this process (after a warm-up epoch)."""
    from napari_deconoising.core import TrainConfig, Trainer, make_sample
    from napari_deconoising.core.sample3d import make_sample_3d

    cfg = CONFIGS[config]
    if cfg.get("ndim") == 3:
        data = make_sample_3d((32, 128, 128), sigma=(2.0, 1.0, 1.0), seed=0).noisy
    else:
        data = make_sample((512, 512), sigma=1.0, seed=0).noisy
    tr = Trainer(data, TrainConfig(precision=precision, epochs=2, steps_per_epoch=steps, cuda_graph=False, **cfg))
    times, t_prev, f0, f1 = [], 0.0, 0, 0
    for ev in tr.run():
        if ev.kind != "step":
            continue
        now = time.perf_counter()
        # Epoch 1 warms up; epoch 2's first step would count the validation before it.
        if ev.step > steps + 1:
            times.append(now - t_prev)
        if ev.step == steps + 1:
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        if ev.step == 2 * steps:
            f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t_prev = now
    return {"times": times, "faults_per_step": (f1 - f0) / (steps - 1)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.config, a.precision, a.steps)))
        return
    print(f"{a.config} {a.precision}: load {os.getloadavg()[0]:.2f} at the start", flush=True)
    res: dict[str, list[dict]] = {"0": [], "1": []}
    for r in range(a.rounds):
        for v in ("1", "0") if r % 2 else ("0", "1"):
            env = dict(os.environ, DECONOISING_RETAIN_HEAP=v)
            out = subprocess.run([sys.executable, __file__, "--child", "--config", a.config, "--precision",
                                  a.precision, "--steps", str(a.steps)], env=env, capture_output=True,
                                 text=True, check=True)
            res[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {}
    for v, name in (("0", "glibc defaults"), ("1", "retained heap")):
        steps = [t for run in res[v] for t in run["times"]]
        best = min(statistics.median(run["times"]) for run in res[v])
        summary[v] = best
        print(f"  {name:<15}: median of the best child {best * 1e3:7.1f} ms/step, median of all steps "
              f"{statistics.median(steps) * 1e3:7.1f} ms, fastest {min(steps) * 1e3:7.1f} ms, page faults/step "
              f"{statistics.median(run['faults_per_step'] for run in res[v]):.0f}", flush=True)
    print(f"  speed-up {summary['0'] / summary['1']:.2f}x; load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
