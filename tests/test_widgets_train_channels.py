"""The Train form's rows for a model per channel (module _train_channels): extra channel layers,
a PSF per channel from optics, or a measured PSF per channel or for all."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gui]

napari = pytest.importorskip("napari")

from napari_deconoising._widgets._train_channels import channel_input, channel_values  # noqa: E402
from napari_deconoising.core import ConfigError, DataError  # noqa: E402


@pytest.fixture
def form(train_widget):
    """A viewer and its Train widget's form."""
    viewer, widget = train_widget
    return viewer, widget.form


@pytest.fixture
def cells(rng):
    """Two channels of noise: the form reads shapes, nothing is trained here."""
    return rng.random((2, 32, 32), dtype=np.float32)


def test_extra_layers_are_the_other_images_in_layer_order(form, cells):
    viewer, form = form
    a, b, c = (viewer.add_image(cells[0], name=n) for n in "abc")
    form.image.value = a
    assert [layer.name for layer in form.extra_layers.choices] == ["b", "c"]  # not the Image itself
    form.extra_layers.value = [c, b]
    assert form.extra_layer_list() == [b, c]  # the viewer's layer order, not the order of clicking
    form.image.value = b  # the new Image leaves the list (and the selection)
    assert {layer.name for layer in form.extra_layers.choices} == {"a", "c"} and form.extra_layer_list() == [c]
    form.extra_layers.value = [c, a]
    assert form.extra_layer_list() == [a, c]
    viewer.layers.move(0, 3)  # a to the top of the layer list
    assert [layer.name for layer in viewer.layers] == ["b", "c", "a"] and form.extra_layer_list() == [c, a]
    with pytest.raises(DataError, match="choose other layers as extra channels"):
        channel_input(a, "YX", [a])  # the form never offers it; the check stands for other callers


def test_optics_give_each_channel_its_emission_psf(form, cells, notifications):
    viewer, form = form
    form.image.value, form.axes.value = viewer.add_image(cells, name="cells"), "CYX"
    form.psf_kind.value = "From optics (NA, wavelength…)"
    assert form.emission_nm.native.isHidden() and not form.channel_emissions.native.isHidden()
    form.channel_emissions.value = "520, 680"
    assert form.psf_sigma_info.value.startswith("ch 1: ") and "ch 2: " in form.psf_sigma_info.value
    configs = form.channel_configs(form.config(), 2)
    assert [c.optics.wavelength_nm for c in configs] == [520.0, 680.0]
    narrow, wide = form.channel_psfs(configs)
    assert narrow.max() > wide.max()  # a longer wavelength spreads the light wider
    form.preview_psf.changed.emit(True)
    assert {"PSF widefield NA 1.4 520 nm", "PSF widefield NA 1.4 680 nm"} <= {x.name for x in viewer.layers}
    form.channel_emissions.value = "520, 600, 680"
    assert "3 emission wavelengths given for 2 channels" in form.psf_sigma_info.value
    assert not notifications["error"], notifications["error"]


def test_one_measured_psf_serves_every_channel(form, cells):
    from napari_deconoising.core import gaussian_psf

    viewer, form = form
    psf = viewer.add_image(gaussian_psf(1.5), name="bead")
    form.psf_kind.value = "Measured PSF: image layer"
    form.psf_layer.value = psf  # chosen for one channel first: the per-channel row starts with it
    form.image.value, form.axes.value = viewer.add_image(cells, name="cells"), "CYX"
    assert form.channel_sigmas.native.isHidden() and form.sigma.native.isHidden()
    assert form.psf_layer.native.isHidden() and not form.channel_psf_layers.native.isHidden()
    assert form.channel_psf_layers.value == [psf]
    configs = form.channel_configs(form.config(), 2)
    assert [c.psf for c in configs] == ["measured", "measured"]
    first, second = form.channel_psfs(configs)
    np.testing.assert_allclose(first, psf.data, atol=1e-7)
    assert second is first


def test_each_channel_picks_its_measured_psf_layer(form, cells):
    from napari_deconoising.core import PSFError, gaussian_psf

    viewer, form = form
    form.image.value, form.axes.value = viewer.add_image(cells, name="cells"), "CYX"
    wide, narrow = viewer.add_image(gaussian_psf(2.5), name="wide"), viewer.add_image(gaussian_psf(1.0), name="n")
    form.psf_kind.value = "Measured PSF: image layer"
    form.channel_psf_layers.value = [narrow, wide]  # the channel order is the layer list's: wide, then narrow
    configs = form.channel_configs(form.config(), 2)
    first, second = form.channel_psfs(configs)
    assert first.shape == wide.data.shape and second.shape == narrow.data.shape
    bead3d = viewer.add_image(gaussian_psf(1.0, ndim=3), name="bead 3D")
    form.channel_psf_layers.value = [wide, bead3d]
    with pytest.raises(PSFError, match="PSF of channel 2 of 2: PSF has 3 dimensions .* 2D model needs a 2D PSF"):
        form.channel_psfs(configs)
    form.channel_psf_layers.value = [wide, narrow, bead3d]
    with pytest.raises(DataError, match="3 measured PSFs given for 2 channels"):
        form.channel_psfs(configs)
    form.channel_psf_layers.value = []
    with pytest.raises(PSFError, match="choose the image layers that hold the measured PSFs"):
        form.channel_psfs(configs)


def test_each_channel_picks_its_measured_psf_file(form, cells, tmp_path):
    import tifffile

    from napari_deconoising.core import PSFError, gaussian_psf

    viewer, form = form
    for name, kernel in (("a", gaussian_psf(1.0)), ("b", gaussian_psf(2.0)), ("vol", gaussian_psf(1.0, ndim=3))):
        tifffile.imwrite(tmp_path / f"{name}.tif", kernel)
    form.psf_kind.value = "Measured PSF: TIFF file"
    form.psf_file.value = tmp_path / "a.tif"
    form.image.value, form.axes.value = viewer.add_image(cells, name="cells"), "CYX"
    assert form.psf_file.native.isHidden() and not form.channel_psf_files.native.isHidden()
    assert form.channel_psf_files.value == (tmp_path / "a.tif",)  # started with the single file
    form.channel_psf_files.value = (tmp_path / "b.tif", tmp_path / "a.tif")  # the order typed is the channel order
    configs = form.channel_configs(form.config(), 2)
    first, second = form.channel_psfs(configs)
    assert first.shape == gaussian_psf(2.0).shape and second.shape == gaussian_psf(1.0).shape
    form.channel_psf_files.value = (tmp_path / "a.tif", tmp_path / "vol.tif")
    with pytest.raises(PSFError, match="vol.tif: PSF has 3 dimensions"):
        form.channel_psfs(configs)
    form.channel_psf_files.value = (tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "nope.tif")
    with pytest.raises(DataError, match="3 measured PSFs given for 2 channels"):  # before reading the missing file
        form.channel_psfs(configs)


@pytest.mark.parametrize("text, values", [("1.5", [1.5, 1.5, 1.5]), ("1, 2 ,3", [1.0, 2.0, 3.0]),
                                          ("1;2 3", [1.0, 2.0, 3.0])])
def test_channel_values_one_for_all_or_one_each(text, values):
    assert channel_values(text, 3, "PSF sigma") == values


def test_channel_values_refuses_other_counts_and_words():
    with pytest.raises(DataError, match="2 PSF sigmas given for 3 channels"):
        channel_values("1, 2", 3, "PSF sigma")
    with pytest.raises(ConfigError, match="not a list of numbers"):
        channel_values("1, wide", 3, "PSF sigma")

