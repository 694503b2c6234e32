"""The Apply widget with a model per channel, on layers with a channel axis."""

from __future__ import annotations

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
    ("YX", lambda cyx: cyx[0], "one network per channel"),
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


def test_a_channels_file_opens_for_apply_but_not_for_training(tmp_path, make_napari_viewer, fresh_registry,
                                                              cyx_models, notifications):
    from napari_deconoising._reader import get_reader
    from napari_deconoising._widgets import TrainWidget

    path = tmp_path / "two.pt"
    cyx_models[1].save(path)
    viewer = make_napari_viewer()
    train = TrainWidget(viewer)
    assert train.load_model(path) is None and train.model is None
    assert "two" in fresh_registry
    assert any("one model per channel" in m for m in notifications["warning"]), notifications["warning"]
    layer = viewer.add_image(cyx_models[0][0], name="yx")
    train.form.reset_choices()
    train.form.image.value = layer
    train.form.resume.value = "two"
    assert not train.start()
    assert any("continuing it is not supported" in m for m in notifications["error"]), notifications["error"]
    reader = get_reader(str(path))
    assert reader is not None and reader(str(path)) == [(None,)]
    assert "two [2]" in fresh_registry
