"""Tile sizes and batch sizes from the CPU memory budget, and tile grids (core/tile_plan.py)."""

import math
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from napari_deconoising.core import DecoNoisingModel, DecoNoisingNet, TrainConfig, gaussian_psf
from napari_deconoising.core.tile_plan import (
    _BYTES_PER_PIXEL_CHANNEL,
    _BYTES_PER_PIXEL_CHANNEL_REDUCED,
    _CPU_CAP_BYTES,
    _available_bytes,
    auto_tile_shape,
    auto_tile_size,
    default_batch_size,
    tile_grid,
    tile_halo,
    tile_halos,
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
    for reduced, per_pixel in ((False, _BYTES_PER_PIXEL_CHANNEL), (True, _BYTES_PER_PIXEL_CHANNEL_REDUCED)):
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
    """Each tile fits the requested size; one tile if the whole axis fits, else two, else balanced cores.

    Where no tiling fits, a size that covers the axis (``t >= n``) asks for one tile: it gets the
    whole axis, with the few aligned and mirrored pixels beyond it."""
    from napari_deconoising.core.tile_plan import _axis_core

    h, r = hk * m, min(rk, hk) * m
    t = 2 * h + extra * m
    core = _axis_core(n, t, h, r, m)
    aligned = -(-n // m) * m
    grid = TileGrid((n,), (core,), (h,), (r,), (m,))
    fits = aligned + 2 * r <= t
    beyond = not fits and n <= t and -(-aligned // (2 * m)) * m + h + r > t and t - 2 * h < m
    assert core % m == 0 and grid.largest()[0] <= (aligned + 2 * r if beyond else t)
    count = len(grid.origins())
    assert count == 1 if fits or beyond else count >= 2
    if count > 2:  # balanced: no more tiles than cores of the full size would need
        assert count == -(-aligned // ((t - 2 * h) // m * m))


def test_tile_grid_examples():
    m = _model(2, 8)  # halo 36, pooling 4
    assert tile_grid(m, (2048, 2048), 792).cores == (684, 684)  # three balanced 684 px cores per axis
    assert tile_grid(m, (150, 77), 4096).cores == (152, 80)  # one tile: the pooling-aligned image
    assert tile_grid(m, (150, 77), 120).cores == (76, 80)  # Y in two tiles (76 + 36 <= 120), X whole
    with pytest.raises(ValueError, match=r"too small along Y: .* at least 76 px, or the whole axis \(150 px\)"):
        tile_grid(m, (150, 77), 60)
    assert tile_grid(m, (64, 64), 64).cores == (64, 64)  # a tile the size of the image: one tile
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
    assert ly * lx * _BYTES_PER_PIXEL_CHANNEL * 32 <= budget


def _model3d(depth: int, channels: int, z_patch: int = 16, wiener_eps: float = 0.0) -> DecoNoisingModel:
    """The plain network by default: the budget rules were measured on its halo."""
    psf = gaussian_psf((2.0, 1.0, 1.0), ndim=3)
    cfg = TrainConfig(ndim=3, depth=depth, channels=channels, psf_sigma=(2.0, 1.0, 1.0),
                      patch_size=(z_patch, 64, 64), wiener_eps=wiener_eps)
    net = DecoNoisingNet(psf, depth=depth, channels=channels, ndim=3, pool_z=cfg.pools_z())
    return DecoNoisingModel(cfg, net.state_dict(), 0.0, 1.0, psf)


def test_auto_tile_shape_splits_a_stack_just_over_one_tile_once(monkeypatch):
    """32 x 256 x 256 with the 3D quality network just exceeds one tile: 2 x 1 tiles, not 2 x 2."""
    from napari_deconoising.core import tile_plan

    budget = int(1.05 * 2**30)  # below the CPU cap, so it is the whole budget
    monkeypatch.setattr(tile_plan, "_available_bytes", lambda device: budget)
    m = _model3d(2, 16)
    shape = (32, 256, 256)
    grid = tile_grid(m, shape, auto_tile_shape(m, CPU, shape))
    assert len(grid.origins()) == 2 and grid.cores[0] == 32  # the whole depth, no Z halo
    assert math.prod(grid.largest()) * _BYTES_PER_PIXEL_CHANNEL * 16 <= budget


def test_the_preconditioned_phantom_widens_the_halo_by_its_filter():
    from napari_deconoising.core.precondition import wiener_radius

    plain, pre = _model3d(3, 32), _model3d(3, 32, wiener_eps=0.01)
    assert tile_halos(plain) == (22, 72, 72)
    extra = wiener_radius(pre.psf.shape, 0.01)  # (16, 8, 8)
    assert all(b - a >= e for a, b, e in zip(tile_halos(plain), tile_halos(pre), extra))
    assert tile_halos(pre) == (38, 80, 80)  # Y and X rounded to the pooling multiple 8
    # The 3D default: None means the measured choice, 0.01.
    cfg = TrainConfig(ndim=3, depth=2, channels=4, psf_sigma=(2.0, 1.0, 1.0), patch_size=(16, 32, 32))
    assert cfg.wiener_eps is None and cfg.phantom_wiener_eps == 0.01


def test_a_deep_3d_network_gets_a_larger_cpu_budget(monkeypatch):
    """Depth 3 on 64 x 512 x 512: the capped budget computed 27x the stack's voxels (issue 9); the
    budget grows, within the RAM share, until the tiles compute at most twice the stack."""
    from napari_deconoising.core import tile_plan

    m = _model3d(3, 32)  # 16-plane patches: Z not pooled, halo (22, 72, 72)
    shape = (64, 512, 512)
    monkeypatch.setattr(tile_plan, "_available_bytes", lambda device: _CPU_CAP_BYTES)
    assert tile_plan.overcompute(m, shape, auto_tile_shape(m, CPU, shape)) > 10  # the capped plan
    limit = 6 * 2**30
    monkeypatch.setattr(tile_plan, "_available_bytes", lambda device: limit)
    for reduced in (False, True):
        tile = auto_tile_shape(m, CPU, shape, reduced=reduced)
        largest = math.prod(tile_grid(m, shape, tile).largest())
        assert largest * tile_plan._bytes_per_pixel_channel(reduced) * 32 <= limit
        assert tile_plan.overcompute(m, shape, tile) < (2.6 if not reduced else 2.0)
    # 2D at the paper's size already computes < 2x the image under the cap: no growth there.
    m2 = _model(3, 64)
    tile = auto_tile_shape(m2, CPU, (4096, 4096))
    assert math.prod(tile_grid(m2, (4096, 4096), tile).largest()) * _BYTES_PER_PIXEL_CHANNEL * 64 <= _CPU_CAP_BYTES


_PEAK_CODE = """
import sys, numpy as np, torch
from napari_deconoising.core import DecoNoisingNet, gaussian_psf
from napari_deconoising.core.predict import peak_rss_bytes
shape, channels, dtype = tuple(map(int, sys.argv[1].split("x"))), int(sys.argv[2]), sys.argv[3]
nd = len(shape)
fmt = torch.channels_last_3d if nd == 3 else torch.channels_last
psf = gaussian_psf((2.0, 1.0, 1.0) if nd == 3 else 1.0, ndim=nd)
net = DecoNoisingNet(psf, depth=2, channels=channels, ndim=nd, pool_z=False).eval().to(memory_format=fmt)
x = torch.randn(1, 1, *shape).contiguous(memory_format=fmt)
with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
    net(x[..., :32, :32])  # kernels and weights loaded before the baseline
    before = peak_rss_bytes()
    net(x)
print((peak_rss_bytes() - before) / (np.prod(shape) * channels))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and glibc's malloc settings")
@pytest.mark.parametrize(("shape", "dtype"), [("640x640", "fp32"), ("24x128x128", "fp32"), ("24x128x128", "bf16")])
def test_the_bytes_per_voxel_estimate_bounds_a_real_forward_pass(shape, dtype):
    """The planner's bytes per voxel and channel bound the peak of one channels-last tile in a fresh
    process (the decoder frees each skip once concatenated; before that, 3D fp32 took 31.5 > 28)."""
    import os
    import subprocess

    keep = ("PATH", "HOME", "PYTHONPATH", "LANG", "TMPDIR", "VIRTUAL_ENV")
    # A fixed mmap threshold returns every freed map to the system, so VmHWM measures the live
    # tensors: with glibc's sliding threshold, maps below 32 MiB (these test sizes, not a
    # budget-sized tile's) come from a fragmenting heap and the same pass read 18 to 31 bytes.
    env = {k: os.environ[k] for k in keep if k in os.environ} | {"OMP_NUM_THREADS": "1",
                                                                 "MALLOC_MMAP_THRESHOLD_": "65536"}
    r = subprocess.run([sys.executable, "-c", _PEAK_CODE, shape, "16", dtype], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    per_voxel = float(r.stdout)
    print(f"{shape} {dtype}: {per_voxel:.1f} bytes per voxel and channel")
    assert per_voxel <= (_BYTES_PER_PIXEL_CHANNEL if dtype == "fp32" else _BYTES_PER_PIXEL_CHANNEL_REDUCED)


def test_processes_sharing_the_machine_split_the_ram_limit(monkeypatch):
    """``share`` divides the RAM the 3D budget may grow into; the starting budget stays."""
    from napari_deconoising.core import tile_plan

    m = _model3d(3, 32)
    shape = (64, 512, 512)
    monkeypatch.setattr(tile_plan, "_available_bytes", lambda device: 6 * 2**30)
    for share in (1, 2):
        tile = auto_tile_shape(m, CPU, shape, share=share)
        largest = math.prod(tile_grid(m, shape, tile).largest())
        assert largest * _BYTES_PER_PIXEL_CHANNEL * 32 <= 6 * 2**30 // share
    assert auto_tile_shape(m, CPU, shape, share=2) != auto_tile_shape(m, CPU, shape)
    # four processes leave each the capped budget: no growth (its smallest tile is the halo's floor)
    monkeypatch.setattr(tile_plan, "_available_bytes", lambda device: 4 * _CPU_CAP_BYTES)
    capped = auto_tile_shape(m, CPU, shape, share=4)
    monkeypatch.setattr(tile_plan, "_available_bytes", lambda device: _CPU_CAP_BYTES)
    assert capped == auto_tile_shape(m, CPU, shape)
