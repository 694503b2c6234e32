"""End-to-end tests of the napari widgets on tiny data (a few seconds each on 2 CPU cores)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import TINY_GUI, learned_estimate, set_tiny

pytestmark = [pytest.mark.gui]

napari = pytest.importorskip("napari")

from napari_deconoising._widgets import ApplyWidget, TrainWidget  # noqa: E402
from napari_deconoising._widgets._compare import _grid, is_comparing  # noqa: E402
from napari_deconoising._widgets._layers import PROVENANCE_KEY  # noqa: E402
from napari_deconoising.core import TrainConfig  # noqa: E402


def _wait_idle(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


@pytest.fixture
def viewer(make_napari_viewer, fresh_registry):
    return make_napari_viewer()


@pytest.fixture
def train_widget(viewer, tiny_sample_layer):
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Train")
    w.form.image.value = tiny_sample_layer
    set_tiny(w)
    return w


@pytest.fixture
def tiny_sample_layer(viewer, sample):
    viewer.add_image(sample.clean, name="clean", visible=False)
    return viewer.add_image(sample.noisy, name="noisy", scale=(0.5, 0.25), translate=(3, 4))


def test_train_end_to_end_in_a_thread(
    qtbot, viewer, train_widget, tiny_sample_layer, notifications
):
    """Real thread worker: loss plot gets points, both result layers appear with the
    source's shape, scale and translate, and the viewer's event loop keeps running."""
    w = train_widget
    assert w.form.axes.value == "YX"
    ticks = []
    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start()
    try:
        assert w.start()
        assert w.busy and not w.start_button.enabled and w.stop_button.enabled
        assert not w.start()  # a second start is refused
        assert any("already running" in m for m in notifications["warning"])
        _wait_idle(qtbot, w)
    finally:
        timer.stop()
    assert not notifications["error"], notifications["error"]
    assert len(ticks) > 3, "the GUI event loop was blocked during training"
    assert w.plot.n_points == 4  # 2 epochs x (train + validation)
    qtbot.waitUntil(lambda: w.plot.draw_count >= 1, timeout=5_000)  # throttled redraws ran
    w.plot.redraw()
    assert len(w.plot.val_line.get_xdata()) == 2
    den = viewer.layers["noisy denoised"]
    dec = viewer.layers["noisy deconvolved"]
    for layer in (den, dec):
        assert layer.data.shape == (96, 96)
        np.testing.assert_allclose(layer.scale, (0.5, 0.25))
        np.testing.assert_allclose(layer.translate, (3, 4))
        meta = layer.metadata[PROVENANCE_KEY]
        assert meta["source_layer"] == "noisy" and meta["config"]["depth"] == 2
        lo, hi = layer.contrast_limits
        assert hi > lo
    assert w.model is not None and len(w.model.history) == 2
    assert w.start_button.enabled and not w.stop_button.enabled and w.save_button.enabled
    assert "2 epochs" in w.status.value or "Added" in w.status.value


def test_second_run_never_overwrites(viewer, train_widget, sync_workers, notifications):
    w = train_widget
    assert w.start()
    assert w.start()
    names = [layer.name for layer in viewer.layers]
    assert "noisy denoised" in names and "noisy denoised [2]" in names
    assert "noisy deconvolved [2]" in names


def test_stop_mid_run_keeps_usable_model(qtbot, viewer, train_widget, notifications):
    w = train_widget
    set_tiny(w, epochs=200, steps_per_epoch=5)
    assert w.start()
    qtbot.waitUntil(lambda: w.progress.value() >= 6, timeout=30_000)  # into the second epoch
    w.stop()
    _wait_idle(qtbot, w)
    assert not notifications["error"], notifications["error"]
    assert w.model is not None
    assert 1 <= len(w.model.history) < 200
    assert "stopped early" in w.status.value
    assert viewer.layers["noisy deconvolved"].data.shape == (96, 96)
    assert np.isfinite(viewer.layers["noisy denoised"].data).all()


def test_stop_before_the_first_epoch_keeps_no_model(qtbot, viewer, train_widget, notifications):
    """Untrained weights are no model: nothing is registered, predicted or added."""
    from napari_deconoising._widgets._registry import REGISTRY

    w = train_widget
    set_tiny(w, epochs=200, steps_per_epoch=50)
    layers = [layer.name for layer in viewer.layers]
    assert w.start()
    qtbot.waitUntil(lambda: w.progress.value() >= 1, timeout=30_000)
    w.stop()
    _wait_idle(qtbot, w)
    assert not notifications["error"], notifications["error"]
    assert w.model is None and len(REGISTRY) == 0
    assert [layer.name for layer in viewer.layers] == layers
    assert "stopped before the first epoch ended: no model was kept" in w.status.value
    assert any("no model was kept" in m for m in notifications["warning"])
    assert not w.save_button.enabled


def test_closing_the_widget_stops_training(qtbot, viewer, train_widget):
    w = train_widget
    set_tiny(w, epochs=500, steps_per_epoch=5)
    assert w.start()
    qtbot.waitUntil(lambda: w.progress.value() >= 1, timeout=30_000)
    job, control = w.train_worker, w.control
    viewer.window.remove_dock_widget(w)
    w.close()
    assert job._done.is_set(), "worker thread still running after close"
    assert control.trainer is not None and control.trainer.stopped
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)


def test_refused_inputs_notify(viewer, sync_workers, notifications):
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert not w.start()  # no layer at all
    assert "no image layer" in notifications["error"][-1]
    rgb = viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True, name="photo")
    w.form.image.value = rgb
    assert not w.start()
    assert "RGB" in notifications["error"][-1]
    labels = viewer.add_labels(np.zeros((64, 64), np.int32), name="seg")
    w.form.image.value = labels
    assert not w.start()
    assert "labels layer" in notifications["error"][-1]
    img = viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="img")
    w.form.image.value = img
    w.form.lr.value = "fast"
    assert not w.start()
    assert "learning rate" in notifications["error"][-1]
    w.form.lr.value = "1e-3"
    set_tiny(w, micro_batches=8)  # more micro-batches than patches
    assert not w.start()
    assert notifications["error"][-1].startswith("Invalid setting: micro_batches")
    set_tiny(w)
    w.form.psf_kind.value = "Measured PSF: TIFF file"
    assert not w.start()
    assert "PSF" in notifications["error"][-1]
    assert not w.busy and w.start_button.enabled


def test_worker_error_reaches_user_and_resets_buttons(qtbot, viewer, notifications):
    """A real thread worker whose generator raises: specific message, buttons reset."""
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.form.image.value = viewer.add_image(np.full((96, 96), 7.0, np.float32), name="flat")
    set_tiny(w)
    assert w.start()  # the constant image is refused inside the worker (DataError)
    _wait_idle(qtbot, w)
    assert notifications["error"] and notifications["error"][-1].startswith("Cannot use this image")
    assert "constant" in notifications["error"][-1]
    assert w.start_button.enabled and not w.stop_button.enabled and not w.busy


def test_apply_compare_and_psnr(qtbot, viewer, train_widget, sample, sync_workers, notifications):
    w = train_widget
    truth = viewer.layers["clean"]
    assert w.start()
    other = viewer.add_image(np.stack([sample.noisy, sample.noisy[::-1]]), name="stack")
    other_hidden = viewer.add_image(sample.noisy, name="distractor")
    a = ApplyWidget(viewer)
    viewer.window.add_dock_widget(a, name="Apply")
    assert a.form.model.value == w.model_name  # the trained model is offered
    a.form.image.value = other
    assert a.form.axes.value == "SYX"
    from napari_deconoising.core.predict import tile_halo

    a.form.tile_size.value = 2 * tile_halo(w.model) + 16  # several tiles per slice
    assert a.run()
    assert not notifications["error"], notifications["error"]
    den = viewer.layers["stack denoised"]
    assert den.data.shape == (2, 96, 96)
    assert viewer.layers["stack deconvolved"].metadata[PROVENANCE_KEY]["model_name"] == w.model_name

    # compare from the train widget: raw | denoised | deconvolved, others hidden, then back
    grid = _grid(viewer)
    before = {layer.name: layer.visible for layer in viewer.layers}
    order = [layer.name for layer in viewer.layers]
    w.truth_combo.value = truth
    assert w.toggle_compare()
    assert grid.enabled and is_comparing(viewer)
    visible = [layer.name for layer in viewer.layers if layer.visible]
    assert visible == ["noisy", "noisy denoised", "noisy deconvolved"]
    assert not other_hidden.visible
    assert "PSNR" in w.psnr_label.value and "deconvolved" in w.psnr_label.value
    values = w.update_psnr()
    assert values["denoised"] > values["raw"]  # even a 4-step model denoises a bit
    assert not w.toggle_compare()
    assert not grid.enabled and not is_comparing(viewer)
    assert {layer.name: layer.visible for layer in viewer.layers} == before
    assert [layer.name for layer in viewer.layers] == order

    # the menu command (run through napari's app model, as the menu does) compares the
    # selected result
    from napari._app_model import get_app_model

    app = get_app_model()
    viewer.layers.selection.active = den
    app.commands.execute_command("napari-deconoising.compare").result()
    assert grid.enabled
    assert [layer.name for layer in viewer.layers if layer.visible] == [
        "stack",
        "stack denoised",
        "stack deconvolved",
    ]
    app.commands.execute_command("napari-deconoising.compare").result()
    assert not grid.enabled


def test_apply_threaded_with_cancel(qtbot, viewer, sample, notifications, trained):
    a = ApplyWidget(viewer)
    viewer.window.add_dock_widget(a)
    a.select_model(trained, "core-trained")
    big = np.tile(sample.noisy, (8, 1, 1))
    layer = viewer.add_image(big, name="big")
    a.form.image.value = layer
    from napari_deconoising.core.predict import tile_halo

    a.form.tile_size.value = 2 * tile_halo(trained) + 8  # many small tiles
    assert a.run()
    assert a.busy and a.cancel_button.enabled
    a.cancel()
    qtbot.waitUntil(lambda: not a.busy, timeout=30_000)
    assert "big denoised" not in viewer.layers
    assert "Cancelled" in a.status.value and a.run_button.enabled
    assert not notifications["error"]


def test_apply_refuses_mismatch(viewer, sample, sync_workers, notifications, trained):
    a = ApplyWidget(viewer)
    viewer.window.add_dock_widget(a)
    layer = viewer.add_image(sample.noisy, name="img")
    a.form.image.value = layer
    assert not a.run()
    assert notifications["error"][-1].startswith("No model selected: train one")
    a.select_model(trained, "m")
    a.form.axes.value = "TYX"
    assert not a.run()
    assert "3 letters" in notifications["error"][-1] or "axes" in notifications["error"][-1]
    for axes in ("QX", "TX", "YY"):  # refused before a worker starts, as the wrong count is
        a.form.axes.value = axes
        assert not a.run() and f"axes '{axes}'" in notifications["error"][-1]
    a.form.axes.value = "YX"
    bright = viewer.add_image(sample.noisy * 1000 + 5e4, name="bright")
    a.form.image.value = bright
    assert a.run()
    assert any("differ strongly" in m for m in notifications["warning"])


def test_save_load_round_trip(tmp_path, viewer, train_widget, sync_workers, notifications):
    w = train_widget
    assert w.start()
    path = tmp_path / "model.pt"
    assert w.save_model(path)
    assert path.is_file()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    assert w.load_model(bad) is None
    assert notifications["error"][-1].startswith("Cannot load the model")
    model = w.load_model(path)
    assert model is not None and len(model.history) == 2
    assert w.form.resume.value == "model"
    assert w.plot.n_points == 4
    # continue training the loaded model: history grows
    assert w.start()
    assert len(w.model.history) == 4
    a = ApplyWidget(viewer)
    viewer.window.add_dock_widget(a)
    assert "model" in a.form.model.choices


def test_tiny_settings_are_the_documented_ones():
    assert TINY_GUI["epochs"] * TINY_GUI["steps_per_epoch"] == 4


@pytest.mark.filterwarnings("ignore::napari_deconoising.core.DataWarning")
def test_trainer_warnings_are_shown(viewer, sample, sync_workers, notifications):
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.form.image.value = viewer.add_image(sample.noisy[:48, :48], name="small")
    set_tiny(w, patch_size=64)  # larger than the image: the core shrinks it and says so
    assert w.start()
    assert not notifications["error"], notifications["error"]
    assert any("patch" in m for m in notifications["warning"]), notifications["warning"]
    assert "small denoised" in viewer.layers


def test_stack_axes_and_psf_from_layer(viewer, sample, sync_workers, notifications):
    from napari_deconoising.core import gaussian_psf

    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    stack = viewer.add_image(
        np.stack([sample.noisy, sample.noisy.T, sample.noisy[::-1]]), name="tyx"
    )
    psf = viewer.add_image(gaussian_psf(1.5), name="psf")
    w.form.image.value = stack
    assert w.form.axes.value == "SYX"
    w.form.axes.value = "tyx"
    w.form.psf_kind.value = "Measured PSF: image layer"
    assert not w.form.psf_layer.native.isHidden() and w.form.sigma.native.isHidden()
    w.form.psf_layer.value = psf
    set_tiny(w)
    assert w.start()
    assert not notifications["error"], notifications["error"]
    assert w.model.config.psf == "measured" and w.model.psf is not None
    assert viewer.layers["tyx deconvolved"].data.shape == (3, 96, 96)
    assert viewer.layers["tyx deconvolved"].metadata[PROVENANCE_KEY]["axes"] == "TYX"


def test_closing_napari_window_stops_training(qtbot, make_napari_viewer, fresh_registry, sample):
    """The widget watches its window's Close event (napari closing) and stops the worker."""
    from qtpy.QtCore import QEvent

    from napari_deconoising._widgets._lifetime import _CloseWatcher

    viewer = make_napari_viewer(show=True)
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.form.image.value = viewer.add_image(sample.noisy, name="noisy")
    set_tiny(w, epochs=500, steps_per_epoch=5)
    assert w.start()
    qtbot.waitUntil(lambda: w.progress.value() >= 1, timeout=30_000)
    job, control = w.train_worker, w.control
    window = w.window()
    watchers = window.findChildren(_CloseWatcher)
    assert watchers
    for watcher in watchers:
        watcher.eventFilter(window, QEvent(QEvent.Type.Close))
    assert job._done.is_set() and control.trainer.stopped
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)


def test_psf_from_tiff_and_plot_follows_theme(
    tmp_path, viewer, train_widget, sync_workers, notifications
):
    import tifffile

    from napari_deconoising.core import gaussian_psf

    w = train_widget
    path = tmp_path / "bead.tif"
    tifffile.imwrite(path, gaussian_psf(1.2))
    w.form.psf_kind.value = "Measured PSF: TIFF file"
    w.form.psf_file.value = path
    assert w.start()
    assert not notifications["error"], notifications["error"]
    assert w.model.config.psf == "measured"
    dark = w.plot.figure.get_facecolor()
    viewer.theme = "light"
    assert w.plot.figure.get_facecolor() != dark


def test_estimate_sigma_from_data(viewer, train_widget, sync_workers, notifications):
    w = train_widget
    assert w.form.sigma.enabled and not w.form.sigma_auto.value
    w.form.sigma_auto.value = True
    assert not w.form.sigma.enabled and w.form.estimate_sigma()
    assert w.start()
    assert not notifications["error"], notifications["error"]
    est = w.model.psf_estimate
    assert est is not None and est["method"] == "learned" and w.model.config.psf_sigma == est["sigma"]
    assert est["message"] in notifications["info"] + notifications["warning"]
    assert est["message"] in w.status.value
    w.form.psf_kind.value = "None (plain Noise2Void)"
    assert w.form.sigma_auto.native.isHidden() and not w.form.estimate_sigma()


def test_a_resumed_model_keeps_its_sigma_note(viewer, train_widget, trained, fresh_registry, sync_workers,
                                             notifications):
    w = train_widget
    estimated = dataclasses.replace(trained, psf_estimate=learned_estimate(trained.config.psf_sigma))
    w.form.resume.reset_choices()
    w.form.resume.value = fresh_registry.add(estimated, "estimated")
    assert w.start()
    assert not notifications["error"], notifications["error"]
    assert w.model is not estimated and len(w.model.history) == len(trained.history) + TINY_GUI["epochs"]
    assert w.model.psf_estimate == estimated.psf_estimate
    assert estimated.psf_estimate["message"] in w.status.value


def test_n2v2_checkbox_sets_the_config(viewer, train_widget):
    w = train_widget
    assert w.config().n2v2 is False
    w.form.n2v2.value = True
    assert w.config().n2v2 is True


def test_decoder_choice_sets_the_config(viewer, train_widget):
    w = train_widget
    assert w.config().decoder == TrainConfig().decoder
    for k in ("wide", "lean"):
        w.form.decoder.value = k
        assert w.config().decoder == k
def test_status_says_which_precision_and_why(viewer, sample, sync_workers, notifications):
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.form.image.value = viewer.add_image(sample.noisy, name="img")
    set_tiny(w)
    assert w.start()
    assert not notifications["error"], notifications["error"]
    # The status line moves on to epochs and results; both decisions stay in its tooltip.
    training, prediction = w.status.tooltip.split("\n")
    assert training.startswith(("Training: cpu fp32 (", "Training: cpu bf16 (")), training
    assert "measured" in training or "only candidate" in training
    # The 96 px image is predicted in fp32 without a measurement (smaller than two probe tiles).
    assert prediction == "Prediction: cpu fp32 (small image: fp32, not measured (the precision probe would " \
        "cost more than the prediction))", prediction
    assert " on cpu in fp32: added " in w.status.value
    for role in ("denoised", "deconvolved"):
        meta = viewer.layers[f"img {role}"].metadata["napari-deconoising"]["prediction"]
        assert meta["device"] == "cpu" and meta["precision"] == "fp32" and meta["reason"].startswith("small image")


def test_intensity_warning_only_for_usable_images(trained):
    from napari_deconoising._widgets._apply import intensity_mismatch

    assert intensity_mismatch(trained, np.full((32, 32), 1e6, np.float32)) is None  # constant: refused elsewhere
    assert "differ strongly" in intensity_mismatch(trained, np.random.default_rng(0).normal(1e6, 1.0, (32, 32)))
    assert intensity_mismatch(trained, np.random.default_rng(0).normal(trained.mean, trained.std, (32, 32))) is None
