"""The end-to-end demo: synthetic sample -> Noise2Void and DecoNoising -> files, PSNR, picture."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from ._console import run_training
from .core.config import TrainConfig
from .core.io import write_image
from .core.sample import make_sample, psnr

# CPU-sized network: a few minutes on a 2-core laptop CPU for both methods together.
DEMO_CONFIG = TrainConfig(depth=2, channels=32, patch_size=64, batch_size=16, steps_per_epoch=10)
# The step budget adapts to the machine so that the demo takes about this long.
DEMO_MINUTES = 3.0
DEMO_MIN_SIZE = 64  # the demo's training patch: a smaller sample has nothing to train on
# What the demo does besides training steps (sample, validation, prediction, picture),
# as a fixed part and a fraction of the training time.
_OVERHEAD_S, _OVERHEAD_FRACTION = 15.0, 0.1
_MIN_STEPS, _MAX_STEPS = 50, 600


def measure_step_seconds(image: np.ndarray, cfg: TrainConfig) -> float:
    """Seconds per training step of ``cfg`` on this machine (two timed steps after a warm-up)."""
    from .core.train import Trainer

    return Trainer(image, cfg).estimate_step_seconds(steps=2)


def demo_steps(step_seconds: float, minutes: float = DEMO_MINUTES, methods: int = 2) -> int:
    """Training steps per method that fit ``minutes`` in all, in whole epochs of 10 steps.

    At least 50 (fewer teach too little to show the difference) and at most 600
    (more gains little on the 256 px sample).
    """
    train_s = (minutes * 60 - _OVERHEAD_S) / (1 + _OVERHEAD_FRACTION)
    steps = int(train_s / (methods * step_seconds))
    spe = DEMO_CONFIG.steps_per_epoch
    return max(_MIN_STEPS, min(_MAX_STEPS, steps // spe * spe))


def demo_minutes(steps: int, step_seconds: float, methods: int = 2) -> float:
    """About how long the demo takes with ``steps`` training steps per method (the inverse of
    :func:`demo_steps`, which it differs from where the step count hit its bounds)."""
    return (_OVERHEAD_S + methods * steps * step_seconds * (1 + _OVERHEAD_FRACTION)) / 60


def save_comparison_png(path: Path, panels: list[tuple[str, np.ndarray]], crop: int | None = None) -> None:
    """Side-by-side grey-scale panels with titles, contrast from the first panel."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if crop:
        panels = [(t, a[:crop, :crop]) for t, a in panels]
    lo, hi = np.percentile(panels[-1][1], (0.5, 99.8))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3), dpi=100)
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img, cmap="magma", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_demo(out: Path, steps: int | None = None, size: int = 256, viewer: bool = True, device: str = "auto",
             seed: int = 0, minutes: float = DEMO_MINUTES) -> int:
    """Run the demo and write its outputs to ``out``; returns an exit status.

    ``steps=None`` measures a training step first and trains as many steps per method
    as fit into about ``minutes`` (:func:`demo_steps`).
    """
    out.mkdir(parents=True, exist_ok=True)
    sample = make_sample((size, size), sigma=1.5, seed=seed)
    print(f"sample: {size}x{size} filaments and blobs, Gaussian PSF sigma {sample.sigma} px, "
          "Poisson + Gaussian read noise", file=sys.stderr)
    write_image(out / "noisy.tif", sample.noisy, "YX")
    write_image(out / "ground_truth.tif", sample.clean, "YX")
    write_image(out / "phantom.tif", sample.phantom, "YX")

    base = DEMO_CONFIG.replace(device=device, seed=seed)
    if steps is None:
        per_step = measure_step_seconds(sample.noisy, base.replace(psf="gaussian", psf_sigma=sample.sigma))
        steps = demo_steps(per_step, minutes)
        # Said from the steps actually chosen: on a fast machine the 600-step cap, not the
        # minutes, sets the length (a quiet 2-core EPYC announced 3 minutes and took 1.6).
        print(f"measured {per_step:.2f} s per training step here: training {steps} steps per method, "
              f"so the demo should take about {demo_minutes(steps, per_step):.1f} minutes "
              "(--steps N to choose)", file=sys.stderr)
    base = base.replace(epochs=max(1, steps // DEMO_CONFIG.steps_per_epoch))
    results = {}
    t0 = time.perf_counter()
    for name, cfg in (("Noise2Void", base.replace(psf="none")),
                      ("DecoNoising", base.replace(psf="gaussian", psf_sigma=sample.sigma))):
        model, _ = run_training(sample.noisy, cfg, label=f"[{name}] ")
        model.save(out / f"{name.lower()}.pt")
        results[name] = model.predict(sample.noisy, device=device)
    write_image(out / "n2v_denoised.tif", results["Noise2Void"].denoised, "YX")
    write_image(out / "denoised.tif", results["DecoNoising"].denoised, "YX")
    write_image(out / "deconvolved.tif", results["DecoNoising"].deconvolved, "YX")

    rng = float(sample.clean.max() - sample.clean.min())
    rows = [
        ("raw (noisy input)", psnr(sample.clean, sample.noisy, rng)),
        ("Noise2Void", psnr(sample.clean, results["Noise2Void"].denoised, rng)),
        ("DecoNoising denoised", psnr(sample.clean, results["DecoNoising"].denoised, rng)),
    ]
    print(f"\nPSNR against the noise-free image (data range {rng:.1f}), after "
          f"{time.perf_counter() - t0:.0f} s:", file=sys.stderr)
    for name, v in rows:
        print(f"  {name:<22s} {v:6.2f} dB", file=sys.stderr)
    prng = float(sample.phantom.max() - sample.phantom.min())
    print(f"  {'deconvolved vs phantom':<22s} {psnr(sample.phantom, results['DecoNoising'].deconvolved, prng):6.2f} dB"
          f"  (raw vs phantom {psnr(sample.phantom, sample.noisy, prng):.2f} dB)", file=sys.stderr)

    save_comparison_png(out / "comparison.png", [
        ("raw", sample.noisy),
        ("Noise2Void", results["Noise2Void"].denoised),
        ("DecoNoising denoised", results["DecoNoising"].denoised),
        ("DecoNoising deconvolved", results["DecoNoising"].deconvolved),
        ("ground truth", sample.clean),
    ], crop=min(size, 128))
    print(f"wrote {out}/: noisy, ground_truth, phantom, n2v_denoised, denoised, deconvolved (.tif), "
          "noise2void.pt, deconoising.pt, comparison.png", file=sys.stderr)

    if viewer and os.environ.get("DISPLAY") and not os.environ.get("CI"):
        try:
            import napari
        except ImportError:
            print("napari is not installed; skipping the viewer", file=sys.stderr)
            return 0
        v = napari.Viewer(title="DecoNoising demo")
        v.add_image(sample.clean, name="ground truth", visible=False)
        v.add_image(sample.noisy, name="raw")
        v.add_image(results["Noise2Void"].denoised, name="Noise2Void", visible=False)
        v.add_image(results["DecoNoising"].denoised, name="denoised")
        v.add_image(results["DecoNoising"].deconvolved, name="deconvolved")
        v.grid.enabled = True
        napari.run()
    return 0
