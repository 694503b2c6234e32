"""Out-of-core prediction equals in-memory prediction, tile by tile from any array-like."""

import numpy as np
import pytest
import torch

from napari_deconoising.core import Cancelled
from napari_deconoising.core.predict import tile_halo, tile_halos
from napari_deconoising.core.stream import jobs, plan_stream, predict_lazy


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
    ref = trained.predict(img, axes, device="cpu", tile_size=tile, batch_size=2, precision="fp32")
    den, dec = _lazy(trained, img, axes, tile, precision="fp32")
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
    img = np.random.default_rng(2).normal(trained.mean, trained.std, (160, 160)).astype(np.float32)
    plan = plan_stream(trained, img.shape, img.dtype, "YX", 2 * tile_halo(trained) + 8, torch.device("cpu"))
    den = np.full(img.shape, np.nan, np.float32)
    seen = []
    with pytest.raises(Cancelled):
        predict_lazy(trained, img, den, plan=plan, device="cpu", batch_size=1,
                     progress=lambda d, t: seen.append(d) if d else None, cancel=lambda: len(seen) >= 2)
    g = plan.grid
    finished = [o for _, batch in jobs(plan, img.shape, 1)[:2] for o in batch]
    for o in finished:  # the two finished tiles
        assert np.isfinite(den[tuple(slice(a, a + e) for a, e in zip(o, g.extent(o)))]).all()
    assert np.isnan(den).mean() > 0.5


@pytest.mark.parametrize("pool_z", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_lazy_3d_equals_in_memory(pool_z, tmp_path):
    """A 3D model: halos in Z, Y and X; a TZYX zarr input predicted volume by volume."""
    import zarr

    from napari_deconoising.core import DecoNoisingModel, TrainConfig
    from napari_deconoising.core.network import DecoNoisingNet
    from napari_deconoising.core.predict import _multiples
    from napari_deconoising.core.psf import gaussian_psf
    from napari_deconoising.core.tile_plan import tile_margins

    sigma = (1.5, 1.0, 1.0)
    cfg = TrainConfig(ndim=3, depth=2, channels=4, psf_sigma=sigma, patch_size=(16, 32, 32), pool_z=pool_z)
    psf = gaussian_psf(sigma, ndim=3)
    torch.manual_seed(0)
    net = DecoNoisingNet(psf, depth=2, channels=4, ndim=3, pool_z=pool_z)
    model = DecoNoisingModel(cfg, {k: v.clone() for k, v in net.state_dict().items()}, 0.5, 0.2, psf)
    h, mults, margins = tile_halos(model), _multiples(cfg), tile_margins(model)
    # more than twice the halo per axis, and tiles of half of it plus one halo: 2 x 2 x 2 tiles per volume
    shape = [2 * x + n for x, n in zip(h, (11, 26, 22))]
    img = np.random.default_rng(3).random((2, *shape)).astype(np.float32)
    tile = tuple(x + r + -(-n // (2 * m)) * m for x, r, n, m in zip(h, margins, shape, mults))
    assert len(plan_stream(model, img.shape, img.dtype, "TZYX", tile, torch.device("cpu")).grid.origins()) == 8
    ref = model.predict(img, "TZYX", device="cpu", tile_size=tile, batch_size=2)
    z = zarr.create_array(str(tmp_path / "v.zarr"), shape=img.shape, chunks=(1, 5, 10, 10), dtype="f4")
    z[...] = img
    den, dec = _lazy(model, z, "TZYX", tile)
    np.testing.assert_allclose(den, ref.denoised, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dec, ref.deconvolved, rtol=1e-5, atol=1e-5)


def _budget(monkeypatch, nbytes):
    """Pretend the memory budget of :mod:`.tile_plan` (the one every prediction path sizes by) is ``nbytes``."""
    from napari_deconoising.core import tile_plan

    monkeypatch.setattr(tile_plan, "_available_bytes", lambda device: nbytes)


def test_tiles_sized_for_the_precision(trained, monkeypatch):
    from napari_deconoising.core.tile_plan import _BYTES_PER_PIXEL_CHANNEL, auto_tile_shape, tile_grid

    cpu = torch.device("cpu")
    _budget(monkeypatch, _BYTES_PER_PIXEL_CHANNEL * trained.config.channels * 96**2)  # a 96 px tile in fp32
    shape = (1000, 1000)
    cores = {}
    for reduced in (False, True):
        plan = plan_stream(trained, shape, np.float32, "YX", None, cpu, reduced=reduced)
        want = auto_tile_shape(trained, cpu, shape, reduced=reduced)
        assert plan.grid.cores == tile_grid(trained, shape, want).cores
        cores[reduced] = plan.grid.cores
    assert cores[True][0] > cores[False][0]  # bf16 activations take half the bytes: larger tiles


@pytest.mark.parametrize("precision,batch", [("fp32", 1), ("bf16", 2)])
def test_batch_sized_for_the_precision(trained, monkeypatch, precision, batch):
    """The batch comes from the same budget as in-memory prediction's, at the plan's bytes per pixel."""
    from napari_deconoising.core.stream import predict_lazy_iter
    from napari_deconoising.core.tile_plan import _BYTES_PER_PIXEL_CHANNEL

    tile = 2 * tile_halo(trained) + 16
    # 1.5 fp32 tiles, 3 bf16 tiles
    _budget(monkeypatch, int(1.5 * _BYTES_PER_PIXEL_CHANNEL * trained.config.channels * tile**2))
    img = np.random.default_rng(4).normal(trained.mean, trained.std, (256, 256)).astype(np.float32)
    plan = plan_stream(trained, img.shape, img.dtype, "YX", tile, torch.device("cpu"))
    den = np.zeros(img.shape, np.float32)
    steps = list(predict_lazy_iter(trained, img, den, plan=plan, device="cpu", precision=precision))
    n = len(plan.grid.origins())
    assert n >= 4 and [d for d, _ in steps] == [0, *range(batch, n + 1, batch)] + ([n] if n % batch else [])


def test_a_batch_size_below_one_is_refused(trained):
    img = np.random.default_rng(0).normal(trained.mean, trained.std, (40, 37)).astype(np.float32)
    with pytest.raises(ValueError, match="batch_size=0: must be at least 1"):
        _lazy(trained, img, "YX", 2 * tile_halo(trained) + 16, batch=0, precision="fp32")
