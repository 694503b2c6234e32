"""The measurements of ``benchmarks/speed.py``: training steps, prediction and peak memory, ours.

``train_ours`` and ``predict_ours`` time DecoNoising in this process (``speed_peer_ab.py``
uses them too); ``measure_rss`` runs a prediction in a fresh subprocess (this file run as
a script) and reads its peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

CONFIGS = {
    "paper": dict(depth=3, channels=64, patch=100, batch=20),
    # CAREamics needs patches that are a multiple of 2**depth = 8: 104 is the nearest.
    "paper104": dict(depth=3, channels=64, patch=104, batch=20),
    "demo": dict(depth=2, channels=32, patch=64, batch=16),
    "tiny": dict(depth=2, channels=8, patch=32, batch=4),
}


def log(*a):
    print(*a, flush=True)


def _model(cfgname: str):
    """An untrained DecoNoising model (sigma 1) of the given size: same compute as a trained one."""
    import torch

    from napari_deconoising.core import DecoNoisingModel, DecoNoisingNet, TrainConfig, gaussian_psf

    c = CONFIGS[cfgname]
    tc = TrainConfig(
        depth=c["depth"], channels=c["channels"], patch_size=c["patch"], batch_size=c["batch"]
    )
    torch.manual_seed(0)
    psf = gaussian_psf(1.0)
    net = DecoNoisingNet(psf, depth=tc.depth, channels=tc.channels)
    return DecoNoisingModel(config=tc, state_dict=net.state_dict(), mean=0.0, std=1.0, psf=psf)


def train_ours(cfgname: str, precision: str, steps: int, image: np.ndarray, decoder: str | None = None) -> dict:
    """Seconds per training step (patch sampling, masking, forward, backward, Adam).

    Like ``Trainer.estimate_step_seconds`` (one untimed warm-up step), but every step
    is timed on its own so that the median and the minimum can be reported: on a
    shared CPU the minimum is the least disturbed measurement.
    """
    from napari_deconoising.core import TrainConfig, Trainer
    from napari_deconoising.core.heap import retained_heap

    c = CONFIGS[cfgname]
    tc = TrainConfig(
        depth=c["depth"],
        channels=c["channels"],
        patch_size=c["patch"],
        batch_size=c["batch"],
        precision=precision,
        psf="gaussian",
        psf_sigma=1.0,
        **({} if decoder is None else {"decoder": decoder}),  # None: the default decoder
    )
    tr = Trainer(image, tc)  # with precision "auto" this runs (and caches) the precision probe
    times = []
    # The allocator as Trainer.run sets it (core/heap.py): freed memory kept between steps.
    with retained_heap(tr.plan.device.type == "cpu"):
        tr._step()  # warm-up (oneDNN primitive creation)
        for _ in range(steps):
            t0 = time.perf_counter()
            tr._step()
            times.append(time.perf_counter() - t0)
    return {"median": float(np.median(times)), "min": float(np.min(times)), "all": times,
            "picked": tr.plan.precision, "reason": tr.plan.reason}


_TRAINED: dict = {}


def trained_model(cfgname: str, image: np.ndarray, steps: int = 20):
    """A model of the configuration trained for ``steps`` steps on ``image`` (once per configuration).

    Prediction costs the same with any weights, but ``precision="auto"`` checks the
    error of reduced precision on the model's own outputs, and an untrained network's
    output is mostly cancellation noise (bf16 measured 2.4 % there, 0.1-0.5 % trained).
    """
    if cfgname not in _TRAINED:
        from napari_deconoising.core import TrainConfig, train

        c = CONFIGS[cfgname]
        tc = TrainConfig(depth=c["depth"], channels=c["channels"], patch_size=c["patch"], batch_size=c["batch"],
                         epochs=max(1, steps // 10), steps_per_epoch=min(steps, 10), psf="gaussian", psf_sigma=1.0)
        t0 = time.perf_counter()
        _TRAINED[cfgname] = train(image, tc)
        log(f"trained the {cfgname} model for {tc.total_steps} steps ({time.perf_counter() - t0:.0f} s)")
    return _TRAINED[cfgname]


def predict_ours(cfgname: str, image: np.ndarray, precision: str = "fp32", train_image=None,
                 train_steps: int = 20, model_file: str | None = None) -> tuple[float, dict]:
    """Seconds to predict ``image`` (after a warm-up on a crop), and the plan that was used.

    ``auto`` is decided first (its probe takes seconds, once per machine and network while
    cached) and not timed: on a busy CPU the decision is not cached, and every call would
    measure again.
    """
    from napari_deconoising.core.predict import prediction_plan

    if model_file is not None:
        from napari_deconoising.core import load_model

        model = load_model(model_file)
        c = CONFIGS[cfgname]
        if (model.config.depth, model.config.channels) != (c["depth"], c["channels"]):
            raise SystemExit(f"{model_file} is not a {cfgname} model (depth {c['depth']}, {c['channels']} channels)")
    else:
        model = _model(cfgname) if train_image is None else trained_model(cfgname, train_image, train_steps)
    plan = prediction_plan(model, "cpu", precision)
    model.predict(image[:256, :256], precision=plan.precision)  # warm-up
    seen = []  # the plan as run: int8 calibrates on the image and may fall back to fp32 there
    t0 = time.perf_counter()
    model.predict(image, precision=plan.precision, on_plan=seen.append)
    seconds = time.perf_counter() - t0
    run = seen[-1]
    return seconds, {"picked": run.precision, "reason": f"{plan.reason} | as run: {run.precision}, {run.reason}"}


def rss_child(cfgname: str, size: int, baseline: bool, precision: str = "fp32") -> None:
    """Entry point of the fresh subprocess that measures peak RSS."""
    import torch  # noqa: F401

    from napari_deconoising.core import make_sample
    from napari_deconoising.core.predict import peak_rss_bytes

    rng = np.random.default_rng(0)
    tile = make_sample((512, 512), sigma=1.0, seed=0).noisy
    image = np.tile(tile, (size // 512, size // 512)) + rng.normal(0, 0.01, (size, size)).astype(
        np.float32
    )
    t0 = time.perf_counter()
    if not baseline:
        _model(cfgname).predict(image, precision=precision)
    print(
        json.dumps(
            {"peak_rss_bytes": peak_rss_bytes(), "seconds": time.perf_counter() - t0}
        )
    )


def measure_rss(cfgname: str, size: int, baseline: bool, precision: str = "fp32") -> dict:
    cmd = [sys.executable, __file__, cfgname, str(size), "--precision", precision] + (
        ["--baseline"] if baseline else []
    )
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # the peak-RSS child of measure_rss
    ap = argparse.ArgumentParser(description="Predict once in this fresh process and print its peak RSS (JSON).")
    ap.add_argument("config", choices=sorted(CONFIGS))
    ap.add_argument("size", type=int)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--baseline", action="store_true", help="only load torch and the image")
    a = ap.parse_args()
    rss_child(a.config, a.size, a.baseline, a.precision)
