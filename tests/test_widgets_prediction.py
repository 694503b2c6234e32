"""The shared predict-and-add-layers flow: errors leave the widget usable."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.gui]

pytest.importorskip("napari")

from napari_deconoising._widgets import ApplyWidget  # noqa: E402
from napari_deconoising._widgets._prediction import PlanChosen, PredictRequest, with_plans  # noqa: E402
from napari_deconoising.core.device import execution_plan  # noqa: E402


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
    assert notifications["error"][-1].startswith("Prediction failed: a tile size of 32 px is too small")
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
    # Which device and precision predicted, and why: in the result message, its tooltip and the layers.
    assert request.plans == [PlanChosen("cpu", "fp32", request.plans[0].reason, request.plans[0].text)]
    assert request.plans[0].reason.startswith("small image")  # 96x96 px: fp32 without measuring
    assert " on cpu in fp32: added " in a.status.value
    assert a.status.tooltip == f"Prediction: {request.plans[0].text}"
    for role in ("denoised", "deconvolved"):
        assert viewer.layers[f"img {role}"].metadata["napari-deconoising"]["prediction"] == {
            "device": "cpu", "precision": "fp32", "reason": request.plans[0].reason}


def test_the_real_prediction_says_its_plan_before_any_tile_runs(trained, sample, monkeypatch):
    """predict_iter yields (0, total) before the first batch, so the widget shows the plan at once."""
    import sys

    from napari_deconoising._widgets._prediction import predict_job

    predict_mod = sys.modules["napari_deconoising.core.predict"]
    ran = []
    real = predict_mod._predict_slice

    def counting(*args, **kwargs):
        for n in real(*args, **kwargs):
            ran.append(n)
            yield n

    monkeypatch.setattr(predict_mod, "_predict_slice", counting)
    gen = with_plans(predict_job, trained, sample.noisy, "YX", 2 * 40 + 16, "cpu")
    first, second = next(gen), next(gen)
    assert isinstance(first, PlanChosen) and first.precision in ("fp32", "bf16")
    assert second[0] == 0 and second[1] > 1 and ran == []  # announced before any tile ran
    assert list(gen)[-1] == (second[1], second[1]) and sum(ran) == second[1]


def test_the_plan_is_sent_before_the_tiles_it_ran():
    """The core's on_plan callback only collects in the worker; the message goes out with the yields."""
    bf16 = execution_plan("cpu", "bf16")

    def job(n, on_plan):
        on_plan(bf16)  # as predict_iter: chosen before the first batch of tiles
        for k in range(n):
            yield k + 1, n
        return "result"

    gen = with_plans(job, 2)
    assert next(gen) == PlanChosen("cpu", "bf16", "requested", "cpu bf16 (requested)")
    assert list(gen) == [(1, 2), (2, 2)]
    gen = with_plans(job, 1)
    out = []
    try:
        while True:
            out.append(next(gen))
    except StopIteration as stop:
        assert stop.value == "result"
    assert len(out) == 2


def test_plan_metadata_per_channel():
    fp32, bf16 = (PlanChosen.of(execution_plan("cpu", p)) for p in ("fp32", "bf16"))
    request = PredictRequest(layer=None, data=None, model=None, model_name="m", axes="CYX", run_id="r",
                             step="applied")
    assert request.plan_metadata() is None and request.plan_text == ""
    request.plans += [fp32, fp32]
    assert request.plan_metadata() == fp32.metadata()  # the same for every channel: said once
    request.plans.append(bf16)
    assert request.plan_metadata() == [fp32.metadata(), fp32.metadata(), bf16.metadata()]
    assert request.plan_metadata(2) == bf16.metadata() and request.plan_text == " on cpu in bf16"
