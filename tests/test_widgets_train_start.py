"""What Start training runs (module _train_start): the form gathered into a job, refusals before any copy."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gui]

napari = pytest.importorskip("napari")

from napari_deconoising._widgets._train_job import TrainControl, channels_job, train_job  # noqa: E402
from napari_deconoising._widgets._train_start import continuing_text, plan_run  # noqa: E402
from napari_deconoising.core import ChannelModels, ConfigError  # noqa: E402


@pytest.fixture
def form(train_widget, fresh_registry):
    viewer, widget = train_widget
    return viewer, widget.form, fresh_registry


def test_a_new_model_per_channel_gets_a_config_and_psf_each(form, rng):
    viewer, form, _ = form
    cells = rng.random((2, 32, 32), dtype=np.float32)
    form.image.value, form.axes.value = viewer.add_image(cells, name="cells"), "CYX"
    form.channel_sigmas.value = "1, 2"
    plan = plan_run(form, TrainControl())
    fn, _control, data, configs, axes, psfs, estimate, names, resume = plan.job
    assert fn is channels_job and axes == plan.axes == "CYX" and resume is None and not estimate
    assert [c.psf_sigma for c in configs] == [1.0, 2.0] and psfs == [None, None] and names == ["", ""]
    np.testing.assert_array_equal(data, cells)
    assert not np.shares_memory(data, cells)  # a private copy: the layer may change while training runs
    assert plan.epochs_before == 0 and continuing_text(plan) is None


def test_resuming_reads_no_psf_rows_and_says_what_is_kept(form, trained, trained3d, sample):
    viewer, form, registry = form
    form.image.value = viewer.add_image(sample.noisy, name="yx")
    form.psf_kind.value = "Measured PSF: image layer"  # no layer chosen: a resumed model keeps its PSF
    form.resume.reset_choices()
    form.resume.value = registry.add(trained, "single")
    form.depth.value = trained.config.depth + 1
    plan = plan_run(form, TrainControl())
    assert plan.job[0] is train_job and plan.job[5] is None and plan.job[6] is trained
    assert plan.epochs_before == len(trained.history)
    assert "Continuing 'single': its architecture (depth" in continuing_text(plan)
    form.resume.reset_choices()
    form.resume.value = registry.add(trained3d, "volume")
    with pytest.raises(ConfigError, match="the model to resume is 3D"):  # before the layer is read
        plan_run(form, TrainControl())
    pair = ChannelModels([trained, trained])
    form.image.value, form.axes.value = viewer.add_image(np.stack([sample.noisy] * 2), name="two"), "CYX"
    form.resume.reset_choices()
    form.resume.value = registry.add(pair, "pair")
    plan = plan_run(form, TrainControl())
    assert plan.job[0] is channels_job and plan.job[-1] is pair and plan.job[5] == [None, None]
    assert plan.epochs_before == 0  # each channel's curve follows the previous one's
    assert "its architecture of every channel" in continuing_text(plan)


def test_a_2d_3d_mismatch_names_the_forms_controls_not_the_command_line(train_widget, fresh_registry, notifications,
                                                                         trained, trained3d, sample, sample3d):
    """The widget's refusal says how to fix it with its own 3D box and Start from, never with ``--3d``."""
    viewer, w = train_widget
    pair3d = ChannelModels([trained3d, trained3d])
    cases = [  # (image, axes, 3D ticked, model to resume, what to do)
        (sample.noisy, "YX", False, trained3d, "tick the 3D box"),
        (sample3d.noisy, "ZYX", True, trained, "untick the 3D box"),
        (np.stack([sample.noisy] * 2), "CYX", False, pair3d, "tick the 3D box"),
    ]
    for k, (data, axes, three_d, model, fix) in enumerate(cases):
        w.form.image.value, w.form.axes.value = viewer.add_image(data, name=f"im{k}"), axes
        w.form.three_d.value = three_d
        w.form.resume.reset_choices()
        w.form.resume.value = fresh_registry.add(model, f"model{k}")
        notifications["error"].clear()
        assert not w.start()
        (message,) = notifications["error"]
        assert "is 3D" in message or "is 2D" in message, message
        assert fix in message and "Start from to '(new model)'" in message and "--" not in message, message
        assert "command line" not in message, message

