"""Out-of-core prediction equals in-memory prediction, tile by tile from any array-like."""

import numpy as np
import pytest
import torch

from napari_deconoising.core import Cancelled
from napari_deconoising.core.predict import tile_halo
from napari_deconoising.core.stream import plan_stream, predict_lazy


def _lazy(model, image, axes, tile, batch=2, **kw):
    plan = plan_stream(model, image.shape, image.dtype, axes, tile, torch.device("cpu"))
    den = np.full(image.shape, np.nan, np.float32)
    dec = np.full(image.shape, np.nan, np.float32)
    predict_lazy(model, image, den, dec, plan=plan, device="cpu", batch_size=batch, **kw)
    return den, dec


@pytest.mark.parametrize("shape,axes", [((150, 77), "YX"), ((2, 40, 70), "TYX"), ((70, 1, 45), "XCY")])
def test_lazy_equals_in_memory(trained, shape, axes):
    img = np.random.default_rng(0).normal(trained.mean, trained.std, shape).astype(np.float32)
    tile = 2 * tile_halo(trained) + 16
    ref = trained.predict(img, axes, device="cpu", tile_size=tile, batch_size=2)
    den, dec = _lazy(trained, img, axes, tile)
    np.testing.assert_allclose(den, ref.denoised, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dec, ref.deconvolved, rtol=1e-5, atol=1e-5)


def test_lazy_from_dask_and_zarr(trained, tmp_path):
    import dask.array as da
    import zarr

    img = np.random.default_rng(1).normal(trained.mean, trained.std, (3, 50, 60)).astype(np.float32)
    tile = 2 * tile_halo(trained) + 8
    ref, _ = _lazy(trained, img, "TYX", tile)
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=img.shape, chunks=(1, 16, 16), dtype="f4")
    z[...] = img
    for source in (z, da.from_array(img, chunks=(1, 20, 20))):
        den, _ = _lazy(trained, source, "TYX", tile)
        np.testing.assert_array_equal(den, ref)


def test_cancel_keeps_finished_tiles(trained):
    img = np.random.default_rng(2).normal(trained.mean, trained.std, (64, 64)).astype(np.float32)
    plan = plan_stream(trained, img.shape, img.dtype, "YX", 2 * tile_halo(trained) + 8, torch.device("cpu"))
    den = np.full(img.shape, np.nan, np.float32)
    seen = []
    with pytest.raises(Cancelled):
        predict_lazy(trained, img, den, plan=plan, device="cpu", batch_size=1,
                     progress=lambda d, t: seen.append(d), cancel=lambda: len(seen) >= 2)
    core = plan.grid.cores
    assert np.isfinite(den[:core[0], :2 * core[1]]).all()  # the two finished tiles
    assert np.isnan(den).mean() > 0.5
