"""Tile sizes and batch sizes from the CPU memory budget, and tile grids (core/tile_plan.py)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from napari_deconoising.core import DecoNoisingModel, DecoNoisingNet, TrainConfig, gaussian_psf
from napari_deconoising.core.tile_plan import (
    _CPU_CAP_BYTES,
    _available_bytes,
    auto_tile_shape,
    auto_tile_size,
    default_batch_size,
    tile_grid,
    tile_halo,
    tile_margins,
)
from napari_deconoising.core.tiles import TileGrid

CPU = torch.device("cpu")


def _model(depth: int, channels: int) -> DecoNoisingModel:
    cfg = TrainConfig(depth=depth, channels=channels, psf_sigma=1.0)
    net = DecoNoisingNet(gaussian_psf(1.0), depth=depth, channels=channels)
    return DecoNoisingModel(cfg, net.state_dict(), 0.0, 1.0, gaussian_psf(1.0))


@pytest.mark.parametrize(("depth", "channels"), [(2, 32), (3, 64)])
def test_auto_tile_fills_but_keeps_the_budget(depth, channels):
    m = _model(depth, channels)
    budget = min(_CPU_CAP_BYTES, _available_bytes(CPU))  # a machine short of RAM gets less
    for reduced, per_pixel in ((False, 40), (True, 20)):
        side = auto_tile_size(m, CPU, reduced=reduced)
        assert side % 2**depth == 0 and side > 2 * tile_halo(m)
        assert side**2 * per_pixel * channels <= budget  # within the budget...
        assert (side + 2**depth) ** 2 * per_pixel * channels > budget  # ...and as large as it allows
    assert auto_tile_size(m, CPU, reduced=True) > auto_tile_size(m, CPU)


def test_default_batch_size_from_the_budget():
    m = _model(2, 32)
    side = auto_tile_size(m, CPU)
    assert default_batch_size(m, CPU, (side, side)) == 1  # a tile that fills the budget
    assert default_batch_size(m, CPU, (64, 64)) == 2  # small tiles: the CPU's batch limit
    assert default_batch_size(m, CPU, (8192, 8192)) == 1  # never zero
    half = int(side / 2**0.5) // 4 * 4
    assert default_batch_size(m, CPU, (half, half), reduced=True) == 2  # bf16 takes half the bytes


def test_a_large_gpu_never_gets_a_tensor_over_int_max(monkeypatch):
    """On an H200 the memory budget alone allowed 13 tiles of 1784^2 at 64 channels, and
    bilinear up-sampling failed with "less than INT_MAX elements" (issue 8)."""
    from napari_deconoising.core import tile_plan
    from napari_deconoising.core.tile_plan import auto_tile_shape

    monkeypatch.setattr(tile_plan, "_available_bytes", lambda device: 70 * 2**30)  # half an H200's memory
    gpu = torch.device("cuda")  # planning only: no GPU is touched
    for channels in (64, 256, 512):
        m = _model(3, channels)
        side = auto_tile_size(m, gpu)
        batch = default_batch_size(m, gpu, (side, side))
        assert batch * 2 * channels * side**2 < 2**31  # the top level's concatenation
    m = _model(3, 64)
    assert default_batch_size(m, gpu, (1784, 1784)) * 2 * 64 * 1784**2 < 2**31
    assert default_batch_size(m, gpu, (256, 256)) == 16  # small tiles still batch up to the GPU's limit
    psf3 = gaussian_psf((2.0, 1.0, 1.0), ndim=3)
    cfg3 = TrainConfig(depth=2, channels=256, ndim=3, psf_sigma=(2.0, 1.0, 1.0), patch_size=(16, 64, 64))
    m3 = DecoNoisingModel(cfg3, DecoNoisingNet(psf3, depth=2, channels=256, ndim=3).state_dict(), 0.0, 1.0, psf3)
    tile = auto_tile_shape(m3, gpu, (512, 2048, 2048))
    assert 2 * 256 * tile[0] * tile[1] * tile[2] < 2**31


@given(st.integers(1, 5000), st.integers(1, 64), st.sampled_from([1, 4, 8, 16]), st.integers(0, 3),
       st.integers(0, 3))
def test_tile_grid_fits_the_tile_size_with_the_fewest_tiles(n, extra, m, hk, rk):
    """Each tile fits the requested size; one tile if the whole axis fits, else two, else balanced cores."""
    from napari_deconoising.core.tile_plan import _axis_core

    h, r = hk * m, min(rk, hk) * m
    t = 2 * h + extra * m
    core = _axis_core(n, t, h, r, m)
    aligned = -(-n // m) * m
    grid = TileGrid((n,), (core,), (h,), (r,), (m,))
    assert core % m == 0 and grid.largest()[0] <= t
    count = len(grid.origins())
    assert count == 1 if aligned + 2 * r <= t else count >= 2
    if count > 2:  # balanced: no more tiles than cores of the full size would need
        assert count == -(-aligned // ((t - 2 * h) // m * m))


def test_tile_grid_examples():
    m = _model(2, 8)  # halo 36, pooling 4
    assert tile_grid(m, (2048, 2048), 792).cores == (684, 684)  # three balanced 684 px cores per axis
    assert tile_grid(m, (150, 77), 4096).cores == (152, 80)  # one tile: the pooling-aligned image
    assert tile_grid(m, (150, 77), 120).cores == (76, 80)  # Y in two tiles (76 + 36 <= 120), X whole
    with pytest.raises(ValueError, match="at least 76 px, or cover the whole axis"):
        tile_grid(m, (150, 77), 60)
    with pytest.raises(ValueError, match="needs 1 or 2 values"):
        tile_grid(m, (150, 77), (100, 100, 100))


def test_auto_tile_shape_gives_a_whole_axis_only_its_length():
    m = _model(2, 32)
    side = auto_tile_size(m, CPU)
    assert auto_tile_shape(m, CPU, (64, 64)) == (side, side)
    strip = (100, 100_000)  # Y whole, X takes the rest of the budget
    grid = tile_grid(m, strip, auto_tile_shape(m, CPU, strip))
    ly, lx = grid.largest()
    budget = min(_CPU_CAP_BYTES, _available_bytes(CPU))
    assert grid.cores[0] == 100 and ly == 100 + 2 * tile_margins(m)[0] and lx > side
    assert ly * lx * 40 * 32 <= budget


def test_auto_tile_shape_splits_a_stack_just_over_one_tile_once():
    """32 x 256 x 256 with the 3D quality network just exceeds one tile: 2 x 1 tiles, not 2 x 2."""
    cfg = TrainConfig(ndim=3, depth=2, channels=16, psf_sigma=(2.0, 1.0, 1.0), patch_size=(16, 64, 64))
    psf = gaussian_psf((2.0, 1.0, 1.0), ndim=3)
    m = DecoNoisingModel(cfg, DecoNoisingNet(psf, depth=2, channels=16, ndim=3).state_dict(), 0.0, 1.0, psf)
    shape = (32, 256, 256)
    tiles = auto_tile_shape(m, CPU, shape)
    grid = tile_grid(m, shape, tiles)
    budget = min(_CPU_CAP_BYTES, _available_bytes(CPU))
    if budget == _CPU_CAP_BYTES:  # the numbers below are for the full CPU budget
        assert len(grid.origins()) == 2 and grid.cores[0] == 32  # the whole depth, no Z halo
    assert math.prod(grid.largest()) * 40 * 16 <= budget
