"""Emulating a CPU without bf16 units on one that has them (issue 8), and checking that it works.

oneDNN, which runs PyTorch's CPU convolutions, can be told to use no instructions beyond
a given ISA (``ONEDNN_MAX_CPU_ISA``; oneDNN's "CPU Dispatcher Control"). ``AVX512_CORE_VNNI``
is AVX-512 with VNNI but without AVX512-BF16 and AMX: the Intel Xeon of issue 8. bf16
convolutions then run oneDNN's emulated bf16 kernels (``jit_bf16:avx512_core`` in
``ONEDNN_VERBOSE`` output, instead of ``brg_conv_fwd:avx512_core_bf16``), while fp32 keeps
the very same kernels. ATen's own CPU kernels have no bf16-specific level in this build
(``ATEN_CPU_CAPABILITY=avx512_bf16`` falls back to ``AVX512``); ``avx512`` is set to make
the level explicit. Both must be in the environment before torch is loaded, so the
measurement runs in a child process.

It is the same CPU with oneDNN restricted, not a different machine: caches, memory
bandwidth and clock stay this CPU's.

Usage::

    python benchmarks/speed_emulate.py check     # native vs emulated: fp32/bf16 timings and what auto picks
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: The environment of a CPU with AVX-512 and VNNI but no native bf16 (AVX512-BF16, AMX).
NO_BF16_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI", "ATEN_CPU_CAPABILITY": "avx512"}
MODELS = Path(__file__).resolve().parent.parent / "bench-output" / "ab"  # from `speed_ab.py models`


def active() -> bool:
    """True when this process runs with :data:`NO_BF16_ENV`."""
    return all(os.environ.get(k) == v for k, v in NO_BF16_ENV.items())


def describe() -> str:
    return ("emulated CPU without bf16 units: this CPU with " +
            ", ".join(f"{k}={v}" for k, v in NO_BF16_ENV.items()))


def rerun(script: str, argv: list[str]) -> int:
    """Run ``script argv`` again in a child process with :data:`NO_BF16_ENV`; its exit status."""
    return subprocess.run([sys.executable, script, *argv], env={**os.environ, **NO_BF16_ENV}, check=False).returncode


def _child() -> dict:
    """Interleaved timings of the demo network in fp32 and bf16, and ``auto``'s real probes."""
    import torch

    from napari_deconoising.core import TrainConfig, Trainer, load_model, make_sample
    from napari_deconoising.core.predict import prediction_plan

    os.environ["NAPARI_DECONOISING_CACHE"] = "off"  # decide now, in this mode
    demo = load_model(MODELS / "demo.pt")
    net = demo.build_network().eval().to(memory_format=torch.channels_last)
    tile = torch.randn(1, 1, 584, 584).contiguous(memory_format=torch.channels_last)
    batch = torch.randn(16, 1, 64, 64).contiguous(memory_format=torch.channels_last)

    def ctx(p: str):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=p == "bf16")

    def run(what: str, p: str) -> float:
        t0 = time.perf_counter()
        if what == "predict tile 584^2":
            with torch.inference_mode(), ctx(p):
                net(tile)
        else:
            net.train()
            with ctx(p):
                d, _ = net(batch)
            ((d.float() - batch) ** 2).mean().backward()
            net.eval()
        return time.perf_counter() - t0

    out: dict = {"emulated": active(), "load_start": os.getloadavg()[0], "rows": {}}
    for what in ("predict tile 584^2", "train fwd+bwd 16x64^2"):
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for r in range(4):  # round 0 warms up (oneDNN builds its kernels)
            for p in times:
                t = run(what, p)
                if r:
                    times[p].append(t)
        out["rows"][what] = {p: min(v) for p, v in times.items()}
    img = make_sample((256, 256), sigma=1.5, seed=0).noisy
    for name in ("demo", "paper"):
        plan = prediction_plan(load_model(MODELS / f"{name}.pt"), "cpu", "auto")
        out[f"auto predict {name}"] = f"{plan.precision}: {plan.reason}"
    tr = Trainer(img, TrainConfig(depth=2, channels=32, patch_size=64, batch_size=16, psf="gaussian",
                                     psf_sigma=1.5))
    out["auto train demo"] = f"{tr.plan.precision}: {tr.plan.reason}"
    out["load_end"] = os.getloadavg()[0]
    return out


def check() -> None:
    """Native, then emulated: the timings and ``auto``'s decisions, printed as JSON lines."""
    for env in ({}, NO_BF16_ENV):
        r = subprocess.run([sys.executable, __file__, "--child"], env={**os.environ, **env}, capture_output=True,
                           text=True, check=True)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        print(json.dumps(res, indent=1), flush=True)
        for what, t in res["rows"].items():
            print(f"{'emulated' if res['emulated'] else 'native'} {what}: fp32 {t['fp32']:.3f} s, "
                  f"bf16 {t['bf16']:.3f} s, bf16/fp32 {t['bf16'] / t['fp32']:.2f}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(_child()))
    elif sys.argv[1:] == ["check"]:
        check()
    else:
        sys.exit(__doc__)
