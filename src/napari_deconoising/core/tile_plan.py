"""Tile planning for prediction: each tile's context (halo), tile sizes from a memory budget,
and balanced tile grids.

Shared by in-memory prediction (:mod:`.predict`) and out-of-core prediction (:mod:`.stream`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .unet import unet_receptive_radius

if TYPE_CHECKING:
    from .config import TrainConfig
    from .model import DecoNoisingModel

__all__ = ["tile_halos", "tile_halo", "auto_tile_size", "auto_tile_shape", "default_batch_size"]


def tile_halos(model: DecoNoisingModel) -> tuple[int, ...]:
    """Context each tile carries on both sides of every spatial axis (Z, Y, X or Y, X).

    The receptive radius along the axis (an unpooled Z sees much less far) plus the
    PSF's radius there, rounded up to the axis' pooling multiple: that keeps each
    tile's pooling grid aligned with the whole image's, so tiled and whole-image
    predictions agree to float precision and no blending is needed.
    """
    cfg = model.config
    radii = (0,) * cfg.ndim if model.psf is None else tuple(n // 2 for n in model.psf.shape)
    out = []
    for mult, psf_r in zip(_multiples(cfg), radii):
        r = unet_receptive_radius(cfg.depth, pooled=mult > 1, n2v2=cfg.n2v2) + psf_r
        out.append(int(math.ceil(r / mult) * mult))
    return tuple(out)


def tile_halo(model: DecoNoisingModel) -> int:
    """The largest of :func:`tile_halos`: context in Y and X, and a safe bound everywhere."""
    return max(tile_halos(model))


def _multiples(cfg: TrainConfig) -> tuple[int, ...]:
    m = 2**cfg.depth
    return (m,) * cfg.ndim if cfg.pools_z() else (1,) + (m,) * (cfg.ndim - 1)


# Peak inference memory per tile pixel and first-level channel: about ten fp32 feature
# maps of the first level are alive at once (measured: 29-49 bytes, see tests/test_predict.py;
# 24-29 bytes channels-last). bf16 activations take half (measured 13.7 bytes, issue 8).
_BYTES_PER_PIXEL_CHANNEL = 40
_BYTES_PER_PIXEL_CHANNEL_REDUCED = 20
# Activation budget of one tile on the CPU, by the estimate above. Larger tiles carry less
# halo and run faster per pixel: in fp32, 1.5 GiB instead of 1 GiB made 2048^2 (demo network)
# 1.21x and 1024^2 (paper network) 1.34x faster (issue 8, interleaved A/B). Predicting 4096^2 at the paper's size then
# peaks at 1.42 GiB (1.21 GiB with 1 GiB), below the 2 GiB target (docs/benchmarks.md).
_CPU_CAP_BYTES = 1536 * 1024**2
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
                    reduced: bool = False) -> tuple[int, ...]:
    """Input tile size per spatial axis from the free memory (see :func:`auto_tile_size`).

    In 3D the tile first takes the whole depth of ``image_shape`` (a typical stack is
    thin), or a cube's worth of the budget if that is less, and Y and X share the rest.
    """
    side = auto_tile_size(model, device, reduced=reduced)
    if model.config.ndim == 2:
        return side, side
    budget = _available_bytes(device)
    if device.type != "cuda":
        budget = min(budget, _CPU_CAP_BYTES)
    voxels = min(budget / (_bytes_per_pixel_channel(reduced) * model.config.channels),
                 _MAX_TENSOR_ELEMENTS / (2 * model.config.channels))
    (hz, hy, _), (mz, m, _) = tile_halos(model), _multiples(model.config)
    whole_z = -(-int(image_shape[0]) // mz) * mz + 2 * hz
    tz = min(whole_z, max(2 * hz + mz, int(voxels ** (1 / 3))))
    tz = 2 * hz + (tz - 2 * hz) // mz * mz
    side = int(math.sqrt(voxels / tz))
    side = max(2 * hy + 4 * m, min(side, 2048)) // m * m
    return tz, side, side


def _tile_origins(shape: Sequence[int], core: Sequence[int],
                  mults: Sequence[int]) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """Corners (in image coordinates) of the tile cores, and the core size.

    Cores are balanced: as many per axis as ``core`` needs, each only as large as that
    count requires (a multiple of the axis' ``m``), so the last tile does not run mostly
    over padding (2048 px with 720 px cores: three 684 px cores instead of 720). Images
    smaller than one core get a single core rounded up to the axis' multiple.
    """
    cores = tuple(_balanced_core(n, c, m) for n, c, m in zip(shape, core, mults))
    ranges = [range(0, n, c) for n, c in zip(shape, cores)]
    return list(itertools.product(*ranges)), cores


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _balanced_core(n: int, core: int, m: int) -> int:
    count = _ceil_div(n, core)  # tiles needed along the axis
    return _ceil_div(_ceil_div(n, count), m) * m


def _pad(norm: np.ndarray, halos: Sequence[int], cores: Sequence[int]) -> np.ndarray:
    """Reflect-pad by the halo on every side, plus enough at the end for whole cores."""
    pads = [(h, h + (-(-n // c) * c - n)) for n, c, h in zip(norm.shape, cores, halos)]
    mode = "reflect" if min(norm.shape) > 1 else "edge"
    return np.pad(norm, pads, mode=mode)

