"""The demo's step budget adapts to the machine (with injected step times, never real timing)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import napari_deconoising.demo as demo


def test_budget_fills_the_minutes():
    # 0.1 s per step: (180 s - 15 s) / 1.1 = 150 s of training, 2 methods -> 750, capped at 600.
    assert demo.demo_steps(0.1) == 600
    assert demo.demo_steps(0.25) == 300
    assert demo.demo_steps(0.5) == 150
    assert demo.demo_steps(0.5, minutes=6) == 310  # (360 - 15) / 1.1 / 2 / 0.5 = 313
    assert demo.demo_steps(60.0) == 50  # a very slow machine still trains enough to show something


def test_announced_minutes_follow_the_chosen_steps():
    assert abs(demo.demo_minutes(demo.demo_steps(0.5), 0.5) - 3.0) < 0.1  # inside the bounds: the target
    assert demo.demo_minutes(600, 0.08) == (15 + 2 * 600 * 0.08 * 1.1) / 60  # capped: about 2 minutes
    assert demo.demo_minutes(50, 60.0) > 100  # a very slow machine is told so


@given(st.floats(0.001, 100.0), st.floats(0.001, 100.0))
def test_budget_law(a, b):
    """Whole epochs, within bounds, and never more steps for a slower machine."""
    sa, sb = demo.demo_steps(a), demo.demo_steps(b)
    assert sa % 10 == 0 and 50 <= sa <= 600
    if a <= b:
        assert sa >= sb


def test_demo_says_its_budget_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_CONFIG", demo.DEMO_CONFIG.replace(
        depth=2, channels=8, patch_size=32, batch_size=4, precision="fp32"))
    seen = []

    def fake_step_seconds(image, cfg):
        seen.append(cfg)
        return 0.9

    monkeypatch.setattr(demo, "measure_step_seconds", fake_step_seconds)
    monkeypatch.setattr(demo, "demo_steps", lambda s, minutes: 20 if (s, minutes) == (0.9, 2.0) else 0)
    assert demo.run_demo(tmp_path, steps=None, size=64, viewer=False, device="cpu", minutes=2.0) == 0
    err = capsys.readouterr().err
    first_training = err.index("training 2 epochs")
    # 15 s + 2 methods x 20 steps x 0.9 s x 1.1 = 54.6 s
    assert err.index("measured 0.90 s per training step here: training 20 steps per method, so "
                     "the demo should take about 0.9 minutes") < first_training
    assert seen[0].psf == "gaussian" and seen[0].channels == 8
