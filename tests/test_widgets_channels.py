"""The Apply widget with a model per channel, on layers with a channel axis."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytestmark = [pytest.mark.gui]

napari = pytest.importorskip("napari")

from napari_deconoising._widgets import ApplyWidget  # noqa: E402
from napari_deconoising._widgets._layers import PROVENANCE_KEY  # noqa: E402
from napari_deconoising.core import make_sample  # noqa: E402
from napari_deconoising.core.channels import train_channels  # noqa: E402


@pytest.fixture(scope="module")
def cyx_models(tiny_config):
    a, b = make_sample((48, 48), sigma=1.0, seed=1), make_sample((48, 48), sigma=2.0, seed=2)
    cyx = np.stack([a.noisy, 4 * b.noisy + 50])
    cfg = tiny_config.replace(epochs=1, steps_per_epoch=1, batch_size=2)
    return cyx, train_channels(cyx, [cfg.replace(psf_sigma=1.0), cfg.replace(psf_sigma=2.0)], "CYX")


@pytest.fixture
def apply_widget(make_napari_viewer, fresh_registry, cyx_models):
    viewer = make_napari_viewer()
    w = ApplyWidget(viewer)
    viewer.window.add_dock_widget(w, name="Apply")
    w.select_model(cyx_models[1], "two channels")
    return viewer, w


def test_apply_a_model_per_channel_keeps_the_c_axis(apply_widget, cyx_models, sync_workers, notifications):
    viewer, w = apply_widget
    cyx, models = cyx_models
    w.form.image.value = viewer.add_image(cyx, name="cells", scale=(1, 0.2, 0.2))
    w.form.axes.value = "CYX"
    assert "channel 1:" in w.form.model_info.value
    assert w.run()
    assert not notifications["error"], notifications["error"]
    expected = models.predict(cyx, "CYX", device="cpu")
    den, dec = viewer.layers["cells denoised"], viewer.layers["cells deconvolved"]
    np.testing.assert_allclose(den.data, expected.denoised, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dec.data, expected.deconvolved, rtol=1e-5, atol=1e-5)
    assert tuple(den.scale) == (1, 0.2, 0.2)
    facts = den.metadata[PROVENANCE_KEY]
    assert [c["config"]["psf_sigma"] for c in facts["channels"]] == [1.0, 2.0]


@pytest.mark.parametrize("axes, data, msg", [
    ("YX", lambda cyx: cyx[0], "one network per channel (2); layer 'other' (48, 48) has no axis of 2 channels"),
    ("ZYX", lambda cyx: cyx, "give layer 'other' axes with C for its axis of 2 (e.g. CYX)"),  # Z is not C here
    ("CYX", lambda cyx: cyx[:1].repeat(3, axis=0), "3 channel(s)"),
])
def test_apply_refuses_layers_that_do_not_match_the_channels(apply_widget, cyx_models, sync_workers,
                                                              notifications, axes, data, msg):
    viewer, w = apply_widget
    w.form.image.value = viewer.add_image(data(cyx_models[0]), name="other")
    w.form.axes.value = axes
    assert not w.run()
    assert any(msg in m for m in notifications["error"]), notifications["error"]
    assert "other denoised" not in viewer.layers


def test_a_channels_file_continues_training_in_the_train_widget(tmp_path, make_napari_viewer, fresh_registry,
                                                                cyx_models, sync_workers, notifications):
    from conftest import set_tiny

    from napari_deconoising._reader import get_reader
    from napari_deconoising._widgets import TrainWidget
    from napari_deconoising.core import ChannelModels

    cyx, before = cyx_models
    path = tmp_path / "two.pt"
    before.save(path)
    viewer = make_napari_viewer()
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train")  # napari refreshes its layer choices
    loaded = train.load_model(path)
    assert isinstance(loaded, ChannelModels) and train.model is loaded and train.form.resume.value == "two"
    # the plot shows each channel's history after the previous one's, as training them goes on to
    assert train.plot.train == ([1, 2], [m.history[0]["train_loss"] for m in before.models])
    assert "an image with 2 channels" in train.status.value and not notifications["warning"]
    set_tiny(train)
    form = train.form
    refusals = [  # image, axes, 3D, what the notification says
        (cyx[0], "YX", False, "holds one model per channel (2 channels): resume needs an image with 2 channels"),
        (np.concatenate([cyx, cyx[:1]]), "CYX", False, "the model to resume has 2 channels but the image has 3"),
        (np.stack([cyx] * 8, axis=1), "CZYX", True, "channel 1 of the model to resume is 2D"),
    ]
    for k, (data, axes, three_d, msg) in enumerate(refusals):
        form.image.value = viewer.add_image(data, name=f"wrong {k}")
        form.axes.value, form.three_d.value = axes, three_d
        names = [layer.name for layer in viewer.layers]
        assert not train.start()
        assert msg in notifications["error"][-1], notifications["error"]
        assert [layer.name for layer in viewer.layers] == names and train.model is loaded
    form.image.value = viewer.add_image(cyx, name="cells")
    form.axes.value, form.three_d.value = "CYX", False
    form.psf_kind.value = "Measured PSF: image layer"  # none chosen: a resumed model keeps its own PSFs
    assert train.start()
    assert len(notifications["error"]) == len(refusals), notifications["error"]
    after = train.model
    assert isinstance(after, ChannelModels) and after is not loaded
    assert [len(m.history) for m in after.models] == [3, 3]  # 1 epoch before, 2 now
    for old, new in zip(before.models, after.models):
        assert new.history[0] == old.history[0] and (new.mean, new.std) == (old.mean, old.std)
        assert new.config.psf_sigma == old.config.psf_sigma and new.config.psf == "gaussian"
    assert "cells denoised" in viewer.layers
    reader = get_reader(str(path))
    assert reader is not None and reader(str(path)) == [(None,)]
    assert "two [2]" in fresh_registry


# -- training a model per channel in the Train widget ------------------------------------------

from conftest import set_tiny  # noqa: E402

from napari_deconoising._widgets._train_job import ChannelStart, Ready, TrainControl, channels_job  # noqa: E402
from napari_deconoising.core import ChannelModels  # noqa: E402
from napari_deconoising.core.channels import load_model  # noqa: E402


@pytest.fixture
def two_channels():
    """Two 48x48 channels with different PSF widths and intensity ranges."""
    a, b = make_sample((48, 48), sigma=1.0, seed=1), make_sample((48, 48), sigma=2.0, seed=2)
    return np.stack([a.noisy, 4 * b.noisy + 50]).astype(np.float32)


def _spy_messages(w):
    """Record (message, status text, progress value, progress maximum) for every training message."""
    seen, handle = [], w._on_train_message

    def spy(message):
        handle(message)
        seen.append((message, w.status.value, w.progress.value(), w.progress.maximum()))

    w._on_train_message = spy  # start() connects the instance attribute
    return seen


def test_a_resumed_model_per_channel_plots_each_channels_history_and_keeps_its_sigma_note(
        train_widget, cyx_models, two_channels, fresh_registry, sync_workers, notifications):
    from conftest import learned_estimate

    viewer, w = train_widget
    before = ChannelModels([dataclasses.replace(m) for m in cyx_models[1].models])  # the fixture stays as it is
    before.models[1].psf_estimate = learned_estimate(before.models[1].config.psf_sigma)  # channel 1's was typed in
    w.form.image.value, w.form.axes.value = viewer.add_image(two_channels, name="cells"), "CYX"
    w.form.resume.reset_choices()
    w.form.resume.value = fresh_registry.add(before, "two")
    set_tiny(w)
    assert w.start()
    assert not notifications["error"], notifications["error"]
    after = w.model
    assert [len(m.history) for m in after.models] == [3, 3]  # 1 epoch before, 2 now
    # each channel's curve: its earlier epoch, then its new ones, after the previous channel's curve
    assert w.plot.train[0] == [1, 2, 3, 4, 5, 6]
    assert w.plot.train[1] == [h["train_loss"] for m in after.models for h in m.history]
    assert w.plot.val[1] == [h["val_loss"] for m in after.models for h in m.history]
    assert w.plot.steps[0] == [1.5, 2, 2.5, 3, 4.5, 5, 5.5, 6]  # 2 steps an epoch, within the new epochs
    # the sigma note stays with the model that has it, and the status says so
    assert [m.psf_estimate for m in after.models] == [None, before.models[1].psf_estimate]
    assert f"Channel 2: {before.models[1].psf_estimate['message']}" in w.status.value
    assert "Channel 1:" not in w.status.value


def test_a_cyx_layer_trains_a_model_per_channel(tmp_path, train_widget, two_channels, sync_workers,
                                                notifications):
    viewer, w = train_widget
    original = two_channels.copy()
    layer = viewer.add_image(two_channels, name="cells", scale=(1, 0.2, 0.2))
    form = w.form
    form.image.value = layer
    form.axes.value = "CYX"
    assert form.channel_count() == 2
    assert form.sigma.native.isHidden() and not form.channel_sigmas.native.isHidden()
    assert form.channel_sigmas.value == f"{form.sigma.value:g}"  # filled from the single value
    form.channel_sigmas.value = "1.0, 2.0"
    set_tiny(w)
    seen = _spy_messages(w)
    assert w.start()
    assert not notifications["error"], notifications["error"]
    # progress runs over both channels; each message names its channel
    starts = [m for m, *_ in seen if isinstance(m, ChannelStart)]
    assert [(s.index, s.count) for s in starts] == [(0, 2), (1, 2)]
    assert {most for *_, most in seen} == {2 * 4}
    steps = [p for m, _, p, _ in seen if getattr(m, "kind", None) == "step"]
    assert steps == sorted(steps) and steps[-1] == 8
    assert any(t.startswith("Channel 2/2 · Epoch 1/2 · step 1/4") for _, t, *_ in seen), [t for _, t, *_ in seen]
    assert w.plot.n_points == 2 * 2 * 2  # 2 channels x 2 epochs x (train + validation)
    assert w.plot.train[0] == [1, 2, 3, 4]  # the second channel's epochs follow the first's
    # the model: one network per channel, each with its sigma
    model = w.model
    assert isinstance(model, ChannelModels)
    assert [m.config.psf_sigma for m in model.models] == [1.0, 2.0]
    assert "2 channels, 2 epochs each" in w.status.value
    # results keep the C axis and the scale; the input is untouched
    expected = model.predict(two_channels, "CYX", device="cpu")
    den, dec = viewer.layers["cells denoised"], viewer.layers["cells deconvolved"]
    np.testing.assert_allclose(den.data, expected.denoised, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dec.data, expected.deconvolved, rtol=1e-5, atol=1e-5)
    assert tuple(den.scale) == tuple(dec.scale) == (1, 0.2, 0.2)
    np.testing.assert_array_equal(layer.data, original)
    # saved as the Train widget saves any model; the Apply widget runs the file the same way
    path = tmp_path / "cells.pt"
    assert w.save_model(path)
    loaded = load_model(path)
    assert isinstance(loaded, ChannelModels) and len(loaded.models) == 2
    apply = ApplyWidget(viewer)
    viewer.window.add_dock_widget(apply, name="Apply")
    assert apply.load_model(path) is not None
    apply.form.image.value = layer
    apply.form.axes.value = "CYX"
    assert apply.run()
    assert not notifications["error"], notifications["error"]
    np.testing.assert_allclose(viewer.layers["cells denoised [2]"].data, den.data, rtol=1e-5, atol=1e-5)


def test_several_layers_train_one_model_with_a_result_pair_each(train_widget, two_channels, sync_workers,
                                                                 notifications):
    viewer, w = train_widget
    green = viewer.add_image(two_channels[0].copy(), name="green", colormap="green", scale=(0.2, 0.2))
    magenta = viewer.add_image(two_channels[1].copy(), name="magenta", colormap="magenta", scale=(0.2, 0.2))
    viewer.add_image(two_channels[0][:24], name="other shape")
    form = w.form
    form.image.value = green
    form.axes.value = "YX"
    assert form.channel_count() == 1 and form.channel_sigmas.native.isHidden()
    form.extra_layers.value = [magenta]
    assert form.channel_count() == 2 and not form.channel_sigmas.native.isHidden()
    form.channel_sigmas.value = "1 2"
    set_tiny(w)
    seen = _spy_messages(w)
    assert w.start()
    assert not notifications["error"], notifications["error"]
    assert [m.name for m, *_ in seen if isinstance(m, ChannelStart)] == ["green", "magenta"]
    assert any(t.startswith("Channel 2/2 (magenta) · Epoch") for _, t, *_ in seen)
    model = w.model
    assert isinstance(model, ChannelModels) and [m.config.psf_sigma for m in model.models] == [1.0, 2.0]
    assert "added 'green denoised' and 'green deconvolved', 'magenta denoised' and" in w.status.value
    expected = model.predict(two_channels, "CYX", device="cpu")
    for k, source in enumerate((green, magenta)):
        np.testing.assert_array_equal(source.data, two_channels[k])  # inputs untouched
        for role, want in (("denoised", expected.denoised[k]), ("deconvolved", expected.deconvolved[k])):
            out = viewer.layers[f"{source.name} {role}"]
            np.testing.assert_allclose(out.data, want, rtol=1e-5, atol=1e-5)
            assert out.colormap.name == source.colormap.name and tuple(out.scale) == (0.2, 0.2)
            facts = out.metadata[PROVENANCE_KEY]
            assert facts["channel"] == k and facts["axes"] == "YX" and len(facts["channels"]) == 2


@pytest.mark.parametrize("case, msg", [
    ("too many sigmas", "3 PSF sigmas given for 2 channels"),
    ("not numbers", "not a list of numbers"),
    ("no sigma", "enter the PSF sigma"),
    ("other shape", "the channels of one model need the same shape"),
    ("C axis and extra", "not both"),
    ("channels last", "after Y and X"),
    ("resume", "one network, for images without a channel axis"),
    ("too large", "layers that fit in memory"),
    ("PSF count", "3 measured PSFs given for 2 channels"),
    ("3D PSF", "the PSF of channel 2 of 2: PSF has 3 dimensions"),
])
def test_bad_channel_input_is_refused_with_a_message(train_widget, two_channels, trained, fresh_registry,
                                                     sync_workers, notifications, case, msg):
    viewer, w = train_widget
    cyx = viewer.add_image(two_channels, name="cells")
    yx = viewer.add_image(two_channels[0], name="yx")
    small = viewer.add_image(two_channels[1][:24], name="small")
    form = w.form
    set_tiny(w)
    form.image.value, form.axes.value = cyx, "CYX"
    if case == "too many sigmas":
        form.channel_sigmas.value = "1, 2, 3"
    elif case == "not numbers":
        form.channel_sigmas.value = "1.2, wide"
    elif case == "no sigma":
        form.channel_sigmas.value = " "
    elif case == "other shape":
        form.image.value, form.axes.value, form.extra_layers.value = yx, "YX", [small]
    elif case == "C axis and extra":
        form.extra_layers.value = [yx]
    elif case == "channels last":
        form.image.value = viewer.add_image(np.moveaxis(two_channels, 0, -1).copy(), name="yxc")
        form.axes.value = "YXC"
    elif case == "too large":  # a lazy (dask) layer: the channels would all be read into memory
        da = pytest.importorskip("dask.array")
        form.image.value = viewer.add_image(da.from_array(two_channels, chunks=(1, 24, 24)), name="lazy")
        form.axes.value = "CYX"
    elif case in ("PSF count", "3D PSF"):
        from napari_deconoising.core import gaussian_psf

        beads = [viewer.add_image(gaussian_psf(1.0), name=f"bead {k}") for k in range(2)]
        beads.append(viewer.add_image(gaussian_psf(1.0, ndim=3), name="bead 3D"))
        form.psf_kind.value = "Measured PSF: image layer"
        form.channel_psf_layers.value = beads if case == "PSF count" else beads[1:]
    elif case == "resume":
        name = fresh_registry.add(trained, "single")
        form.resume.reset_choices()
        form.resume.value = name
    names = [layer.name for layer in viewer.layers]
    assert not w.start()
    assert any(msg in m for m in notifications["error"]), notifications["error"]
    assert [layer.name for layer in viewer.layers] == names  # nothing added, nothing lost
    assert w.model is None and not w.busy
    np.testing.assert_array_equal(cyx.data, two_channels)


def test_sigma_estimated_for_each_channel(train_widget, two_channels, sync_workers, notifications):
    viewer, w = train_widget
    w.form.image.value, w.form.axes.value = viewer.add_image(two_channels, name="cells"), "CYX"
    w.form.sigma_auto.value = True
    assert not w.form.channel_sigmas.enabled and w.form.estimate_sigma()
    set_tiny(w)
    assert w.start()
    assert not notifications["error"], notifications["error"]
    estimates = [m.psf_estimate for m in w.model.models]
    assert all(e is not None and e["method"] == "learned" for e in estimates)
    told = notifications["info"] + notifications["warning"]
    for k, est in enumerate(estimates):
        assert f"Channel {k + 1}/2 · {est['message']}" in told
        assert w.model.models[k].config.psf_sigma == est["sigma"]
    xs = w.plot.train[0]  # every run (a second one after an unclear estimate) follows the previous
    assert xs == sorted(xs) and len(xs) == len(set(xs)) >= 4


def test_3d_channels_get_a_z_sigma_each(train_widget, sample3d, sync_workers, notifications):
    viewer, w = train_widget
    czyx = np.stack([sample3d.noisy, 2 * sample3d.noisy + 10]).astype(np.float32)
    layer = viewer.add_image(czyx, name="vol", scale=(1, 2.0, 0.5, 0.5))
    form = w.form
    form.image.value, form.axes.value, form.three_d.value = layer, "CZYX", True
    assert form.is_3d and not form.channel_sigmas_z.native.isHidden() and form.sigma_z.native.isHidden()
    form.channel_sigmas.value, form.channel_sigmas_z.value = "1", "2, 2.5"
    set_tiny(w, epochs=1, steps_per_epoch=2, batch_size=2)
    form.z_patch.value = 8
    assert w.start()
    assert not notifications["error"], notifications["error"]
    assert [m.config.psf_sigma for m in w.model.models] == [(2.0, 1.0, 1.0), (2.5, 1.0, 1.0)]
    assert all(m.ndim == 3 for m in w.model.models)
    out = viewer.layers["vol deconvolved"]
    assert out.data.shape == czyx.shape and tuple(out.scale) == (1, 2.0, 0.5, 0.5)


def test_stop_before_the_last_channel_keeps_no_model(sample, tiny_config):
    """The job stops the channel in training and trains no further channel: no half-trained model.

    Stopped in the last channel before its first epoch ended, that channel's weights are
    untrained: no model either. Stopped after it, the model is kept.
    """
    data = np.stack([sample.noisy, sample.noisy.T])
    cfg = tiny_config.replace(epochs=2, steps_per_epoch=3, batch_size=2)
    cases = (("ready", 0, None, 0), ("ready", 1, None, 6), ("epoch", 1, ChannelModels, 9))
    for when, channel, want, n_steps in cases:
        control = TrainControl()
        job, seen = channels_job(control, data, [cfg, cfg], "CYX", [None, None]), []
        try:
            while True:
                msg = next(job)
                seen.append(msg)
                in_channel = sum(isinstance(m, ChannelStart) for m in seen) == channel + 1
                hit = isinstance(msg, Ready) if when == "ready" else getattr(msg, "kind", None) == "epoch"
                if in_channel and hit:
                    control.stop()
        except StopIteration as end:
            result = end.value
        steps = [m for m in seen if getattr(m, "kind", None) == "step"]
        assert len(steps) == n_steps, (when, channel)
        if want is None:
            assert result is None, (when, channel)
            assert sum(isinstance(m, ChannelStart) for m in seen) == channel + 1
        else:
            assert isinstance(result, ChannelModels) and len(result.models) == 2
            assert [len(m.history) for m in result.models] == [2, 1]


def test_stop_in_the_widget_during_the_first_channel(qtbot, train_widget, two_channels, notifications):
    viewer, w = train_widget
    w.form.image.value, w.form.axes.value = viewer.add_image(two_channels, name="cells"), "CYX"
    set_tiny(w, epochs=200, steps_per_epoch=5)
    assert w.start()
    qtbot.waitUntil(lambda: w.progress.value() >= 2, timeout=30_000)
    w.stop()
    qtbot.waitUntil(lambda: not w.busy, timeout=60_000)
    assert not notifications["error"], notifications["error"]
    assert w.model is None and not w.save_button.enabled
    assert any("no model was kept" in m for m in notifications["warning"]), notifications["warning"]
    assert "cells denoised" not in viewer.layers and w.start_button.enabled


def test_trained_size_counts_epochs_in_channel_order(tiny_config):
    from napari_deconoising._widgets._train_channels import trained_size
    from napari_deconoising.core import DecoNoisingModel

    def model(n):
        return DecoNoisingModel(config=tiny_config, state_dict={}, mean=0.0, std=1.0, psf=None,
                                history=[{"epoch": k + 1} for k in range(n)])

    assert trained_size(model(1)) == "1 epoch" and trained_size(model(4)) == "4 epochs"
    assert trained_size(ChannelModels([model(2), model(2)])) == "2 channels, 2 epochs each"
    assert trained_size(ChannelModels([model(50), model(3)])) == "2 channels, 50 and 3 epochs"
    assert trained_size(ChannelModels([model(5), model(5), model(1)])) == "3 channels, 5, 5 and 1 epoch"
