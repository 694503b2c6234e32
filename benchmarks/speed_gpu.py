"""GPU speed: DecoNoising on a CUDA GPU, next to CAREamics' Noise2Void on the same GPU.

Measured in one run, on one GPU:

* the GPU's achievable rates, as ceilings: a large bf16, fp16, TF32 and fp32 matrix
  product (TFLOP/s) and a device-to-device copy (TB/s);
* training at the paper's size (U-Net depth 3, 64 channels, 100 px patches, batch 20)
  in fp32, bf16, fp16 and ``auto`` (which one it picked and why): steps/s, patches/s,
  the share of a step spent sampling patches on the CPU, and the achieved TFLOP/s
  (FLOPs counted by ``torch.utils.flop_counter`` for one step) as a share of the
  matching ceiling; then A/B of the GPU path's choices (the CUDA graph off, channels-last
  off, ``cudnn.benchmark`` off) and patches/s as the batch grows (does batch 20 fill the GPU?);
* 3D training at depth 3 / 64 channels, 16 x 64 x 64 patches, batch 4;
* prediction megapixels/s of 2048^2, 4096^2 and 8192^2 images (host array in, host
  arrays out, so transfers are included) in each precision, and of a 64 x 512 x 512 stack;
* CAREamics 0.3.5 (``--peer-python``) at the same network size, patch 104 (CAREamics
  needs a multiple of 8), batch 20: training s/step in fp32 and bf16, and prediction of
  the 2048^2 image, with ``accelerator="gpu"``.

Usage (on a machine with a CUDA GPU)::

    python benchmarks/speed_gpu.py --out bench-output/speed_gpu [--peer-python PY] [--quick]

Every section is written to ``speed_gpu.json`` as soon as it is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import tempfile
import time
import unittest.mock
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from napari_deconoising.core.heap import retained_heap  # noqa: E402

PAPER = dict(depth=3, channels=64, patch_size=100, batch_size=20)
PAPER3D = dict(depth=3, channels=64, patch_size=(16, 64, 64), batch_size=4, ndim=3, psf_sigma=(2.0, 1.0, 1.0))
# --smoke: the same code path on the CPU with tiny networks, for the test suite.
TINY = dict(depth=2, channels=8, patch_size=32, batch_size=4)
TINY3D = dict(depth=2, channels=8, patch_size=(8, 32, 32), batch_size=2, ndim=3, psf_sigma=(2.0, 1.0, 1.0))
DEVICE = "cuda"
PROFILE = False
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def log(*a) -> None:
    print(*a, flush=True)


def _sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def ceilings(n: int = 8192) -> dict:
    """Achievable matrix-product rates (TFLOP/s) and copy bandwidth (TB/s) of this GPU."""
    import torch

    out = {}
    for name, dtype, tf32 in (("bf16", torch.bfloat16, False), ("fp16", torch.float16, False),
                              ("tf32", torch.float32, True), ("fp32", torch.float32, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a, b = (torch.randn(n, n, device=DEVICE, dtype=dtype) for _ in range(2))
        for _ in range(3):
            a @ b
        _sync()
        reps = 10 if name != "fp32" else 3
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync()
        out[f"matmul_{name}_tflops"] = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.empty(2**30 if DEVICE == "cuda" else 2**24, dtype=torch.uint8, device=DEVICE)
    y = torch.empty_like(x)
    y.copy_(x)
    _sync()
    t0 = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    _sync()
    out["copy_tb_s"] = 2 * x.numel() * 10 / (time.perf_counter() - t0) / 1e12
    return out


def _trainer(image: np.ndarray, precision: str, **cfg):
    from napari_deconoising.core import TrainConfig, Trainer

    return Trainer(image, TrainConfig(device=DEVICE, precision=precision, psf="gaussian", **{"psf_sigma": 1.0, **cfg}))


def time_steps(tr, steps: int, warmup: int = 5) -> dict:
    """Seconds per training step, synchronised (every step reads its loss back, as ``run`` does)."""
    for _ in range(warmup):
        tr._step()
    _sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        tr._step()
    _sync()
    step = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.sampler.sample(tr.config.batch_size)
    sample = (time.perf_counter() - t0) / steps
    return {"step_s": step, "steps_per_s": 1 / step, "patches_per_s": tr.config.batch_size / step,
            "sampling_share": sample / step}


def step_flops(tr) -> int:
    """FLOPs of one training step (forward and backward), as counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        tr._step()
    return int(counter.get_total_flops())


def _ceiling_for(precision: str, ceil: dict) -> float:
    # fp32 convolutions run as TF32 on tensor cores (cuDNN's default, torch.backends.cudnn.allow_tf32).
    return ceil[f"matmul_{'tf32' if precision == 'fp32' else precision}_tflops"]


def _profile(fn, what: str) -> None:
    """Print the operations that took the most GPU and CPU time in one call of ``fn`` (after a warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    _sync()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        _sync()
    sort = "self_cuda_time_total" if DEVICE == "cuda" else "self_cpu_time_total"
    log(f"--- profile: {what} (by {sort}) ---")
    log(prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=60))
    if DEVICE == "cuda":
        log(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=60))


def training(image: np.ndarray, steps: int, ceil: dict, cfg: dict, label: str, batches=(),
             variants=()) -> list[dict]:
    import torch

    rows = []
    for prec in PRECISIONS:
        tr = _trainer(image, prec, **cfg)
        flops = step_flops(tr)  # first, while steps still run eagerly: a graph's replay is not counted
        r = time_steps(tr, steps)
        tflops = flops * r["steps_per_s"] / 1e12
        rows.append({"what": "train", "config": label, "precision": prec, "picked": tr.plan.precision,
                     "reason": tr.plan.reason, "flops_per_step": flops, "tflops": tflops,
                     "share_of_ceiling": tflops / _ceiling_for(tr.plan.precision, ceil), **r})
        log(f"train {label} {prec} ({tr.plan.precision}): {r['steps_per_s']:.1f} steps/s, "
            f"{r['patches_per_s']:.0f} patches/s, sampling {r['sampling_share']:.0%} of a step, "
            f"{tflops:.2f} TFLOP/s = {rows[-1]['share_of_ceiling']:.1%} of the ceiling; {tr.plan.reason}")
        del tr
        _empty_cache()
    # A/B of the GPU path's choices, in the precision auto picked; fp32 where that is fp16,
    # whose loss scaling runs eagerly (the graph's A/B would compare eager with eager).
    picked = rows[-1]["picked"] if rows[-1]["picked"] != "fp16" else "fp32"
    for variant in ("default", "CUDA graph off", "channels-last off", "cudnn.benchmark off",
                    "fused Adam, no graph", *variants):
        graph = variant not in ("CUDA graph off", "fused Adam, no graph", "torch.compile")
        tr = _trainer(image, picked, **{**cfg, "cuda_graph": graph})
        t0 = time.perf_counter()
        if variant == "channels-last off":
            tr.plan = dataclasses.replace(tr.plan, channels_last=False)
            tr.net.to(memory_format=torch.contiguous_format)
        elif variant == "cudnn.benchmark off":
            torch.backends.cudnn.benchmark = False
        elif variant == "fused Adam, no graph":
            c = tr.config
            tr.optimizer = torch.optim.Adam(tr.net.param_groups(c.learning_rate, c.head_learning_rate_scale),
                                            lr=c.learning_rate, fused=DEVICE == "cuda")
        elif variant == "torch.compile":
            tr.net = torch.compile(tr.net)
            tr._step()  # compiles forward and backward
        setup = time.perf_counter() - t0
        r = time_steps(tr, steps)
        torch.backends.cudnn.benchmark = True
        rows.append({"what": "train-ab", "config": label, "precision": picked, "variant": variant,
                     "setup_s": setup, **r})
        log(f"train {label} {picked} {variant}: {r['steps_per_s']:.1f} steps/s (setup {setup:.1f} s)")
        if variant == "default" and PROFILE:
            _profile(tr._step, f"one training step, {label} {picked}")
        del tr
    for batch in batches:
        tr = _trainer(image, picked, **{**cfg, "batch_size": batch})
        r = time_steps(tr, max(5, steps // 2))
        rows.append({"what": "train-batch", "config": label, "precision": picked, "batch": batch, **r})
        log(f"train {label} {picked} batch {batch}: {r['patches_per_s']:.0f} patches/s")
        del tr
        _empty_cache()
    return rows


def _empty_cache() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def prediction(model, images: dict, precisions=None) -> list[dict]:
    from napari_deconoising.core.predict import prediction_plan

    precisions = PRECISIONS if precisions is None else precisions
    rows = []
    for name, img in images.items():
        for prec in precisions:
            plan = prediction_plan(model, DEVICE, prec, img.size)
            model.predict(img, device=DEVICE, precision=plan.precision)  # warm-up: cuDNN picks its kernels
            t0 = time.perf_counter()
            model.predict(img, device=DEVICE, precision=plan.precision)
            s = time.perf_counter() - t0
            rows.append({"what": "predict", "image": name, "shape": list(img.shape), "precision": prec,
                         "picked": plan.precision, "reason": plan.reason, "seconds": s, "mp_per_s": img.size / 1e6 / s})
            log(f"predict {name} {prec} ({plan.precision}): {s:.3f} s = {img.size / 1e6 / s:.1f} MP/s; {plan.reason}")
            if prec == "auto" and DEVICE == "cuda":  # A/B: the image kept on the host, only tiles travel
                mod = sys.modules["napari_deconoising.core.predict"]
                with unittest.mock.patch.object(mod, "_fits_on_device", return_value=False):
                    model.predict(img, device=DEVICE, precision=plan.precision)
                    t0 = time.perf_counter()
                    model.predict(img, device=DEVICE, precision=plan.precision)
                    host = time.perf_counter() - t0
                rows[-1]["host_path_seconds"] = host
                log(f"predict {name} {plan.precision} with the image on the host: {host:.3f} s = "
                    f"{img.size / 1e6 / host:.1f} MP/s")
            if PROFILE and prec == "auto":
                _profile(functools.partial(model.predict, img, device=DEVICE, precision=plan.precision),
                         f"predict {name}")
    return rows


def _trained(image, steps: int, **cfg):
    """A model trained ``steps`` steps: auto's error check needs real outputs, not an untrained net's."""
    from napari_deconoising.core import TrainConfig, train

    return train(image, TrainConfig(device=DEVICE, precision="fp32", psf="gaussian", epochs=max(1, steps // 10),
                                    steps_per_epoch=10, **{"psf_sigma": 1.0, **cfg}))


def peer(py: str, train_img: np.ndarray, big: np.ndarray, steps: int, tmp: Path) -> list[dict]:
    np.save(tmp / "train.npy", train_img)
    np.save(tmp / "big.npy", big)
    env = {"PYTHONPATH": os.environ.get("PEER_PYTHONPATH", "")}
    rows = []
    for prec in ("fp32", "bf16"):
        job = {"mode": "speed", "noisy": str(tmp / "train.npy"), "depth": 3, "channels": 64, "patch": 104,
               "batch": 20, "precision": prec, "steps": steps, "warmup": 5, "accelerator": "gpu",
               **({"predict": str(tmp / "big.npy")} if prec == "fp32" else {})}
        try:
            r = common.run_peer(Path(py), job, timeout=600, extra_env=env)
        except Exception as e:  # noqa: BLE001
            log(f"CAREamics {prec} failed: {str(e)[-600:]}")
            rows.append({"what": "peer", "precision": prec, "error": str(e)[-2000:]})
            continue
        row = {"what": "peer", "precision": prec, "step_s": r.get("step_seconds"),
               "predict_2048_s": r.get("predict_big_seconds"), "info": r}
        rows.append(row)
        log(f"CAREamics {prec}: {r.get('step_seconds', float('nan')):.4f} s/step"
            + (f", predict 2048^2 {r['predict_big_seconds']:.3f} s" if r.get("predict_big_seconds") else ""))
    return rows


def layout_ab(image: np.ndarray, cfg: dict, label: str, steps: int, rounds: int,
              precisions=("fp32", "bf16")) -> list[dict]:
    """Channels-last against contiguous feature maps, alternating, each round a fresh trainer."""
    rows = []
    for rnd in range(rounds):
        for prec in precisions:
            for layout in ("channels-last", "contiguous"):
                tr = _trainer(image, prec, **cfg)
                tr.plan = dataclasses.replace(tr.plan, channels_last=layout == "channels-last")
                tr.net.to(memory_format=tr.plan.memory_format(tr.config.ndim))
                with retained_heap(DEVICE == "cpu"):  # as a CPU training runs
                    r = time_steps(tr, steps)
                rows.append({"what": "layout-ab", "config": label, "precision": prec, "layout": layout,
                             "round": rnd, **r})
                log(f"layout {label} {prec} {layout} round {rnd}: {r['steps_per_s']:.1f} steps/s")
                del tr
                _empty_cache()
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "speed_gpu")
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per measurement")
    ap.add_argument("--peer-python", help="interpreter with CAREamics 0.3.5 (PEER_PYTHONPATH is its PYTHONPATH)")
    ap.add_argument("--quick", action="store_true", help="2048^2 only, no batch sweep")
    ap.add_argument("--smoke", action="store_true", help="tiny networks and images on the CPU (tests)")
    ap.add_argument("--profile", action="store_true", help="print torch.profiler tables of a step and a prediction")
    ap.add_argument("--compile", action="store_true", help="also time training with torch.compile (paper size)")
    ap.add_argument("--layout-ab", type=int, default=0, metavar="ROUNDS",
                    help="only channels-last against contiguous, 3D then 2D, fp32 and bf16, ROUNDS alternations")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="--layout-ab only: also on the CPU (the paper's sizes; training as it runs there, "
                         "inside the retained heap)")
    a = ap.parse_args(argv)
    import torch

    global DEVICE, PRECISIONS, PROFILE
    PROFILE = a.profile
    if a.smoke:
        DEVICE, PRECISIONS = "cpu", ("fp32", "auto")
    elif a.layout_ab and a.device == "cpu":
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        raise SystemExit("speed_gpu.py needs a CUDA GPU (--smoke runs its code on the CPU)")
    paper, paper3d = (TINY, TINY3D) if a.smoke else (PAPER, PAPER3D)
    cache = tempfile.TemporaryDirectory()
    os.environ["NAPARI_DECONOISING_CACHE"] = cache.name  # auto decides in this run
    from napari_deconoising.core import make_sample
    from napari_deconoising.core.sample3d import make_sample_3d

    a.out.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    if DEVICE == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version(),
                    cuda=torch.version.cuda)
    summary = {"machine": info, "rows": []}

    def save(rows):
        summary["rows"] += rows
        common.write_summary(a.out, "speed_gpu.json", summary)

    log(json.dumps(info))
    steps = 2 if a.smoke else a.steps
    train_img = make_sample((128, 128) if a.smoke else (1024, 1024), sigma=1.0, seed=0).noisy
    vol = make_sample_3d((16, 64, 64) if a.smoke else (32, 160, 160), sigma=(2.0, 1.0, 1.0), seed=0).noisy
    if a.layout_ab:  # no ceilings: an 8192^2 fp16 product takes minutes on a CPU
        save(layout_ab(vol, paper3d, "paper3d", steps, a.layout_ab))
        save(layout_ab(train_img, paper, "paper", steps, a.layout_ab))
        return summary
    ceil = ceilings(256 if a.smoke else 8192)
    summary["ceilings"] = ceil
    log("ceilings: " + ", ".join(f"{k} {v:.1f}" for k, v in ceil.items()))
    save(training(train_img, steps, ceil, paper, "paper", () if a.quick or a.smoke else (80, 320),
                  ("torch.compile",) if a.compile else ()))
    tile = make_sample((512, 512), sigma=1.0, seed=0).noisy
    sizes = (512,) if a.smoke else (2048,) if a.quick else (2048, 4096, 8192)
    images = {f"{n}^2": np.tile(tile, (n // 512, n // 512)).astype(np.float32) for n in sizes}
    model = _trained(train_img, 10 if a.smoke else 50, **paper)
    save(prediction(model, images))
    save(training(vol, steps if a.smoke else max(10, steps // 2), ceil, paper3d, "paper3d"))
    big3d = vol.astype(np.float32) if a.smoke else np.tile(vol, (2, 4, 4))[:64, :512, :512].astype(np.float32)
    model3d = _trained(vol, 10 if a.smoke else 20, **paper3d)
    save(prediction(model3d, {"64x512x512": big3d}, ("fp32", "auto")))
    if a.peer_python:
        with tempfile.TemporaryDirectory() as tmp:
            save(peer(a.peer_python, train_img, images[next(iter(images))], steps, Path(tmp)))
    cache.cleanup()
    return summary


if __name__ == "__main__":
    main()
