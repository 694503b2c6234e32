"""The shared predict-and-add-layers flow: errors leave the widget usable."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.gui]

pytest.importorskip("napari")

from napari_deconoising._widgets import ApplyWidget  # noqa: E402
from napari_deconoising._widgets._prediction import PredictRequest  # noqa: E402


def test_prediction_error_is_reported_and_adds_nothing(
    make_napari_viewer, fresh_registry, sample, sync_workers, notifications, trained
):
    viewer = make_napari_viewer()
    a = ApplyWidget(viewer)
    viewer.window.add_dock_widget(a)
    a.select_model(trained, "m")
    layer = viewer.add_image(sample.noisy, name="img")
    a.form.image.value = layer
    a.form.tile_size.value = 32  # smaller than the model's context: refused in the worker
    assert a.run()
    assert notifications["error"][-1].startswith("Prediction failed: tile_size 32 is too small")
    assert a.status.value == notifications["error"][-1]
    assert "img denoised" not in viewer.layers and a.last_results is None
    assert a.run_button.enabled and not a.cancel_button.enabled
    assert a.progress.value() == 0
    assert a.prediction.request.data is None  # the copy of the image is freed


def test_result_layers_and_status(make_napari_viewer, fresh_registry, sample, sync_workers, trained):
    viewer = make_napari_viewer()
    a = ApplyWidget(viewer)
    viewer.window.add_dock_widget(a)
    layer = viewer.add_image(sample.noisy, name="img")
    request = PredictRequest(
        layer=layer,
        data=sample.noisy.copy(),
        model=trained,
        model_name="m",
        axes="YX",
        run_id="r1",
        step="applied",
        status_prefix="Before. ",
    )
    a.prediction.start(request)
    assert a.status.value.startswith("Before. Done in ")
    assert a.last_results == (layer, viewer.layers["img denoised"], viewer.layers["img deconvolved"])
    assert viewer.layers["img denoised"].metadata["napari-deconoising"]["run_id"] == "r1"
    assert a.progress.value() == 1 and request.data is None
