"""The Train form's "From optics" PSF: rows, equivalent sigma, preview layer, training with it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import set_tiny

pytestmark = [pytest.mark.gui]

pytest.importorskip("napari")
pytest.importorskip("psf")

from napari.components import ViewerModel  # noqa: E402

from napari_deconoising._widgets._optics_rows import CONFOCAL_ROWS, OPTICS_ROWS  # noqa: E402
from napari_deconoising._widgets._train_form import PSF_GAUSSIAN, PSF_OPTICS, TrainForm  # noqa: E402
from napari_deconoising.core.optics import Optics, OpticsError, gaussian_sigma, optics_psf  # noqa: E402

OIL = Optics(na=1.4, wavelength_nm=520, n_immersion=1.518, pixel_nm=65, z_step_nm=200)


@pytest.fixture
def form(qapp):
    return TrainForm(ViewerModel())


def test_optics_rows_only_for_from_optics(form):
    # ``visible`` of an unshown widget is False; the form's own flag is what it asked for
    assert not any(form.widgets[n].native.isVisibleTo(form.sections["main"].native) for n in OPTICS_ROWS)
    form.psf_kind.value = PSF_OPTICS
    shown = {n for n in OPTICS_ROWS if form.widgets[n].native.isVisibleTo(form.sections["main"].native)}
    assert shown == set(OPTICS_ROWS) - set(CONFOCAL_ROWS)
    assert not form.sigma.native.isVisibleTo(form.sections["main"].native)
    form.modality.value = "confocal"
    assert all(form.widgets[n].native.isVisibleTo(form.sections["main"].native) for n in OPTICS_ROWS)
    form.psf_kind.value = PSF_GAUSSIAN
    assert not any(form.widgets[n].native.isVisibleTo(form.sections["main"].native) for n in OPTICS_ROWS)


def test_defaults_read_back_as_the_documented_oil_objective(form):
    form.psf_kind.value = PSF_OPTICS
    config = form.config()
    assert config.psf == "measured" and config.optics == OIL
    np.testing.assert_array_equal(form.measured_psf(), optics_psf(OIL))


def test_equivalent_sigma_follows_the_fields(form):
    assert form.psf_sigma_info.value == f"{gaussian_sigma(OIL)[1]:.2f} px"
    form.pixel_nm.value = 130
    assert form.psf_sigma_info.value == f"{gaussian_sigma(OIL)[1] / 2:.2f} px"
    form.na.value = 1.6
    assert "impossible" in form.psf_sigma_info.value
    form.psf_kind.value = PSF_OPTICS
    with pytest.raises(OpticsError, match="impossible"):
        form.config()


def test_confocal_fields_reach_the_optics(form):
    form.psf_kind.value = PSF_OPTICS
    form.modality.value = "confocal"
    form.excitation_nm.value = 561
    form.emission_nm.value = 600
    form.pinhole.value = 0.8
    o = form.config().optics
    assert (o.modality, o.excitation_nm, o.wavelength_nm, o.pinhole) == ("confocal", 561, 600, 0.8)


def test_preview_adds_one_layer_with_the_optics(make_napari_viewer, notifications):
    viewer = make_napari_viewer()
    form = TrainForm(viewer)
    form.psf_kind.value = PSF_OPTICS
    form.preview_psf.clicked.emit()
    assert len(viewer.layers) == 1
    layer = viewer.layers[0]
    np.testing.assert_array_equal(layer.data, optics_psf(OIL))
    assert layer.metadata["optics"] == OIL.to_dict()
    assert layer.metadata["gaussian_sigma_px"] == pytest.approx(list(gaussian_sigma(OIL)))
    form.preview_psf.clicked.emit()  # same optics: the layer is reused
    assert len(viewer.layers) == 1
    form.na.value = 1.6
    form.preview_psf.clicked.emit()
    assert len(viewer.layers) == 1 and "impossible" in notifications["error"][-1]


def test_training_from_optics_keeps_them_in_the_model(make_napari_viewer, fresh_registry, sync_workers,
                                                     sample, notifications):
    from napari_deconoising._widgets import TrainWidget

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.form.image.value = viewer.add_image(sample.noisy, name="noisy")
    set_tiny(w)
    w.form.psf_kind.value = PSF_OPTICS
    assert w.start()
    assert not notifications["error"], notifications["error"]
    assert w.model.config.optics == OIL
    np.testing.assert_array_equal(w.model.psf, optics_psf(OIL))
    assert "widefield PSF NA 1.4" in w.model.summary()


def test_preview_leaves_a_layer_of_the_users_with_its_name_alone(make_napari_viewer, notifications):
    viewer = make_napari_viewer()
    form = TrainForm(viewer)
    form.psf_kind.value = PSF_OPTICS
    mine = np.ones((3, 3), np.float32)
    user = viewer.add_image(mine.copy(), name=f"PSF {OIL.modality} NA {OIL.na:g} {OIL.wavelength_nm:g} nm")
    form.preview_psf.clicked.emit()
    np.testing.assert_array_equal(user.data, mine)
    assert len(viewer.layers) == 2 and viewer.layers[-1].metadata["optics"] == OIL.to_dict()
