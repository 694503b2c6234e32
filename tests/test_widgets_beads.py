"""The "Measure PSF from beads" widget: layers it adds, refusals, 3D, and the Train widget using its PSF."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gui]

pytest.importorskip("napari")

from napari_deconoising._widgets import BeadsWidget, TrainWidget  # noqa: E402
from napari_deconoising._widgets._bead_layers import PSF_ROLE, pixel_size_nm  # noqa: E402
from napari_deconoising._widgets._layers import PROVENANCE_KEY  # noqa: E402
from napari_deconoising._widgets._train_form import PSF_LAYER  # noqa: E402
from napari_deconoising.core.sample_beads import make_beads  # noqa: E402


@pytest.fixture
def viewer(make_napari_viewer, fresh_registry):
    return make_napari_viewer()


@pytest.fixture
def widget(viewer):
    w = BeadsWidget(viewer)
    viewer.window.add_dock_widget(w, name="Beads")
    return w


def _names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


def test_measuring_the_sample_in_a_thread_gives_layers_the_train_widget_uses(qtbot, viewer, widget, notifications):
    viewer.open_sample("napari-deconoising", "beads")
    source = viewer.layers["beads"]
    assert widget.form.image.value is source and widget.form.axes.value == "YX"
    assert not widget.form.three_d.enabled and widget.form.channel.native.isHidden()
    assert widget.form.pixel.value == "65 × 65 nm (scale read as µm)"
    assert widget.measure()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert not notifications["error"], notifications["error"]
    psf, beads = viewer.layers["PSF from beads (beads)"], viewer.layers["Beads used (beads)"]
    meta = psf.metadata[PROVENANCE_KEY]
    assert meta["role"] == PSF_ROLE and meta["source_layer"] == "beads"
    assert np.allclose(meta["sigma_px"], 1.3, atol=0.05), meta["sigma_px"]
    assert meta["n_beads"] == len(beads.data) >= 20 and meta["box"] == list(psf.data.shape)
    assert psf.data.sum() == pytest.approx(1.0, abs=1e-5)
    # the points sit on the true beads (same scale as the source, so also in world coordinates)
    truth = np.array(source.metadata["napari-deconoising sample"]["bead_positions"])
    assert all(np.min(np.linalg.norm(truth - p, axis=1)) < 0.2 for p in beads.data)
    np.testing.assert_array_equal(beads.scale, source.scale)
    assert psf.translate[1] > 256 * 0.065 and psf.translate[0] == 0  # beside the image, not over its corner
    assert "Gaussian sigma" in widget.status.value and "nm" in widget.status.value
    assert any("Gaussian sigma" in m for m in notifications["info"])
    # the Train widget offers the PSF layer as a measured PSF, and trains with it as it is
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train")
    assert train.form.image.value is source  # a result layer is not the image to train on
    train.form.psf_kind.value = PSF_LAYER
    assert psf in train.form.psf_layer.choices
    train.form.psf_layer.value = psf
    np.testing.assert_array_equal(train.form.measured_psf(), psf.data)
    assert train.form.channel_psfs([train.config()])[0].shape == psf.data.shape
    # the PSF was measured at 65 nm: an image at 100 nm gets a warning (not a refusal) at Start
    from napari_deconoising._widgets._train_start import psf_sampling_text

    assert psf_sampling_text(train.form, source, "YX", 2) is None
    coarse = viewer.add_image(source.data, name="at 100 nm", scale=(0.1, 0.1))
    text = psf_sampling_text(train.form, coarse, "YX", 2)
    assert "another pixel size" in text and "Y 65 nm against 100 nm" in text


def test_a_users_layer_of_that_name_is_kept(viewer, widget, sync_workers, notifications):
    image, _ = make_beads((160, 160), 1.5, n=10, seed=1)
    viewer.add_image(image, name="b")
    mine = viewer.add_image(np.ones((5, 5)), name="PSF from beads (b)")
    widget.form.image.value = viewer.layers["b"]
    assert widget.measure()
    assert np.all(mine.data == 1) and mine.name == "PSF from beads (b)"
    ours = widget.last_layers[0]
    assert ours is not mine and ours.name == "PSF from beads (b) [2]"
    # measuring again renews the widget's own layers, in place, and adds none
    widget.form.threshold.value = 8.0
    n = len(viewer.layers)
    assert widget.measure()
    assert len(viewer.layers) == n and widget.last_layers[0] is ours
    assert ours.metadata[PROVENANCE_KEY]["threshold"] == 8.0
    assert not notifications["error"]


def test_noise_alone_is_a_notification_and_no_layer(viewer, widget, sync_workers, notifications):
    noise = np.random.default_rng(0).poisson(100, (128, 128)).astype(np.uint16)
    viewer.add_image(noise, name="noise")
    assert widget.measure()  # refused by the core, in the worker
    assert _names(viewer) == ["noise"]
    [message] = notifications["error"]
    assert "no beads found" in message and "Traceback" not in message
    assert widget.status.value == message and widget.measure_button.enabled


def test_bead_diameter_needs_a_pixel_size(viewer, widget, sync_workers, notifications):
    image, _ = make_beads((128, 128), 1.5, n=6, seed=2)
    viewer.add_image(image, name="no scale")
    assert widget.form.pixel.value.startswith("not known")
    widget.form.bead_nm.value = 100.0
    assert not widget.measure()
    [message] = notifications["error"]
    assert "needs the pixel size" in message and "'no scale'" in message
    assert _names(viewer) == ["no scale"]
    # with a pixel size in nm (units), the bead is taken out of the sigma
    layer = viewer.layers["no scale"]
    layer.scale = (65.0, 65.0)
    if not hasattr(layer, "units"):
        pytest.skip("napari < 0.6: layers have no units")
    layer.units = ("nm", "nm")
    assert pixel_size_nm(layer, "YX", "YX")[0] == (65.0, 65.0)
    assert widget.measure()
    meta = widget.last_layers[0].metadata[PROVENANCE_KEY]
    assert all(s < m for s, m in zip(meta["sigma_px"], meta["sigma_measured_px"]))
    # the PSF layer keeps the source's units, so its pixel size (scale bar, Train's check) is known
    psf = widget.last_layers[0]
    assert pixel_size_nm(psf, "YX", "YX")[0] == (65.0, 65.0)


def test_3d_switch_on_a_stack(viewer, widget, sync_workers, notifications):
    stack, truth = make_beads((32, 96, 96), (2.0, 1.2, 1.2), n=6, seed=2, photons=20000, min_distance=14)
    layer = viewer.add_image(stack, name="stack", scale=(0.3, 0.1, 0.1))
    assert widget.form.axes.value == "ZYX" and widget.form.three_d.enabled and not widget.is_3d
    widget.form.three_d.value = True
    assert widget.measure()
    assert not notifications["error"], notifications["error"]
    psf, beads = widget.last_layers
    assert psf.data.ndim == 3 and beads.data.shape[1] == 3
    assert np.allclose(psf.metadata[PROVENANCE_KEY]["sigma_px"], (2.0, 1.2, 1.2), atol=0.15)
    assert psf.metadata[PROVENANCE_KEY]["pixel_size_nm"] == pytest.approx([300.0, 100.0, 100.0])
    # off: the plane shown, as a 2D PSF whose points lie in that plane
    z = int(round(truth[0][0]))
    viewer.dims.set_point(0, z * layer.scale[0])
    widget.form.three_d.value = False
    assert widget.measure()
    psf2d, beads2d = widget.last_layers
    assert psf.name == "PSF from beads (stack, 3D)"
    assert psf2d.data.ndim == 2 and psf2d.name == "PSF from beads (stack, 2D)"  # beside the 3D one, not over it
    assert np.all(beads2d.data[:, 0] == z)
    assert len(viewer.layers) == 5 and psf.data.ndim == 3


def test_a_channel_is_picked(viewer, widget, sync_workers, notifications):
    beads, _ = make_beads((128, 128), 1.4, n=8, seed=3)
    noise = np.random.default_rng(1).poisson(100, beads.shape).astype(np.uint16)
    viewer.add_image(np.stack([noise, beads]), name="two")
    widget.form.axes.value = "CYX"
    assert not widget.form.channel.native.isHidden() and widget.form.channel.max == 2
    widget.form.channel.value = 2
    assert widget.measure()
    assert not notifications["error"], notifications["error"]
    assert np.all(widget.last_layers[1].data[:, 0] == 1)  # the points on channel 2
    assert widget.last_layers[0].name == "PSF from beads (two, channel 2)"  # channel 1's would not replace it
    widget.form.channel.value = 1
    widget.measure()
    assert "no beads found" in notifications["error"][-1]


def test_a_measured_psf_is_not_a_result_to_compare(qtbot, viewer, widget, notifications):
    from napari_deconoising._widgets._compare import find_result_layers

    viewer.open_sample("napari-deconoising", "beads")
    assert widget.measure()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert "PSF from beads (beads)" in _names(viewer)
    viewer.layers.selection.active = viewer.layers["PSF from beads (beads)"]
    assert find_result_layers(viewer) is None  # "No DecoNoising results yet", not a broken comparison
