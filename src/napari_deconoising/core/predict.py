"""Tiled prediction with bounded memory and no seams."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data import as_image_set, check_values
from .device import ExecutionPlan, execution_plan, known_precision, release_memory, resolve_device
from .precision import DEFAULT_PRECISION
from .probe import Probe, prediction_probe
from .quantize import calibration_crops, int8_unavailable, prediction_network

# Tile planning lives in .tile_plan; these names stay importable from here (stream.py, tests).
from .tile_plan import (  # noqa: F401
    _BYTES_PER_PIXEL_CHANNEL,
    _CPU_CAP_BYTES,
    _MAX_TILE_BATCH,
    _available_bytes,
    _balanced_core,
    _bytes_per_pixel_channel,
    _multiples,
    auto_tile_shape,
    auto_tile_size,
    default_batch_size,
    tile_grid,
    tile_halo,
    tile_halos,
)
from .tiles import TileGrid, check_batch_size

if TYPE_CHECKING:
    from .model import DecoNoisingModel

__all__ = ["Prediction", "Cancelled", "predict", "predict_iter", "prediction_plan", "known_prediction_precision",
           "auto_tile_size", "auto_tile_shape", "tile_halo", "tile_halos"]


class Cancelled(Exception):
    """Prediction (or training, on the command line) was cancelled by the caller."""


@dataclass
class Prediction:
    """Restored images in the input's intensity units (float32, input's shape).

    For a list input, ``denoised`` and ``deconvolved`` are lists.
    """

    denoised: np.ndarray | list[np.ndarray]
    deconvolved: np.ndarray | list[np.ndarray]


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
        Largest input tile including its context: one side for every axis or one per
        spatial axis; chosen from the free memory when omitted. Context (the halo) is
        carried only at interior tile edges; an axis that fits whole is one tile.
        Results do not depend on it.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    precision : str
        ``auto`` (default): the fastest precision whose result is within 1 % (RMS, of the
        fp32 output's standard deviation; 2 % for the deconvolved image) of fp32's, measured
        once per machine and network (:func:`~napari_deconoising.core.device.choose_precision`);
        or ``fp32`` (exact), ``bf16``, ``fp16``, ``int8`` (x86 CPUs: calibrated on crops of the
        image and checked there, fp32 beyond the tolerance; :mod:`~.quantize`); or a plan from
        :func:`prediction_plan`, run as it is.
    batch_size : int, optional
        Tiles per forward pass (at least 1); from the memory budget when omitted.
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
                 *, tile_size: int | Sequence[int] | None = None, device: str = "auto",
                 precision: str | ExecutionPlan = DEFAULT_PRECISION,
                 batch_size: int | None = None, on_plan: Callable[[ExecutionPlan], None] | None = None,
                 ) -> Generator[tuple[int, int], None, Prediction]:
    """Generator form of :func:`predict`: yields ``(done, total)`` tiles, returns the Prediction.

    The first yield, ``(0, total)``, comes before any tile has run; then one per batch.

    Closing the generator stops the work at the next batch of tiles. ``on_plan(plan)``
    is called once the input has been checked and device and precision are chosen.
    """
    check_batch_size(batch_size)
    nd = model.config.ndim
    images = as_image_set(image, axes, ndim=nd)
    check_values(images.slices)
    plan = prediction_plan(model, device, precision, sum(int(np.prod(x.shape)) for x in images.slices))
    net, plan = prediction_network(model, plan, lambda: calibration_crops(images.slices, model.mean, model.std))
    if on_plan is not None:
        on_plan(plan)
    if tile_size is None:
        largest = np.max([s.shape for s in images.slices], axis=0)
        tile_size = auto_tile_shape(model, plan.device, largest, reduced=plan.reduced)
    grids = [tile_grid(model, s.shape, tile_size) for s in images.slices]
    total = sum(len(g.origins()) for g in grids)
    done = 0
    # Once before the first batch, which can take a while (a large 3D tile on the CPU): callers
    # learn the tile count, and a GUI can show the plan (``on_plan``) before any tile has run.
    yield done, total
    den_stacks, dec_stacks = [], []
    try:
        for k, count in enumerate(images.counts):
            spatial = images.layouts[k][1][-nd:]
            den = np.empty((count, *spatial), np.float32)
            dec = np.empty((count, *spatial), np.float32)
            first = sum(images.counts[:k])
            for j in range(count):
                grid = grids[first + j]
                batch = batch_size or default_batch_size(model, plan.device, grid.largest(), reduced=plan.reduced)
                image_j = images.slices[first + j]
                tiles = _predict_slice(net, plan, grid, image_j, model.mean, model.std, batch, den[j], dec[j],
                                       resident=_fits_on_device(plan, image_j.size))
                for n in tiles:
                    done += n
                    yield done, total
            den_stacks.append(images.restore(k, den))
            dec_stacks.append(images.restore(k, dec))
    finally:
        del net
        release_memory(plan.device)
    if isinstance(image, (list, tuple)):
        return Prediction(den_stacks, dec_stacks)
    return Prediction(den_stacks[0], dec_stacks[0])


def _fits_on_device(plan: ExecutionPlan, voxels: int) -> bool:
    """Whether one image stays on the accelerator while its tiles are predicted.

    On a GPU the host otherwise does most of the work (normalising, cutting tiles,
    stitching, copying both outputs back tile by tile): an H200 predicted 4096^2 at
    40 MP/s that way while its network ran at about three times that (issue 8).
    Input, domain and both outputs take about 16 bytes a voxel; a quarter of the free
    memory is their budget, the rest is the tiles'. On the CPU the image is where it is.
    """
    if plan.device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(plan.device)
    return 16 * voxels <= free // 4


def _predict_slice(net: torch.nn.Module, plan: ExecutionPlan, grid: TileGrid, image: np.ndarray, mean: float,
                   std: float, batch: int, den: np.ndarray, dec: np.ndarray,
                   resident: bool) -> Generator[int, None, None]:
    """Predict one image tile by tile into ``den`` and ``dec`` (host arrays); yields tiles done per batch.

    The same tensor operations run wherever the image is kept, so the result does not
    depend on it: normalise, extend to the domain, cut tiles, run the network on
    ``plan.device``, put each core in place, undo the normalisation. ``resident``: the
    image and both outputs stay on ``plan.device`` (:func:`_fits_on_device`) and cross to
    the host once each; otherwise they stay on the host and only tiles travel.
    """
    store = plan.device if resident else torch.device("cpu")
    with warnings.catch_warnings():
        # A read-only image (a channel of a memory-mapped file) is fine: it is only read, never written.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(store)
    x = x - np.float32(mean)  # a new tensor: the caller's image is never written to
    x.div_(np.float32(std))
    x = grid.extend(x)
    # On the host the outputs are written straight into the caller's arrays.
    out = [torch.empty(a.shape, device=store) if resident else torch.from_numpy(a) for a in (den, dec)]
    fmt = plan.memory_format(x.ndim)
    for chunk in grid.batches(batch):
        t = torch.stack([grid.tile(x, o) for o in chunk])[:, None]
        t = t.contiguous(memory_format=fmt) if resident else plan.to_device(t.numpy())
        with torch.inference_mode(), plan.autocast():
            results = net(t)
        for o_t, r in zip(out, results):
            r = r[:, 0].float().to(store)
            for orig, tile_out in zip(chunk, r):
                o_t[tuple(slice(o, o + e) for o, e in zip(orig, grid.extent(orig)))] = tile_out[grid.core_in_tile(orig)]
        yield len(chunk)
    del x
    for o_t, a in zip(out, (den, dec)):
        o_t.mul_(np.float32(std)).add_(np.float32(mean))
        if resident:
            torch.from_numpy(a).copy_(o_t)


def prediction_plan(model: DecoNoisingModel, device: str = "auto",
                    precision: str | ExecutionPlan = DEFAULT_PRECISION,
                    image_voxels: int | None = None) -> ExecutionPlan:
    """Device and precision :func:`predict` will use, and why (``plan.reason``).

    ``precision="auto"`` times this network on one tile (a 512 px core in 2D; 8 planes
    of 128 px in 3D) in each precision the device runs natively, once per machine and
    network shape (cached). An image of at most ``image_voxels`` pixels that is no larger
    than two probe tiles is predicted in fp32 without measuring: the measurement would
    cost more than the prediction it speeds up.

    A ``precision`` that is already a plan (from this function) is returned as it is, so
    ``auto``'s reason and int8 fall-back (its measured runner-up) reach where it runs; its
    device wins over ``device``.
    """
    if isinstance(precision, ExecutionPlan):
        return precision
    if precision == "int8" and (why := int8_unavailable(model.config)):
        raise ValueError(f"precision 'int8' is not available for this model: {why}")
    probe = _probe(model)
    if precision == "auto" and image_voxels is not None and image_voxels <= 2 * math.prod(probe.network["input"][1:]):
        plan = execution_plan(device, "fp32")
        return dataclasses.replace(plan, reason="small image: fp32, not measured (the precision probe "
                                   "would cost more than the prediction)")
    return execution_plan(device, precision, probe=probe)


def known_prediction_precision(model: DecoNoisingModel, device: str = "auto") -> str | None:
    """The precision ``precision="auto"`` predicts a large image in on ``device`` when that is known
    without measuring (one candidate, or a decision cached earlier); None when it is not.

    For planning in a GUI thread, where the probe's seconds of measuring cannot run.
    """
    return known_precision(resolve_device(device), _probe(model))


def _probe(model: DecoNoisingModel) -> Probe:
    """The precision probe's tile: a 512 px core in 2D, 8 planes of 128 px in 3D."""
    cfg = model.config
    want = (512, 512) if cfg.ndim == 2 else (8, 128, 128)
    tile = tuple(2 * h + max(m, w // m * m) for h, m, w in zip(tile_halos(model), _multiples(cfg), want))
    kwargs = dict(depth=cfg.depth, channels=cfg.channels, ndim=cfg.ndim, pool_z=cfg.pools_z(),
                  wiener_eps=cfg.phantom_wiener_eps, n2v2=cfg.n2v2, decoder=cfg.unet_decoder)
    return prediction_probe(model.build_network, kwargs, None if model.psf is None else model.psf.shape, tile,
                            int8=int8_unavailable(cfg) is None)


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
