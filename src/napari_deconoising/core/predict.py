"""Tiled prediction with bounded memory and no seams."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data import as_image_set, check_values
from .device import ExecutionPlan, execution_plan, release_memory
from .probe import prediction_probe
from .unet import unet_receptive_radius

if TYPE_CHECKING:
    from .config import TrainConfig
    from .model import DecoNoisingModel

__all__ = ["Prediction", "Cancelled", "predict", "predict_iter", "prediction_plan", "auto_tile_size",
           "auto_tile_shape", "tile_halo", "tile_halos"]


class Cancelled(Exception):
    """Prediction was cancelled by the caller."""


@dataclass
class Prediction:
    """Restored images in the input's intensity units (float32, input's shape).

    For a list input, ``denoised`` and ``deconvolved`` are lists.
    """

    denoised: np.ndarray | list[np.ndarray]
    deconvolved: np.ndarray | list[np.ndarray]


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
# Activation budget of one tile on the CPU. 1 GiB by the estimate above is about 0.7 GiB
# in fact; predicting 4096^2 at the paper's size stays below 2 GiB in all (docs/benchmarks.md).
# Larger tiles carry less halo: 1.4x the tile area ran 15-18 % faster (issue 8).
_CPU_CAP_BYTES = 1024 * 1024**2
# Batching tiles pays off on a GPU; on the CPU it only multiplies memory.
_MAX_TILE_BATCH = {"cuda": 16, "mps": 4, "cpu": 2}


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
    side = max(2 * halo + 4 * m, min(side, 2048))
    return side // m * m


def _bytes_per_pixel_channel(reduced: bool) -> int:
    return _BYTES_PER_PIXEL_CHANNEL_REDUCED if reduced else _BYTES_PER_PIXEL_CHANNEL


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
    voxels = budget / (_bytes_per_pixel_channel(reduced) * model.config.channels)
    (hz, hy, _), (mz, m, _) = tile_halos(model), _multiples(model.config)
    whole_z = -(-int(image_shape[0]) // mz) * mz + 2 * hz
    tz = min(whole_z, max(2 * hz + mz, int(voxels ** (1 / 3))))
    tz = 2 * hz + (tz - 2 * hz) // mz * mz
    side = int(math.sqrt(voxels / tz))
    side = max(2 * hy + 4 * m, min(side, 2048)) // m * m
    return tz, side, side


def predict(model: DecoNoisingModel, image: np.ndarray | Sequence[np.ndarray], axes: str | None = None,
            **kwargs) -> Prediction:
    """Denoise and deconvolve images with a trained model.

    Parameters
    ----------
    model : DecoNoisingModel
        The trained model.
    image : array or list of arrays
        A 2D image, a stack (slice by slice), or a list of them; any real dtype. A 3D
        model takes volumes (Z, Y, X), and a stack of them (TZYX) volume by volume.
    axes : str, optional
        Axis letters as for training (``YX``, ``SYX``, ``TYX``, ``ZYX``...).
    tile_size : int or tuple of int, optional
        Size of the input tiles including their context: one side for every axis or
        one per spatial axis; chosen from the free memory when omitted. Results do not
        depend on it.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    precision : str
        ``auto`` (default): the fastest precision whose result is within 1 % (RMS, of
        the image's standard deviation) of fp32's, measured once per machine and
        network (:func:`~napari_deconoising.core.device.choose_precision`); or
        ``fp32`` (exact), ``bf16``, ``fp16``.
    batch_size : int, optional
        Tiles per forward pass; from the memory budget when omitted.
    progress : callable, optional
        ``progress(done, total)`` after every batch of tiles.
    on_plan : callable, optional
        ``on_plan(plan)`` with the :class:`~napari_deconoising.core.device.ExecutionPlan`
        (device, precision and ``reason``), before the first tile.
    cancel : callable, optional
        Polled between batches; returning True raises :class:`Cancelled`.

    Returns
    -------
    Prediction
        ``denoised`` (the phantom convolved with the PSF) and ``deconvolved`` (the
        phantom), float32 in the input's intensity units and shape.
    """
    progress = kwargs.pop("progress", None)
    cancel = kwargs.pop("cancel", None)
    gen = predict_iter(model, image, axes, **kwargs)
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)
        if cancel is not None and cancel():
            gen.close()
            raise Cancelled("prediction cancelled")


def predict_iter(model: DecoNoisingModel, image: np.ndarray | Sequence[np.ndarray], axes: str | None = None,
                 *, tile_size: int | Sequence[int] | None = None, device: str = "auto", precision: str = "auto",
                 batch_size: int | None = None, on_plan: Callable[[ExecutionPlan], None] | None = None,
                 ) -> Generator[tuple[int, int], None, Prediction]:
    """Generator form of :func:`predict`: yields ``(done, total)`` tiles, returns the Prediction.

    Closing the generator stops the work at the next batch of tiles. ``on_plan(plan)``
    is called once the input has been checked and device and precision are chosen.
    """
    nd = model.config.ndim
    images = as_image_set(image, axes, ndim=nd)
    check_values(images.slices)
    plan = prediction_plan(model, device, precision)
    if on_plan is not None:
        on_plan(plan)
    fmt = plan.memory_format(nd)
    net = model.build_network().to(plan.device)
    if plan.channels_last:
        net = net.to(memory_format=fmt)
    mults, halos = _multiples(model.config), tile_halos(model)
    if tile_size is None:
        largest = np.max([s.shape for s in images.slices], axis=0)
        tile_size = auto_tile_shape(model, plan.device, largest, reduced=plan.dtype is not None)
    sizes = tuple(int(t) for t in tile_size) if isinstance(tile_size, (tuple, list)) else (int(tile_size),) * nd
    if len(sizes) != nd:
        raise ValueError(f"tile_size {tile_size} needs 1 or {nd} values for a {nd}D model")
    for t, h, m in zip(sizes, halos, mults):
        if t < 2 * h + m:
            raise ValueError(
                f"tile_size {tile_size} is too small: each tile carries {h} px of context on every "
                f"side, so it must be at least {2 * h + m} px"
            )
    core = tuple((t - 2 * h) // m * m for t, h, m in zip(sizes, halos, mults))
    if batch_size is None:
        per_tile = (_bytes_per_pixel_channel(plan.dtype is not None) * model.config.channels
                    * math.prod(c + 2 * h for c, h in zip(core, halos)))
        budget = _available_bytes(plan.device)
        if plan.device.type != "cuda":
            budget = min(budget, _CPU_CAP_BYTES)
        batch_size = max(1, min(_MAX_TILE_BATCH.get(plan.device.type, 2), int(budget // per_tile)))

    plans = [_tile_origins(s.shape, core, mults) for s in images.slices]
    total = sum(len(p[0]) for p in plans)
    done = 0
    den_stacks, dec_stacks = [], []
    try:
        for k, count in enumerate(images.counts):
            spatial = images.layouts[k][1][-nd:]
            den = np.empty((count, *spatial), np.float32)
            dec = np.empty((count, *spatial), np.float32)
            first = sum(images.counts[:k])
            for j in range(count):
                s = images.slices[first + j]
                origins, cores = plans[first + j]
                norm = (s.astype(np.float32) - np.float32(model.mean)) / np.float32(model.std)
                padded = _pad(norm, halos, cores)
                del norm
                for b in range(0, len(origins), batch_size):
                    chunk = origins[b:b + batch_size]
                    tiles = np.stack([padded[tuple(slice(o, o + c + 2 * h) for o, c, h in zip(orig, cores, halos))]
                                      for orig in chunk])[:, None]
                    x_t = plan.to_device(tiles)
                    with torch.inference_mode(), plan.autocast():
                        d_t, p_t = net(x_t)
                    d_np = d_t.float().cpu().numpy()[:, 0]
                    p_np = p_t.float().cpu().numpy()[:, 0]
                    for orig, dt, pt in zip(chunk, d_np, p_np):
                        ext = [min(c, n - o) for o, c, n in zip(orig, cores, spatial)]
                        dst = (j, *(slice(o, o + e) for o, e in zip(orig, ext)))
                        src = tuple(slice(h, h + e) for h, e in zip(halos, ext))
                        den[dst] = dt[src]
                        dec[dst] = pt[src]
                    done += len(chunk)
                    yield done, total
                del padded
            for arr in (den, dec):
                arr *= np.float32(model.std)
                arr += np.float32(model.mean)
            den_stacks.append(images.restore(k, den))
            dec_stacks.append(images.restore(k, dec))
    finally:
        del net
        release_memory(plan.device)
    if isinstance(image, (list, tuple)):
        return Prediction(den_stacks, dec_stacks)
    return Prediction(den_stacks[0], dec_stacks[0])


def prediction_plan(model: DecoNoisingModel, device: str = "auto", precision: str = "auto") -> ExecutionPlan:
    """Device and precision :func:`predict` will use, and why (``plan.reason``).

    ``precision="auto"`` times this network on one tile (a 512 px core in 2D; 8 planes
    of 128 px in 3D) in each precision the device runs natively, once per machine and
    network shape (cached).
    """
    cfg = model.config
    want = (512, 512) if cfg.ndim == 2 else (8, 128, 128)
    tile = tuple(2 * h + max(m, w // m * m) for h, m, w in zip(tile_halos(model), _multiples(cfg), want))
    kwargs = dict(depth=cfg.depth, channels=cfg.channels, ndim=cfg.ndim, pool_z=cfg.pools_z())
    probe = prediction_probe(model.build_network, kwargs, None if model.psf is None else model.psf.shape, tile)
    return execution_plan(device, precision, probe=probe)


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


def peak_rss_bytes() -> int:
    """Peak resident memory of this process, for benchmarks.

    On Linux this is ``VmHWM``, which starts anew at ``exec``; ``ru_maxrss`` would carry
    a large parent's peak over into a fresh subprocess.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if os.uname().sysname == "Darwin" else r * 1024)
