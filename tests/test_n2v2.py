"""N2V2 building blocks: anti-aliased pooling and median blind-spot replacement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_deconoising.core.n2v2 import MaxBlurPool, median_blind_spots


@pytest.mark.parametrize("ndim, factor, shape, out", [
    (2, 2, (2, 3, 16, 12), (2, 3, 8, 6)),
    (3, 2, (1, 2, 8, 8, 8), (1, 2, 4, 4, 4)),
    (3, (1, 2, 2), (1, 2, 5, 8, 8), (1, 2, 5, 4, 4)),
])
def test_blur_pool_halves_the_pooled_axes(ndim, factor, shape, out):
    assert MaxBlurPool(ndim, factor)(torch.rand(shape)).shape == out


def test_blur_pool_keeps_constants_and_ignores_a_one_pixel_shift():
    pool = MaxBlurPool(2)
    torch.testing.assert_close(pool(torch.full((1, 1, 8, 8), 3.0)), torch.full((1, 1, 4, 4), 3.0))
    yy, xx = np.indices((32, 32))
    board = torch.from_numpy(((yy + xx) % 2).astype(np.float32))[None, None]
    shifted = torch.roll(board, 1, dims=3)
    # A one-pixel shift of the input must not change the pooled result (shift invariance
    # is the point; away from the last row/column, where the border padding differs).
    a, b = pool(board), pool(shifted)
    torch.testing.assert_close(a[..., :-1, :-1], b[..., :-1, :-1])
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_blur_pool_rejects_bad_factors():
    with pytest.raises(ValueError, match="factor"):
        MaxBlurPool(2, (2, 3))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), radius=st.integers(1, 3), ndim=st.sampled_from([2, 3]))
def test_median_replacement_is_the_median_of_non_spot_neighbours(seed, radius, ndim):
    gen = torch.Generator().manual_seed(seed)
    shape = (2, 1) + ((16, 16) if ndim == 2 else (8, 10, 10))
    x = torch.rand(shape, generator=gen)
    masked, mask = median_blind_spots(x, 0.05, radius, gen)
    assert mask.sum() > 0
    torch.testing.assert_close(masked[~mask], x[~mask])  # only spots change
    spots = mask[:, 0].nonzero()
    for row in spots[:5]:
        bi, p = int(row[0]), row[1:].tolist()
        vals = []
        for off in np.ndindex(*([2 * radius + 1] * ndim)):
            o = [v - radius for v in off]
            if not any(o):
                continue
            q = [pi + oi for pi, oi in zip(p, o)]
            q = [pi - oi if not 0 <= qi < n else qi for pi, oi, qi, n in zip(p, o, q, shape[2:])]
            if not mask[(bi, 0, *q)]:
                vals.append(float(x[(bi, 0, *q)]))
        assert float(masked[(bi, 0, *p)]) == pytest.approx(float(torch.tensor(vals).median()))
        assert float(masked[(bi, 0, *p)]) != float(x[(bi, 0, *p)])


def test_n2v2_unet_has_no_top_skip_and_blur_pools():
    from napari_deconoising.core import UNet

    plain, n2v2 = UNet(depth=2, channels=8), UNet(depth=2, channels=8, n2v2=True)
    assert isinstance(n2v2.pool, MaxBlurPool) and not isinstance(plain.pool, MaxBlurPool)
    assert n2v2.up_conv[-1][0].in_channels == 8 and plain.up_conv[-1][0].in_channels == 16
    assert n2v2.up_conv[0][0].in_channels == plain.up_conv[0][0].in_channels  # deeper skips kept
    x = torch.rand(1, 1, 36, 44)
    assert n2v2(x).shape == x.shape


def test_n2v2_model_trains_saves_loads_and_tiles_exactly(sample, tiny_config, tmp_path):
    from napari_deconoising.core import load_model, train

    model = train(sample.noisy, tiny_config.replace(epochs=1, n2v2=True))
    assert model.config.n2v2 and "N2V2" in model.summary()
    model.save(tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.config.n2v2
    img = np.tile(sample.noisy, (2, 2))  # room for several tiles with N2V2's wider halo
    whole = loaded.predict(img, device="cpu", tile_size=4096).denoised
    tiled = loaded.predict(img, device="cpu", tile_size=88).denoised
    np.testing.assert_allclose(tiled, whole, rtol=1e-4, atol=1e-4)


def test_trainer_uses_median_replacement_with_n2v2(sample, tiny_config):
    from napari_deconoising.core import Trainer
    from napari_deconoising.core.masking import apply_blind_spots

    assert Trainer(sample.noisy, tiny_config.replace(n2v2=True))._mask is median_blind_spots
    assert Trainer(sample.noisy, tiny_config)._mask is apply_blind_spots


def test_old_model_files_load_without_n2v2():
    from pathlib import Path

    from napari_deconoising.core import load_model

    old = load_model(Path(__file__).resolve().parent / "data" / "model_v1.pt")
    assert old.config.n2v2 is False


@pytest.mark.parametrize("pool_z", [True, False])
def test_n2v2_in_3d_trains_and_predicts_whole_equals_tiled(sample3d, tiny_config, pool_z):
    from napari_deconoising.core import train

    cfg = tiny_config.replace(ndim=3, patch_size=(8, 32, 32) if not pool_z else (16, 32, 32), pool_z=pool_z,
                              psf_sigma=sample3d.sigma, batch_size=2, epochs=1, steps_per_epoch=2, n2v2=True)
    model = train(sample3d.noisy, cfg, axes="ZYX")
    assert model.config.n2v2 and model.config.pools_z() is pool_z
    net = model.build_network()
    assert isinstance(net.unet.pool, MaxBlurPool) and net.unet.pool.pooled == (pool_z, True, True)
    whole = model.predict(sample3d.noisy, axes="ZYX", device="cpu").denoised
    assert whole.shape == sample3d.noisy.shape and np.isfinite(whole).all()
