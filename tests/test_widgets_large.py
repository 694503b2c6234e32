"""Apply on a dask-backed layer: tiles go into OME-Zarr, result layers are lazy, the layer is never loaded."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gui]

napari = pytest.importorskip("napari")

from napari_deconoising._widgets import ApplyWidget  # noqa: E402
from napari_deconoising.core.predict import tile_halo  # noqa: E402


def no_whole_compute(data: np.ndarray, chunks):
    """A dask array that raises when it is computed, persisted or converted to NumPy as a whole.

    Its slices are ordinary dask arrays: reading tiles (or the plane napari shows) works.
    """
    import dask.array as da

    class NoWholeCompute(da.Array):
        def __array__(self, *args, **kwargs):
            raise AssertionError("the whole layer was converted to one NumPy array")

        def compute(self, *args, **kwargs):
            raise AssertionError("the whole layer was computed")

        def __dask_postcompute__(self):  # dask.compute(layer.data)
            raise AssertionError("the whole layer was computed")

        def __dask_postpersist__(self):  # layer.data.persist()
            raise AssertionError("the whole layer was persisted")

    x = da.from_array(data, chunks=chunks)
    return NoWholeCompute(x.dask, x.name, x.chunks, meta=x._meta)


@pytest.fixture
def largest_dask_result():
    """The size in bytes of the largest array any dask task returns while the test runs.

    This also catches routes around the guard above (a rechunk to one block, a
    concatenation of all tiles): no task may ever hold the whole layer.
    """
    from dask.callbacks import Callback

    seen = [0]

    def posttask(key, result, dsk, state, worker_id):
        seen[0] = max(seen[0], int(getattr(result, "nbytes", 0)))

    with Callback(posttask=posttask):
        yield seen


@pytest.fixture
def viewer(make_napari_viewer, fresh_registry):
    return make_napari_viewer()


def test_apply_on_a_dask_layer_never_materialises_it(viewer, trained, tmp_path, sync_workers, notifications,
                                                     largest_dask_result):
    import zarr

    img = np.random.default_rng(0).normal(trained.mean, trained.std, (3, 70, 60)).astype(np.float32)
    lazy = no_whole_compute(img, (1, 35, 30))
    with pytest.raises(AssertionError, match="whole layer"):
        np.asarray(lazy)  # the guard works
    layer = viewer.add_image(lazy, name="lazy", contrast_limits=(float(img.min()), float(img.max())),
                             scale=(60.0, 0.2, 0.2), units=("s", "um", "um"))
    a = ApplyWidget(viewer)
    viewer.window.add_dock_widget(a)
    a.select_model(trained, "m")
    a.form.image.value = layer
    a.form.axes.value = "TYX"
    tile = 2 * tile_halo(trained) + 16
    a.form.tile_size.value = tile
    a.form.store.value = str(tmp_path / "results")
    assert a.run()
    assert not notifications["error"], notifications["error"]
    den, dec = viewer.layers["lazy denoised"], viewer.layers["lazy deconvolved"]
    assert isinstance(den.data, zarr.Array) and isinstance(dec.data, zarr.Array)  # lazy, on disk
    # Against the whole-image path in the precision the worker chose (auto may choose either).
    ref = trained.predict(img, "TYX", device="cpu", tile_size=tile, precision=a.prediction.request.plans[0].precision)
    np.testing.assert_allclose(den.data[...], ref.denoised, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dec.data[...], ref.deconvolved, rtol=1e-4, atol=1e-4)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["lazy_deconvolved.zarr",
                                                                        "lazy_denoised.zarr"]
    from napari_deconoising.core.lazy_io import open_lazy

    saved = open_lazy(tmp_path / "results" / "lazy_denoised.zarr")  # the files keep the layer's pixel size
    assert saved.scale == pytest.approx((60.0, 0.2, 0.2)) and saved.units == ("second", "micrometer", "micrometer")
    assert "saved in" in a.status.value
    # The layers were added before the worker chose the precision; their provenance says it now.
    plan = a.prediction.request.plans[0]
    assert plan.device == "cpu" and plan.precision in ("fp32", "bf16") and plan.reason
    assert f" on cpu in {plan.precision}: " in a.status.value
    for layer in (den, dec):
        assert layer.metadata["napari-deconoising"]["prediction"] == plan.metadata()
    assert 0 < largest_dask_result[0] <= img[0].nbytes  # tiles were read through dask, one plane at most


def test_cancel_keeps_the_finished_tiles(qtbot, viewer, trained, tmp_path, notifications):
    import dask.array as da

    img = np.random.default_rng(1).normal(trained.mean, trained.std, (6, 64, 64)).astype(np.float32)
    layer = viewer.add_image(da.from_array(img, chunks=(1, 64, 64)), name="lazy")
    a = ApplyWidget(viewer)
    viewer.window.add_dock_widget(a)
    a.select_model(trained, "m")
    a.form.image.value = layer
    a.form.axes.value = "TYX"
    a.form.tile_size.value = 2 * tile_halo(trained) + 8
    a.form.store.value = str(tmp_path)
    assert a.run()
    a.cancel()
    qtbot.waitUntil(lambda: not a.busy, timeout=30_000)
    assert "finished tiles are kept" in a.status.value and a.run_button.enabled
    assert "lazy denoised" in viewer.layers  # what was done stays visible
    assert not notifications["error"]


def test_train_on_a_dask_layer_reads_patches_lazily(viewer, sample, tmp_path, monkeypatch, sync_workers,
                                                    notifications, largest_dask_result):
    import tempfile

    import zarr
    from conftest import set_tiny

    from napari_deconoising._widgets import TrainWidget

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the results' temporary folder
    stack = np.stack([sample.noisy, sample.noisy[::-1], sample.noisy[:, ::-1]]).astype(np.float32)
    layer = viewer.add_image(no_whole_compute(stack, (1, 48, 48)), name="lazy")
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.form.image.value = layer
    w.form.axes.value = "TYX"
    set_tiny(w)
    assert w.start()
    assert not notifications["error"], notifications["error"]
    assert w.model is not None and len(w.model.history) == 2
    den = viewer.layers["lazy denoised"]
    assert isinstance(den.data, zarr.Array) and den.data.shape == stack.shape
    assert np.isfinite(den.data[...]).all()
    assert 0 < largest_dask_result[0] < stack.nbytes


def test_a_cached_precision_sizes_a_large_layers_tiles(viewer, trained, tmp_path, monkeypatch):
    """The tiles of a large layer are fixed in the GUI thread, before the worker decides the precision:
    a decision cached earlier (here bf16) sizes them for its bytes; without one they are fp32-sized."""
    import dask.array as da
    import torch

    from napari_deconoising._widgets._large import large_outputs
    from napari_deconoising.core import device as device_mod
    from napari_deconoising.core.predict import known_prediction_precision, prediction_plan
    from napari_deconoising.core.stream import plan_stream

    monkeypatch.setattr(device_mod, "candidates", lambda *a, **k: (["fp32", "bf16"], ""))
    monkeypatch.setattr(device_mod, "measure", lambda probe, dev, precisions: (
        {"fp32": 1.0, "bf16": 0.25}, {"fp32": 0.0, "bf16": 0.001}))
    monkeypatch.setattr(device_mod, "_cpu_busy", lambda: None)  # a decision on a busy CPU is not kept
    monkeypatch.setenv("NAPARI_DECONOISING_CACHE", str(tmp_path / "cache"))
    from napari_deconoising.core import tile_plan

    budget = tile_plan._BYTES_PER_PIXEL_CHANNEL * trained.config.channels * 300**2  # fp32 tiles of 300 px
    monkeypatch.setattr(tile_plan, "_available_bytes", lambda device: budget)
    data = da.zeros((1200, 1200), dtype=np.float32, chunks=256)
    layer = viewer.add_image(data, name="big")
    cpu = torch.device("cpu")

    def grid(reduced):
        return plan_stream(trained, data.shape, data.dtype, "YX", None, cpu, reduced=reduced).grid

    assert grid(True) != grid(False)
    assert known_prediction_precision(trained, "cpu") is None  # nothing measured yet
    _, plan = large_outputs(trained, layer, "YX", None, "cpu", str(tmp_path / "a"))
    assert plan.grid == grid(False)
    assert prediction_plan(trained, "cpu", "auto").precision == "bf16"  # measured and cached
    assert known_prediction_precision(trained, "cpu") == "bf16"
    _, plan = large_outputs(trained, layer, "YX", None, "cpu", str(tmp_path / "b"))
    assert plan.grid == grid(True)
