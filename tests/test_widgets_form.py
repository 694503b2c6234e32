"""The field-table forms: defaults from TrainConfig, reading back, one row per option."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytestmark = [pytest.mark.gui]

pytest.importorskip("napari")

from magicgui.widgets import SpinBox  # noqa: E402
from napari.components import ViewerModel  # noqa: E402

from napari_deconoising._widgets._form import Field, Form  # noqa: E402
from napari_deconoising._widgets._train_form import (  # noqa: E402
    PSF_FILE,
    PSF_LAYER,
    PSF_NONE,
    TrainForm,
    train_fields,
)
from napari_deconoising.core import ConfigError, PSFError, TrainConfig  # noqa: E402


@pytest.fixture
def model_viewer(qapp):
    return ViewerModel()


def test_every_row_names_a_real_config_field():
    fields = train_fields()
    names = [f.name for f in fields]
    assert len(names) == len(set(names))
    config_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    targets = [f.config for f in fields if f.config is not None]
    assert len(targets) == len(set(targets))
    assert set(targets) <= config_fields


def test_untouched_form_gives_the_default_config(model_viewer):
    form = TrainForm(model_viewer)
    assert form.config() == TrainConfig() and form.lr.value == "auto"
    assert form.sections["advanced"].native is not form.sections["main"].native
    assert form.epochs in form.sections["advanced"]
    assert form.sigma in form.sections["main"]


def test_form_values_reach_the_config(model_viewer):
    form = TrainForm(model_viewer)
    form.epochs.value = 7
    form.sigma.value = 2.5
    form.lr.value = "3e-4"
    form.psf_kind.value = PSF_NONE
    form.device.value = "cpu"
    config = form.config()
    assert (config.epochs, config.psf_sigma, config.lr) == (7, 2.5, 3e-4)
    assert config.psf == "none" and config.device == "cpu"
    form.psf_kind.value = PSF_LAYER
    assert form.config().psf == "measured"


def test_head_lr_scale_is_an_advanced_row_checked_by_the_config(model_viewer):
    form = TrainForm(model_viewer)
    assert form.head_lr_scale in form.sections["advanced"] and form.head_lr_scale.value == "auto"
    assert form.config().head_lr_scale is None  # the engine's rule
    form.head_lr_scale.value = "10"
    assert form.config().head_lr_scale == 10.0
    form.lr.value = "0.2"  # the head would learn at 2: the config refuses it, naming the field
    with pytest.raises(ConfigError, match="head_lr_scale"):
        form.config()
    form.lr.value = "auto"
    form.head_lr_scale.value = "fast"
    with pytest.raises(ConfigError, match="PSF head learning rate factor 'fast' is not a number"):
        form.config()


def test_weight_average_is_an_advanced_row(model_viewer):
    form = TrainForm(model_viewer)
    assert form.weight_average in form.sections["advanced"] and form.weight_average.value == 0.0
    form.weight_average.value = 0.995  # three decimals: the spin box must not round it to 0.99 or 1
    assert form.config().weight_average == 0.995


def test_bad_learning_rate_and_missing_psf_are_specific_errors(model_viewer):
    form = TrainForm(model_viewer)
    form.lr.value = "fast"
    with pytest.raises(ConfigError, match="learning rate 'fast'"):
        form.config()
    form.lr.value = " Auto "
    assert form.config().lr is None
    form.psf_kind.value = PSF_LAYER
    with pytest.raises(PSFError, match="image layer"):
        form.measured_psf()
    form.psf_kind.value = PSF_FILE
    with pytest.raises(PSFError, match="TIFF file"):
        form.measured_psf()


def test_psf_picker_offers_single_channel_images(model_viewer):
    model_viewer.add_image(np.zeros((8, 8, 3), np.uint8), rgb=True, name="photo")
    bead = model_viewer.add_image(np.ones((5, 5), np.float32), name="bead")
    form = TrainForm(model_viewer)
    form.psf_kind.value = PSF_LAYER
    assert form.psf_layer.choices == (None, bead)
    form.psf_layer.value = bead
    np.testing.assert_array_equal(form.measured_psf(), bead.data)


def test_a_new_option_is_one_row(model_viewer):
    """Adding a TrainConfig option to the form takes one Field row, nothing else."""
    row = Field.setting("mask_radius", SpinBox, "Mask radius", "advanced", min=1, max=9)
    form = Form((*train_fields(), row), model_viewer, defaults=TrainConfig())
    assert form.mask_radius.value == TrainConfig().mask_radius
    form.mask_radius.value = 4
    assert TrainConfig(**form.config_values()).mask_radius == 4
    assert form.mask_radius in form.sections["advanced"]


def test_image_choice_sets_axes_and_unknown_fields_fail(model_viewer):
    stack = model_viewer.add_image(np.zeros((3, 16, 16), np.float32), name="stack")
    form = TrainForm(model_viewer)
    form.image.value = stack
    assert form.axes.value == "SYX"
    assert form.image_and_axes() == (stack, "SYX")
    with pytest.raises(AttributeError, match="no field 'nope'"):
        _ = form.nope
