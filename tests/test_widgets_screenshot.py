"""The docs' screenshot code path, run quickly with a shown viewer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.gui]

pytest.importorskip("napari")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshots.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("deconoising_screenshots", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_screenshot_after_a_run(qtbot, make_napari_viewer, fresh_registry, tmp_path):
    shots = _load_script()
    viewer = make_napari_viewer(show=True)
    demo = shots.run_demo(
        viewer, sample="synthetic", quick=True, wait=lambda p: qtbot.waitUntil(p, timeout=60_000)
    )
    train = demo["train"]
    assert train.plot.n_points == 4
    assert "synthetic noisy denoised" in viewer.layers
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    assert canvas.ndim == 3 and canvas.shape[-1] == 4
    rgb = canvas[..., :3].astype(float)
    assert rgb.std() > 5, "canvas is blank"
    files = shots.screenshots(viewer, demo, tmp_path)
    for f in files:
        assert f.stat().st_size < 300_000
    numbers = demo["numbers"]
    assert np.isfinite(numbers["psnr_denoised_vs_clean"])
