"""Tile planning for prediction: each tile's context (halo), tile sizes from a memory budget,
and balanced tile grids (the border contract is in :mod:`.tiles`).

Shared by in-memory prediction (:mod:`.predict`) and out-of-core prediction (:mod:`.stream`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .precondition import wiener_radius
from .tiles import TileGrid
from .unet import unet_receptive_radius

if TYPE_CHECKING:
    from .config import TrainConfig
    from .model import DecoNoisingModel

__all__ = ["tile_halos", "tile_halo", "tile_margins", "tile_grid", "auto_tile_size", "auto_tile_shape",
           "overcompute", "default_batch_size"]


def tile_halos(model: DecoNoisingModel) -> tuple[int, ...]:
    """Context each tile carries on both sides of every spatial axis (Z, Y, X or Y, X).

    The receptive radius along the axis (an unpooled Z sees much less far) plus the
    PSF's radius there and that of the preconditioned phantom's filter, rounded up to
    the axis' pooling multiple: that keeps each tile's pooling grid aligned with the
    whole image's, so tiled and whole-image predictions agree to float precision and
    no blending is needed. Only interior tile edges carry it: at the image border the
    network's zero padding applies (see :mod:`.tiles`).
    """
    cfg = model.config
    shape = (1,) * cfg.ndim if model.psf is None else model.psf.shape
    radii = tuple(n // 2 + w for n, w in zip(shape, wiener_radius(shape, cfg.phantom_wiener_eps)))
    out = []
    for mult, psf_r in zip(_multiples(cfg), radii):
        r = unet_receptive_radius(cfg.depth, pooled=mult > 1, n2v2=cfg.n2v2) + psf_r
        out.append(int(math.ceil(r / mult) * mult))
    return tuple(out)


def tile_halo(model: DecoNoisingModel) -> int:
    """The largest of :func:`tile_halos`: context in Y and X, and a safe bound everywhere."""
    return max(tile_halos(model))


# Mirrored context beyond the image border, in pooling multiples (capped at the halo), in Y
# and X and in Z; beyond it the network zero-pads, as at every training patch's border.
# One multiple keeps the 16 px border band's PSNR within 0.1 dB of a full mirrored halo (two
# seeds: 2D -0.08/-0.05 dB, 3D +0.02/+0.08 dB denoised); none lost 0.17-0.20 dB there in 2D and,
# in 3D, 0.49 dB for one seed while gaining 0.26 dB for the other (docs/benchmarks.md,
# benchmarks/border_quality.py).
_MARGIN_MULTIPLES = 1
_MARGIN_MULTIPLES_Z = 1


def tile_margins(model: DecoNoisingModel) -> tuple[int, ...]:
    """Mirrored pixels the network sees beyond each image border, per spatial axis."""
    ks = ((_MARGIN_MULTIPLES_Z,) if model.config.ndim == 3 else ()) + (_MARGIN_MULTIPLES,) * 2
    return tuple(min(h, k * m) for h, m, k in zip(tile_halos(model), _multiples(model.config), ks))


def tile_grid(model: DecoNoisingModel, shape: Sequence[int], tile_size: int | Sequence[int]) -> TileGrid:
    """The prediction tiles of an image of spatial ``shape`` whose inputs are at most ``tile_size``.

    ``tile_size`` (one value, or one per spatial axis) bounds the input tile including its
    context. Along each axis the fewest tiles that fit it are used: one covering the whole
    axis (no halo) if it fits, else two (a halo on the inner side only), else balanced cores
    with a halo on both sides of the inner tiles.

    Raises
    ------
    ValueError
        ``tile_size`` has the wrong length, or is too small for the halo along an axis.
    """
    nd = model.config.ndim
    sizes = tuple(int(t) for t in tile_size) if isinstance(tile_size, (tuple, list)) else (int(tile_size),) * nd
    if len(sizes) != nd:
        raise ValueError(f"tile_size {tile_size} needs 1 or {nd} values for a {nd}D model")
    halos, margins, mults = tile_halos(model), tile_margins(model), _multiples(model.config)
    shape = tuple(int(n) for n in shape)
    cores = []
    for axis, n, t, h, r, m in zip("ZYX"[-nd:], shape, sizes, halos, margins, mults):
        core = _axis_core(n, t, h, r, m)
        if core is None:
            raise ValueError(
                f"a tile size of {t} px is too small along {axis}: each tile carries {h} px of context on "
                f"every inner side, so it must be at least {2 * h + m} px, or the whole axis ({n} px)")
        cores.append(core)
    return TileGrid(shape, tuple(cores), halos, margins, mults)


def _axis_core(n: int, t: int, h: int, r: int, m: int) -> int | None:
    """Core length along an axis of ``n`` px for tiles of at most ``t`` px (None: impossible)."""
    aligned = _ceil_div(n, m) * m
    if aligned + 2 * r <= t:
        return aligned  # one tile, no halo
    half = _ceil_div(aligned, 2 * m) * m
    if half + h + r <= t:
        return half  # two tiles, each with a halo on the inner side
    if t - 2 * h < m:
        # No tiling fits. A size that covers the axis asks for it whole: one tile, with the few
        # aligned and mirrored pixels beyond it.
        return aligned if n <= t else None
    return _balanced_core(aligned, (t - 2 * h) // m * m, m)


def _multiples(cfg: TrainConfig) -> tuple[int, ...]:
    m = 2**cfg.depth
    return (m,) * cfg.ndim if cfg.pools_z() else (1,) + (m,) * (cfg.ndim - 1)


# Peak inference memory per tile pixel and first-level channel. Measured channels-last with
# the decoder freeing each skip once concatenated (UNet.forward), depth 3, one tile in a fresh
# process (VmHWM): fp32 18.9 bytes in 2D (1024^2, 64 channels) and 23.9 in 3D (66 x 176^2,
# 32 channels); bf16 9.8 and 13.2. Before that change: 25.6 / 31.5 and 13.7 / 17.0
# (docs/benchmarks.md, "Prediction memory").
_BYTES_PER_PIXEL_CHANNEL = 28
_BYTES_PER_PIXEL_CHANNEL_REDUCED = 14
# Activation budget of one tile on the CPU, by the estimate above. Larger tiles carry less
# halo and run faster per pixel: in fp32, 1.5 GiB instead of 1 GiB made 2048^2 (demo network)
# 1.21x and 1024^2 (paper network) 1.34x faster (issue 8, interleaved A/B). Predicting 4096^2 at the paper's size then
# peaks at 1.42 GiB (1.21 GiB with 1 GiB), below the 2 GiB target (docs/benchmarks.md).
_CPU_CAP_BYTES = 1536 * 1024**2
# A deep 3D network's halo can make tiles of that budget compute many times the stack's
# voxels (depth 3 on 64 x 512 x 512: halo (22, 72, 72), 27x): then the CPU budget doubles,
# up to the available-RAM share, until the tiles compute at most this many times the image.
_MAX_OVERCOMPUTE = 2.0
# Batching tiles pays off on a GPU; on the CPU it only multiplies memory.
_MAX_TILE_BATCH = {"cuda": 16, "mps": 4, "cpu": 2}
# Kernels index a tensor with 32-bit integers (e.g. channels-last bilinear up-sampling:
# "only supports output tensors with less than INT_MAX elements"). The largest tensor of a
# forward pass is the top level's concatenation, 2 x channels at full resolution; on a large
# GPU the memory budget alone allowed 13 tiles of 1784^2 at 64 channels (issue 8, an H200).
_MAX_TENSOR_ELEMENTS = 2**31 - 1


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 4
    except OSError:
        pass
    return 2 * 1024**3 // 4


def auto_tile_size(model: DecoNoisingModel, device: torch.device, cap_bytes: int = _CPU_CAP_BYTES, *,
                   reduced: bool = False) -> int:
    """Largest input tile side whose activations fit a memory budget.

    The budget is half the free GPU memory, or a quarter of the available RAM, and
    at most ``cap_bytes`` on the CPU (larger tiles stop paying off there).
    ``reduced``: activations in bf16/fp16, half the bytes of fp32.
    """
    budget = _available_bytes(device)
    if device.type != "cuda":
        budget = min(budget, cap_bytes)
    per_pixel = _bytes_per_pixel_channel(reduced) * model.config.channels
    side = int(math.sqrt(budget / per_pixel))
    m = 2**model.config.depth
    halo = tile_halo(model)
    side = min(side, 2048, math.isqrt(_MAX_TENSOR_ELEMENTS // (2 * model.config.channels)))
    side = max(2 * halo + 4 * m, side)
    return side // m * m


def _bytes_per_pixel_channel(reduced: bool) -> int:
    return _BYTES_PER_PIXEL_CHANNEL_REDUCED if reduced else _BYTES_PER_PIXEL_CHANNEL


def default_batch_size(model: DecoNoisingModel, device: torch.device, tile: Sequence[int], *,
                       reduced: bool = False) -> int:
    """Tiles per forward pass: as many ``tile``-sized inputs as the memory budget holds (at least one)."""
    per_tile = _bytes_per_pixel_channel(reduced) * model.config.channels * math.prod(int(t) for t in tile)
    budget = _available_bytes(device)
    if device.type != "cuda":
        budget = min(budget, _CPU_CAP_BYTES)
    by_index = _MAX_TENSOR_ELEMENTS // (2 * model.config.channels * math.prod(int(t) for t in tile))
    return max(1, min(_MAX_TILE_BATCH.get(device.type, 2), int(budget // per_tile), by_index))


def auto_tile_shape(model: DecoNoisingModel, device: torch.device, image_shape: Sequence[int], *,
                    reduced: bool = False, share: int = 1) -> tuple[int, ...]:
    """Input tile size per spatial axis from the free memory (see :func:`auto_tile_size`).

    In 3D the tile first takes the whole depth of ``image_shape`` (a typical stack is
    thin; a tile covering an axis needs no halo along it), or a cube's worth of the budget
    if that is less, and Y and X share the rest: a square, or one axis at the square's
    size and the other given the rest of the budget, whichever computes fewer voxels.

    On the CPU the budget starts at the cap beyond which larger 2D tiles stop paying
    off, and doubles, up to a quarter of the available RAM, while the tiles would compute
    more than twice the image's voxels (a deep 3D network's halo). ``share``: processes
    that each run such a tile at once on this machine (Dask workers); they split the
    RAM the budget may grow into (the starting budget is as without them).
    """
    limit = _available_bytes(device)
    budget = limit if device.type == "cuda" else min(limit, _CPU_CAP_BYTES)
    grow_to = limit if device.type == "cuda" else limit // max(1, int(share))
    tile = _tile_shape(model, budget, image_shape, reduced)
    while budget < grow_to and overcompute(model, image_shape, tile) > _MAX_OVERCOMPUTE:
        budget = min(2 * budget, grow_to)
        tile = _tile_shape(model, budget, image_shape, reduced)
    return tile


def overcompute(model: DecoNoisingModel, image_shape: Sequence[int], tile_size: Sequence[int]) -> float:
    """Voxels the tiles of ``tile_size`` compute, over the image's own (1: no halo, no padding)."""
    halos, margins, mults = tile_halos(model), tile_margins(model), _multiples(model.config)
    computed = math.prod(sum(_tile_lengths(int(n), int(t), h, r, m))
                         for n, t, h, r, m in zip(image_shape, tile_size, halos, margins, mults))
    return computed / math.prod(int(n) for n in image_shape)


def _tile_shape(model: DecoNoisingModel, budget: float, image_shape: Sequence[int], reduced: bool) -> tuple[int, ...]:
    voxels = min(budget / (_bytes_per_pixel_channel(reduced) * model.config.channels),
                 _MAX_TENSOR_ELEMENTS / (2 * model.config.channels))
    halos, margins, mults = tile_halos(model), tile_margins(model), _multiples(model.config)
    whole = [_ceil_div(int(n), m) * m + 2 * r for n, m, r in zip(image_shape, mults, margins)]
    out: list[int] = []
    if model.config.ndim == 3:
        tz = min(whole[0], max(2 * halos[0] + mults[0], int(voxels ** (1 / 3))))
        out.append(tz)
        voxels /= tz
    voxels = min(voxels, 2048.0**2)
    h, r, m = halos[-1], margins[-1], mults[-1]
    side = max(2 * h + 4 * m, int(math.sqrt(voxels)) // m * m)
    ny, nx = (int(n) for n in image_shape[-2:])
    # A square tile, or one axis at the square's size and the other given what that leaves of
    # the budget (a strip whose Y fits whole; a stack just over one tile: 2 x 1 tiles, not 2 x 2):
    # whichever computes the fewest voxels.
    plans = [(side, side)]
    longest = _tile_lengths(ny, side, h, r, m)
    plans.append((side, max(side, min(whole[-1], int(voxels // max(longest)) // m * m))))
    longest = _tile_lengths(nx, side, h, r, m)
    plans.append((max(side, min(whole[-2], int(voxels // max(longest)) // m * m)), side))
    plane = min(plans, key=lambda p: sum(_tile_lengths(ny, p[0], h, r, m)) * sum(_tile_lengths(nx, p[1], h, r, m)))
    return (*out, *plane)


def _tile_lengths(n: int, t: int, h: int, r: int, m: int) -> list[int]:
    """The tiles' lengths along an axis of ``n`` px for tiles of at most ``t`` px (``t >= 2 * h + m``)."""
    return TileGrid((n,), (_axis_core(n, t, h, r, m),), (h,), (r,), (m,)).lengths(0)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _balanced_core(n: int, core: int, m: int) -> int:
    count = _ceil_div(n, core)  # tiles needed along the axis
    return _ceil_div(_ceil_div(n, count), m) * m
