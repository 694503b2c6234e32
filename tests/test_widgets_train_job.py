"""The training job: its Ready message carries the precision decision; a stopped run with no model."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from napari_deconoising._widgets._train_job import NoModel, Ready, TrainControl, train_job  # noqa: E402


def test_ready_carries_precision_and_reason(sample, tiny_config):
    job = train_job(TrainControl(), sample.noisy, tiny_config.replace(precision="auto"), "YX", None, None)
    ready = next(job)
    job.close()
    assert isinstance(ready, Ready) and ready.precision in ("fp32", "bf16") and ready.device == "cpu"
    assert ready.reason.startswith(("measured", "cached measured", "only candidate"))
    pinned = next(train_job(TrainControl(), sample.noisy, tiny_config, "YX", None, None))
    assert (pinned.precision, pinned.reason) == ("fp32", "requested")


def _stop_at(job, control, when):
    """Run ``job``, calling ``control.stop()`` on the first message ``when(message)`` accepts; its return value."""
    try:
        while True:
            if when(next(job)):
                control.stop()
    except StopIteration as end:
        return end.value


def test_a_run_stopped_before_its_first_epoch_returns_no_model(sample, tiny_config):
    control = TrainControl()
    job = train_job(control, sample.noisy, tiny_config.replace(epochs=2, steps_per_epoch=3), "YX", None, None)
    result = _stop_at(job, control, lambda m: getattr(m, "kind", None) == "step")
    assert isinstance(result, NoModel) and result.reason == "stopped before the first epoch ended"
    control = TrainControl()
    job = train_job(control, sample.noisy, tiny_config.replace(epochs=2, steps_per_epoch=3), "YX", None, None)
    kept = _stop_at(job, control, lambda m: getattr(m, "kind", None) == "epoch")
    assert len(kept.history) == 1


def test_a_stop_while_learning_sigma_returns_no_model_and_no_estimate(sample, tiny_config):
    """The learning run's model (a sigma taken part way) is not what the user asked for."""
    control, seen = TrainControl(), []

    def when(message):
        seen.append(message)
        return getattr(message, "kind", None) == "epoch"

    job = train_job(control, sample.noisy, tiny_config, "YX", None, None, estimate_sigma=True)
    result = _stop_at(job, control, when)
    assert isinstance(result, NoModel)
    assert result.reason.startswith("stopped while learning the PSF sigma (at ") and "px so far" in result.reason
    assert not any(isinstance(m, dict) for m in seen)  # no "sigma learned / using the default" message
    assert sum(isinstance(m, Ready) for m in seen) == 1  # the full training never started


def test_a_stop_during_the_edge_check_returns_no_model(sample, tiny_config, monkeypatch):
    """The check of a learned sigma takes up to a minute in 3D: a stop pressed then is honoured too."""
    from napari_deconoising.core import psf_check

    control, fitted = TrainControl(), []

    def slow_fit(images):  # the user presses Stop while the lines and edges are being fitted
        fitted.append(True)
        control.stop()

    monkeypatch.setattr(psf_check, "edge_sigma", slow_fit)
    seen = []
    job = train_job(control, sample.noisy, tiny_config, "YX", None, None, estimate_sigma=True)
    result = _stop_at(job, control, lambda m: seen.append(m) and False)
    assert fitted and isinstance(result, NoModel)
    assert result.reason == "stopped while checking the learned PSF sigma against the image's edges"
    assert not any(isinstance(m, dict) for m in seen) and sum(isinstance(m, Ready) for m in seen) == 1


def test_a_refused_start_leaves_save_naming_the_previous_model(train_widget, notifications, trained, tmp_path,
                                                               monkeypatch):
    """A per-channel run refused at Start changes no model: Save still writes the previous one, and says so."""
    import numpy as np

    from napari_deconoising._widgets import _train

    viewer, w = train_widget
    assert not w.save_button.enabled and "first" in w.save_button.tooltip
    trained.save(tmp_path / "earlier.pt")
    w.load_model(tmp_path / "earlier.pt")  # "Start from" now continues it
    w.form.image.value = viewer.add_image(np.zeros((2, 48, 48), np.float32), name="cells")
    w.form.axes.value = "CYX"
    assert not w.start()  # one network for a two-channel image: refused before anything changes
    assert any("one network" in m for m in notifications["error"]), notifications
    assert w.model is not None and w.model_name == "earlier" and w.save_button.enabled
    assert "'earlier'" in w.save_button.tooltip
    assert "The model 'earlier' is unchanged: Save model… writes it." in w.status.value
    asked = []
    monkeypatch.setattr(_train.QFileDialog, "getSaveFileName", lambda *a: asked.append(a) or ("", ""))
    w.save_button.clicked.emit()
    (_, title, default, _) = asked[0]
    assert title == "Save DecoNoising model 'earlier'" and default == "earlier.pt"
