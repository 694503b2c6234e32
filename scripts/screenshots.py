"""Make the user guide's screenshots: the plugin's real widgets after a real run.

Usage (needs a display; on a headless machine run it under ``xvfb-run``)::

    python scripts/screenshots.py                # docs/images/*.png, ~2 min on 2 CPU cores
    python scripts/screenshots.py --quick        # tiny run, for a smoke test

The test suite calls :func:`run_demo` with ``quick=True`` (tests/test_widgets_screenshot.py),
so the screenshots and the tests go through the same code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

#: Training settings of the documented run (the defaults of this script).
DOC_SETTINGS = {
    "epochs": 40,
    "steps_per_epoch": 10,
    "batch_size": 16,
    "patch_size": 64,
    "depth": 2,
    "channels": 16,
    "micro_batches": 1,
    "device": "auto",
}
QUICK_SETTINGS = {
    "epochs": 2,
    "steps_per_epoch": 2,
    "batch_size": 4,
    "patch_size": 32,
    "depth": 2,
    "channels": 8,
    "micro_batches": 1,
    "device": "cpu",
}


def run_demo(
    viewer, *, sample: str = "nuclei", quick: bool = False, settings: dict | None = None, wait=None
) -> dict:
    """Open a sample, dock both widgets, train, apply, and return the widgets and numbers.

    Parameters
    ----------
    viewer : napari.Viewer
    sample : {"nuclei", "synthetic"}
        Which of the plugin's sample data sets to use.
    quick : bool
        Tiny settings (seconds) instead of :data:`DOC_SETTINGS`.
    wait : callable, optional
        ``wait(predicate)`` blocks until ``predicate()`` is true while processing Qt
        events (e.g. ``qtbot.waitUntil``); by default a local event loop.
    """
    from napari_deconoising._widgets import ApplyWidget, TrainWidget

    wait = wait or _wait
    viewer.open_sample("napari-deconoising", sample)
    noisy = viewer.layers[f"{sample} noisy"]
    truth = viewer.layers[f"{sample} ground truth"]
    clean = viewer.layers[f"{sample} clean"]
    _, train = viewer.window.add_plugin_dock_widget(
        "napari-deconoising", "Train model", tabify=False
    )
    assert isinstance(train, TrainWidget)
    train.form.image.value = noisy
    sigma = noisy.metadata["napari-deconoising sample"]["psf_sigma_px"]
    train.form.sigma.value = sigma
    train.form.positivity.value = 1.0
    for k, v in {**(QUICK_SETTINGS if quick else DOC_SETTINGS), **(settings or {})}.items():
        getattr(train.form, k).value = v
    train.truth_combo.value = clean
    t0 = time.perf_counter()
    if not train.start():
        raise RuntimeError("training did not start: " + train.status.value)
    wait(lambda: not train.busy)
    seconds = time.perf_counter() - t0
    train.plot.redraw()
    if train.model is None:
        raise RuntimeError("training failed: " + train.status.value)
    # PSNR of each result: denoised vs the clean image, deconvolved vs the phantom
    raw, den, dec = train.last_results
    from napari_deconoising.core import psnr

    numbers = {
        "sample": sample,
        "settings": train.config().to_dict(),
        "seconds": round(seconds, 1),
        "device": train.train_run.device,
        "epochs": len(train.model.history),
        "psnr_raw_vs_clean": psnr(clean.data, raw.data),
        "psnr_denoised_vs_clean": psnr(clean.data, den.data),
        "psnr_raw_vs_truth": psnr(truth.data, raw.data),
        "psnr_deconvolved_vs_truth": psnr(truth.data, dec.data),
        "psnr_denoised_vs_truth": psnr(truth.data, den.data),
    }
    _, apply = viewer.window.add_plugin_dock_widget(
        "napari-deconoising", "Apply model", tabify=True
    )
    assert isinstance(apply, ApplyWidget)
    apply.form.image.value = noisy
    return {"train": train, "apply": apply, "numbers": numbers}


def _wait(predicate, timeout_s: float = 3600) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout_s
    while not predicate():
        QApplication.processEvents()
        time.sleep(0.01)
        if time.monotonic() > end:
            raise TimeoutError("timed out waiting for the worker")


def save_png(image: np.ndarray, path: Path, max_width: int = 1100) -> Path:
    """Save an RGB(A) screenshot as a small palette PNG (< 300 KB for docs)."""
    from PIL import Image

    img = Image.fromarray(np.asarray(image)[..., :3])
    if img.width > max_width:
        img = img.resize((max_width, round(img.height * max_width / img.width)), Image.LANCZOS)
    img = img.quantize(colors=96, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    img.save(path, optimize=True)
    return path


def _settle(seconds: float = 0.5) -> None:
    """Let Qt finish layouts and repaints before a screenshot."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def _grab(widget) -> np.ndarray:
    """RGB array of one Qt widget (for a dock widget on its own)."""
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "grab.png")
        widget.grab().save(path)
        return np.asarray(Image.open(path).convert("RGB"))


def screenshots(viewer, demo: dict, out: Path) -> list[Path]:
    """Window screenshots (train widget, comparison, apply widget) and the train widget
    on its own with its advanced settings open."""
    out.mkdir(parents=True, exist_ok=True)
    train, apply = demo["train"], demo["apply"]
    files = []
    viewer.reset_view()
    train.parent().raise_()
    train.update_psnr()
    _settle()
    files.append(
        save_png(viewer.screenshot(canvas_only=False, flash=False), out / "train-widget.png")
    )
    train.toggle_compare()
    _settle()
    files.append(save_png(viewer.screenshot(canvas_only=False, flash=False), out / "compare.png"))
    train.toggle_compare()
    apply.parent().raise_()
    _settle()
    files.append(
        save_png(viewer.screenshot(canvas_only=False, flash=False), out / "apply-widget.png")
    )
    train.parent().raise_()
    train.advanced_box.expand(animate=False)
    _settle()
    files.append(save_png(_grab(train), out / "train-advanced.png"))
    train.advanced_box.collapse(animate=False)
    return files


def sigma_study(
    sigmas=(0.0, 0.75, 1.5, 3.0),
    positivities=(1.0, 0.0),
    true_sigma: float = 1.5,
    epochs: int = 15,
    seed: int = 0,
) -> list[dict]:
    """The user guide's table: effect of a wrong PSF sigma and of positivity.

    Trains one small model per setting on the synthetic sample (true sigma 1.5 px) with
    the core API (no GUI) and reports PSNR against the known clean image and phantom.
    Positivity 0 is only run at the true sigma.
    """
    from napari_deconoising.core import TrainConfig, make_sample, psnr, train

    s = make_sample((256, 256), sigma=true_sigma, seed=seed)
    rows = []
    for sigma in sigmas:
        for pos in positivities:
            if pos != positivities[0] and sigma != true_sigma:
                continue
            cfg = TrainConfig(
                psf="gaussian" if sigma > 0 else "none",
                psf_sigma=sigma,
                positivity=pos,
                epochs=epochs,
                steps_per_epoch=10,
                batch_size=16,
                patch_size=64,
                depth=2,
                channels=16,
                seed=seed,
                device="cpu",
            )
            t0 = time.perf_counter()
            model = train(s.noisy, cfg)
            pred = model.predict(s.noisy)
            row = {
                "psf_sigma": sigma,
                "positivity": pos,
                "seconds": round(time.perf_counter() - t0, 1),
                "psnr_denoised_vs_clean": round(psnr(s.clean, pred.denoised), 2),
                "psnr_deconvolved_vs_phantom": round(psnr(s.phantom, pred.deconvolved), 2),
                "negative_fraction_deconvolved": round(float((pred.deconvolved < 0).mean()), 4),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = {
        "psnr_noisy_vs_clean": round(psnr(s.clean, s.noisy), 2),
        "psnr_noisy_vs_phantom": round(psnr(s.phantom, s.noisy), 2),
    }
    print(json.dumps(base), flush=True)
    return [*rows, base]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images"
    )
    parser.add_argument("--sample", default="nuclei", choices=["nuclei", "synthetic"])
    parser.add_argument("--quick", action="store_true", help="tiny training run (seconds)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--sigma-study",
        action="store_true",
        help="no screenshots: print the user guide's PSF sigma / positivity table",
    )
    args = parser.parse_args(argv)
    if args.sigma_study:
        rows = sigma_study(epochs=args.epochs or 15)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sigma-study.json").write_text(json.dumps(rows, indent=2) + "\n")
        return 0

    import napari

    viewer = napari.Viewer(show=True, title="napari-deconoising")
    viewer.window.resize(1500, 950)
    settings = {"epochs": args.epochs} if args.epochs else None
    demo = run_demo(viewer, sample=args.sample, quick=args.quick, settings=settings)
    files = screenshots(viewer, demo, args.out)
    numbers = demo["numbers"]
    print(json.dumps(numbers, indent=2))
    (args.out / "screenshots-run.json").write_text(json.dumps(numbers, indent=2) + "\n")
    for f in files:
        print(f"{f} {f.stat().st_size // 1024} KB")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
