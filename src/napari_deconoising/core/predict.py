"""Tiled prediction with bounded memory and no seams."""

from __future__ import annotations

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
    from .model import DecoNoisingModel

__all__ = ["Prediction", "Cancelled", "predict", "predict_iter", "prediction_plan", "auto_tile_size", "tile_halo"]


class Cancelled(Exception):
    """Prediction was cancelled by the caller."""


@dataclass
class Prediction:
    """Restored images in the input's intensity units (float32, input's shape).

    For a list input, ``denoised`` and ``deconvolved`` are lists.
    """

    denoised: np.ndarray | list[np.ndarray]
    deconvolved: np.ndarray | list[np.ndarray]


def tile_halo(model: DecoNoisingModel) -> int:
    """Context each tile carries on every side: the receptive radius, rounded up.

    Rounding up to a multiple of ``2**depth`` keeps each tile's pooling grid aligned
    with the whole image's, so tiled and whole-image predictions agree to float
    precision and no blending is needed.
    """
    psf_r = 0 if model.psf is None else max(n // 2 for n in model.psf.shape)
    radius = unet_receptive_radius(model.config.depth) + psf_r
    m = 2**model.config.depth
    return int(math.ceil(radius / m) * m)


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


def predict(model: DecoNoisingModel, image: np.ndarray | Sequence[np.ndarray], axes: str | None = None,
            **kwargs) -> Prediction:
    """Denoise and deconvolve images with a trained model.

    Parameters
    ----------
    model : DecoNoisingModel
        The trained model.
    image : array or list of arrays
        A 2D image, a stack (slice by slice), or a list of them; any real dtype.
    axes : str, optional
        Axis letters as for training (``YX``, ``SYX``, ``TYX``, ``ZYX``...).
    tile_size : int, optional
        Side of the square input tiles including their context; chosen from the free
        memory when omitted. Results do not depend on it.
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
                 *, tile_size: int | None = None, device: str = "auto", precision: str = "auto",
                 batch_size: int | None = None, on_plan: Callable[[ExecutionPlan], None] | None = None,
                 ) -> Generator[tuple[int, int], None, Prediction]:
    """Generator form of :func:`predict`: yields ``(done, total)`` tiles, returns the Prediction.

    Closing the generator stops the work at the next batch of tiles. ``on_plan(plan)``
    is called once the input has been checked and device and precision are chosen.
    """
    images = as_image_set(image, axes)
    check_values(images.slices)
    plan = prediction_plan(model, device, precision)
    if on_plan is not None:
        on_plan(plan)
    net = model.build_network().to(plan.device)
    if plan.channels_last:
        net = net.to(memory_format=torch.channels_last)
    m = 2**model.config.depth
    halo = tile_halo(model)
    if tile_size is None:
        tile_size = auto_tile_size(model, plan.device, reduced=plan.dtype is not None)
    tile_size = int(tile_size)
    if tile_size < 2 * halo + m:
        raise ValueError(
            f"tile_size {tile_size} is too small: each tile carries {halo} px of context on every "
            f"side, so it must be at least {2 * halo + m} px"
        )
    core = (tile_size - 2 * halo) // m * m
    if batch_size is None:
        per_tile = _bytes_per_pixel_channel(plan.dtype is not None) * model.config.channels * (core + 2 * halo) ** 2
        budget = _available_bytes(plan.device)
        if plan.device.type != "cuda":
            budget = min(budget, _CPU_CAP_BYTES)
        batch_size = max(1, min(_MAX_TILE_BATCH.get(plan.device.type, 2), int(budget // per_tile)))

    plans = [_tile_origins(s.shape, core, m) for s in images.slices]
    total = sum(len(p[0]) for p in plans)
    done = 0
    den_stacks, dec_stacks = [], []
    try:
        for k, count in enumerate(images.counts):
            h, w = images.layouts[k][1][-2:]
            den = np.empty((count, h, w), np.float32)
            dec = np.empty((count, h, w), np.float32)
            first = sum(images.counts[:k])
            for j in range(count):
                s = images.slices[first + j]
                origins, cores = plans[first + j]
                norm = (s.astype(np.float32) - np.float32(model.mean)) / np.float32(model.std)
                padded = _pad(norm, halo, cores, core)
                del norm
                for b in range(0, len(origins), batch_size):
                    chunk = origins[b:b + batch_size]
                    tiles = np.stack([padded[y:y + cores[0] + 2 * halo, x:x + cores[1] + 2 * halo]
                                      for y, x in chunk])[:, None]
                    x_t = plan.to_device(tiles)
                    with torch.inference_mode(), plan.autocast():
                        d_t, p_t = net(x_t)
                    d_np = d_t.float().cpu().numpy()[:, 0]
                    p_np = p_t.float().cpu().numpy()[:, 0]
                    for (y, x), dt, pt in zip(chunk, d_np, p_np):
                        hy, wx = min(cores[0], h - y), min(cores[1], w - x)
                        den[j, y:y + hy, x:x + wx] = dt[halo:halo + hy, halo:halo + wx]
                        dec[j, y:y + hy, x:x + wx] = pt[halo:halo + hy, halo:halo + wx]
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

    ``precision="auto"`` times this network on one tile with a 512 px core in each
    precision the device runs natively, once per machine and network shape (cached).
    """
    m, halo = 2**model.config.depth, tile_halo(model)
    side = 2 * halo + 512 // m * m
    kwargs = dict(depth=model.config.depth, channels=model.config.channels, ndim=model.config.ndim)
    probe = prediction_probe(model.build_network, kwargs, None if model.psf is None else model.psf.shape,
                             (side,) * model.config.ndim)
    return execution_plan(device, precision, probe=probe)


def _tile_origins(shape: tuple[int, int], core: int, m: int) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Top-left corners (in image coordinates) of the tile cores, and the core size.

    Cores are balanced: as many per axis as ``core`` needs, each only as large as that
    count requires (a multiple of ``m``), so the last tile does not run mostly over
    padding (2048 px with 720 px cores: three 684 px cores instead of 720). Images
    smaller than one core get a single core rounded up to a multiple of ``m``.
    """
    cores = tuple(_balanced_core(n, core, m) for n in shape)
    ys = range(0, shape[0], cores[0])
    xs = range(0, shape[1], cores[1])
    return [(y, x) for y in ys for x in xs], cores


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _balanced_core(n: int, core: int, m: int) -> int:
    count = _ceil_div(n, core)  # tiles needed along the axis
    return _ceil_div(_ceil_div(n, count), m) * m


def _pad(norm: np.ndarray, halo: int, cores: tuple[int, int], core: int) -> np.ndarray:
    """Reflect-pad by ``halo`` on every side, plus enough at the end for whole cores."""
    pads = []
    for n, c in zip(norm.shape, cores):
        extra = -(-n // c) * c - n
        pads.append((halo, halo + extra))
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
