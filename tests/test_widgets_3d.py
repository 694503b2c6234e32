"""The Train widget's 3D switch, Z patch and Z sigma, on tiny stacks."""

from __future__ import annotations

import pytest
from conftest import set_tiny

pytestmark = [pytest.mark.gui]

napari = pytest.importorskip("napari")

from napari_deconoising._widgets import TrainWidget  # noqa: E402
from napari_deconoising._widgets._layers import PROVENANCE_KEY  # noqa: E402


@pytest.fixture
def viewer(make_napari_viewer, fresh_registry):
    return make_napari_viewer()


@pytest.fixture
def widget(viewer):
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Train")
    return w


def test_3d_switch_needs_a_z_axis(viewer, widget, sample, sample3d):
    form = widget.form
    form.image.value = viewer.add_image(sample.noisy, name="yx")
    assert form.axes.value == "YX" and not form.three_d.enabled
    form.three_d.value = True  # a checked but disabled switch still trains in 2D
    assert not form.is_3d and form.config().ndim == 2
    form.image.value = viewer.add_image(sample3d.noisy, name="zyx")
    form.axes.value = "ZYX"
    assert form.three_d.enabled and form.is_3d
    assert not form.z_patch.native.isHidden() and not form.sigma_z.native.isHidden()
    form.axes.value = "SYX"  # a plain stack: slice by slice
    assert not form.three_d.enabled and form.z_patch.native.isHidden()


def test_3d_config_from_the_form(viewer, widget, sample3d):
    form = widget.form
    form.image.value = viewer.add_image(sample3d.noisy, name="zyx")
    form.axes.value = "ZYX"
    form.three_d.value = True
    form.patch_size.value, form.z_patch.value = 32, 8
    form.sigma.value, form.sigma_z.value = 1.0, 2.5
    cfg = form.config()
    assert cfg.ndim == 3 and cfg.patch_size == (8, 32, 32) and cfg.psf_sigma == (2.5, 1.0, 1.0)
    form.three_d.value = False
    cfg = form.config()
    assert cfg.ndim == 2 and cfg.patch_size == 32 and cfg.psf_sigma == 1.0


def test_3d_training_adds_3d_layers_with_the_scale(viewer, widget, sample3d, sync_workers, notifications):
    layer = viewer.add_image(sample3d.noisy, name="vol", scale=(2.0, 0.5, 0.5), translate=(1, 2, 3))
    form = widget.form
    form.image.value = layer
    form.axes.value = "ZYX"
    form.three_d.value = True
    set_tiny(widget, patch_size=32, batch_size=2)
    form.z_patch.value, form.sigma.value, form.sigma_z.value = 8, 1.0, 2.0
    assert widget.start()
    assert not notifications["error"], notifications["error"]
    assert widget.model.config.ndim == 3 and widget.model.psf.ndim == 3
    for role in ("denoised", "deconvolved"):
        out = viewer.layers[f"vol {role}"]
        assert out.data.shape == sample3d.noisy.shape
        assert tuple(out.scale) == (2.0, 0.5, 0.5) and tuple(out.translate) == (1, 2, 3)
        assert out.metadata[PROVENANCE_KEY]["config"]["ndim"] == 3
    viewer.dims.ndisplay = 3  # the volumes render in 3D
    assert viewer.dims.ndisplay == 3


def test_a_zyx_psf_file_serves_a_3d_model(viewer, widget, sample3d, tmp_path):
    import tifffile

    from napari_deconoising.core import PSFError, gaussian_psf

    tifffile.imwrite(tmp_path / "bead.tif", gaussian_psf((2.0, 1.0, 1.0), ndim=3))
    form = widget.form
    form.image.value = viewer.add_image(sample3d.noisy, name="zyx")
    form.axes.value, form.three_d.value = "ZYX", True
    form.psf_kind.value, form.psf_file.value = "Measured PSF: TIFF file", tmp_path / "bead.tif"
    assert form.measured_psf().ndim == 3  # read for the model's dimensionality, not always as 2D
    form.three_d.value = False
    with pytest.raises(PSFError, match="bead.tif: PSF has 3 dimensions .* 2D model"):
        form.measured_psf()


def test_the_apply_widget_runs_a_3d_model_on_stacks(viewer, sample3d, trained3d, sync_workers, notifications):
    """A 3D model applied in napari: a ZYX volume and a TZYX series volume by volume, with the
    layer's scale, equal to the core's prediction; a 2D layer is refused with a notification."""
    import numpy as np

    from napari_deconoising._widgets import ApplyWidget
    from napari_deconoising.core import predict

    a = ApplyWidget(viewer)
    viewer.window.add_dock_widget(a, name="Apply")
    a.select_model(trained3d, "m3d")
    vol = viewer.add_image(sample3d.noisy, name="vol", scale=(2.0, 0.5, 0.5))
    a.form.image.value = vol
    a.form.axes.value = "ZYX"
    assert a.run()
    assert not notifications["error"], notifications["error"]
    ref = predict(trained3d, sample3d.noisy, "ZYX", device="cpu", precision="fp32")
    den, dec = viewer.layers["vol denoised"], viewer.layers["vol deconvolved"]
    assert tuple(den.scale) == (2.0, 0.5, 0.5)
    np.testing.assert_allclose(den.data, ref.denoised, rtol=1e-4, atol=1e-4 * float(ref.denoised.std()))
    np.testing.assert_allclose(dec.data, ref.deconvolved, rtol=1e-4, atol=1e-4 * float(ref.deconvolved.std()))

    series = viewer.add_image(np.stack([sample3d.noisy, sample3d.noisy[:, ::-1]]), name="series")
    a.form.image.value = series
    a.form.axes.value = "TZYX"
    assert a.run()
    assert not notifications["error"], notifications["error"]
    out = viewer.layers["series denoised"].data
    assert out.shape == series.data.shape
    np.testing.assert_allclose(out[0], ref.denoised, rtol=1e-4, atol=1e-4 * float(ref.denoised.std()))

    flat = viewer.add_image(sample3d.noisy[0], name="plane")
    a.form.image.value = flat
    a.form.axes.value = "YX"
    n_layers = len(viewer.layers)
    assert not a.run()  # refused before any work starts, saying that the model is the 3D one
    assert "is a 3D model and layer 'plane' has no Z axis (axes YX)" in notifications["error"][-1]
    assert a.status.value == notifications["error"][-1]
    assert "plane denoised" not in viewer.layers and len(viewer.layers) == n_layers


def test_axes_come_from_the_layers_labels_or_its_z_spacing(viewer, widget, sample3d):
    form = widget.form
    form.image.value = viewer.add_image(sample3d.noisy, name="spaced", scale=(2.0, 0.5, 0.5))
    assert form.axes.value == "ZYX" and form.three_d.enabled  # a Z spacing: a Z-stack
    form.image.value = viewer.add_image(sample3d.noisy, name="even")
    assert form.axes.value == "SYX"  # nothing says Z: a stack of images
    form.image.value = viewer.add_image(sample3d.noisy, name="labelled", axis_labels=("t", "y", "x"))
    assert form.axes.value == "TYX"  # a reader's own axis letters win
