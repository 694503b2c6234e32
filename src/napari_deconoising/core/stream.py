"""Out-of-core prediction: read tiles (with their halo) from a lazy input, write cores to an output.

The same tiles as :func:`.predict.predict_iter` — the same :class:`.tiles.TileGrid`, so the
same cores, halos and border contract — are cut straight out of an array-like (a memory map,
a zarr array, a dask array, or an :class:`.lazy_io.ArrayRef` to open), so the result
equals in-memory prediction while only a few tiles are ever in memory. Each batch of
tiles is an independent *job*; :mod:`.cluster` hands the same jobs to Dask workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .data import DataError, default_axes
from .device import ExecutionPlan, release_memory
from .lazy_io import ArrayRef
from .precision import DEFAULT_PRECISION
from .predict import (
    Cancelled,
    auto_tile_shape,
    prediction_plan,
    tile_grid,
)
from .quantize import calibration_crops, prediction_network
from .tile_plan import default_batch_size
from .tiles import TileGrid, check_batch_size

if TYPE_CHECKING:
    from .model import DecoNoisingModel

__all__ = ["StreamPlan", "plan_stream", "predict_lazy", "predict_lazy_iter", "run_job"]


@dataclass(frozen=True)
class StreamPlan:
    """Everything a job needs besides the network: layout, grid and normalisation."""

    axes: str            # the input's (and outputs') axis letters
    spatial: str         # the model's spatial axes in canonical order, e.g. "YX"
    grid: TileGrid
    mean: float
    std: float

    @property
    def src_spatial(self) -> list[int]:
        """Positions of the spatial axes in ``axes``, in canonical order."""
        return [self.axes.index(a) for a in self.spatial]

    def lead_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(n for a, n in zip(self.axes, shape) if a not in self.spatial)

    def index(self, lead: Sequence[int], spans: Sequence[slice]) -> tuple[Any, ...]:
        """A full index into the input/outputs: ints for lead axes, ``spans`` (canonical order) for spatial ones."""
        out, it = [], iter(lead)
        for a in self.axes:
            out.append(spans[self.spatial.index(a)] if a in self.spatial else next(it))
        return tuple(out)

    def to_canonical(self, block: np.ndarray) -> np.ndarray:
        """Transpose a block read with :meth:`index` to canonical spatial order."""
        order = [a for a in self.axes if a in self.spatial]
        return block.transpose([order.index(a) for a in self.spatial])

    def from_canonical(self, block: np.ndarray) -> np.ndarray:
        order = [a for a in self.axes if a in self.spatial]
        return block.transpose([self.spatial.index(a) for a in order])

    def out_chunks(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Output chunks one tile core each, so every tile writes whole chunks (safe in parallel)."""
        return tuple(min(self.grid.cores[self.spatial.index(a)], n) if a in self.spatial else 1
                     for a, n in zip(self.axes, shape))


def plan_stream(model: DecoNoisingModel, shape: Sequence[int], dtype: Any, axes: str | None,
                tile_size: int | Sequence[int] | None, device: torch.device, *, reduced: bool = False,
                share: int = 1) -> StreamPlan:
    """Check the input's layout and cut its spatial axes into the prediction tiles.

    Without a ``tile_size`` the tiles fill the memory budget of :mod:`.tile_plan`;
    ``reduced``: for a bf16/fp16 plan, whose activations take half the bytes; ``share``:
    processes running tiles at once on this machine (Dask workers), which split the RAM
    the tile budget may grow into.

    Raises
    ------
    DataError
        Unusable dtype, axes that do not fit, or several channels.
    """
    shape = tuple(int(n) for n in shape)
    axes = (axes or default_axes(shape, model.config.ndim)).upper()
    if np.dtype(dtype).kind not in "biuf":
        raise DataError(f"the image has dtype {dtype}; need real numbers (uint8, uint16, float, ...)")
    if len(axes) != len(shape) or len(set(axes)) != len(axes) or not set(axes) <= set("STCZYXQ"):
        raise DataError(f"axes {axes!r} do not describe an image of shape {shape}")
    nd = model.config.ndim
    spatial = "ZYX"[-nd:]
    if not set(spatial) <= set(axes):
        raise DataError(f"axes {axes!r} must contain {', '.join(spatial)}"
                        + (" for a 3D model" if nd == 3 else ""))
    if "C" in axes and shape[axes.index("C")] > 1:
        raise DataError(f"the image has {shape[axes.index('C')]} channels (axis C); DecoNoising works on one "
                        "channel at a time")
    sp_shape = tuple(shape[axes.index(a)] for a in spatial)
    if tile_size is None:
        tile_size = auto_tile_shape(model, device, sp_shape, reduced=reduced, share=share)
    grid = tile_grid(model, sp_shape, tile_size)  # the in-memory prediction's tiles
    return StreamPlan(axes, spatial, grid, float(model.mean), float(model.std))


def jobs(plan: StreamPlan, shape: Sequence[int], batch_size: int) -> list[tuple[tuple[int, ...], list]]:
    """Batches of tiles of one shape, ``(lead index, origins)``, in the order in-memory prediction runs them."""
    batches = plan.grid.batches(batch_size)
    return [(lead, b) for lead in itertools.product(*(range(n) for n in plan.lead_shape(shape))) for b in batches]


def read_tile(plan: StreamPlan, src: Any, lead: Sequence[int], origin: Sequence[int]) -> np.ndarray:
    """One normalised input tile (core plus the halo inside the domain, canonical order, float32)."""
    spans, gathers = plan.grid.read_spans(origin)
    block = plan.to_canonical(np.asarray(src[plan.index(lead, spans)]))
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        at = dict(zip(plan.spatial, (sp.start + int(i) for sp, i in zip(spans, np.argwhere(~np.isfinite(block))[0]))))
        at.update(zip([a for a in plan.axes if a not in plan.spatial], lead))
        where = ", ".join(f"{a}={at[a]}" for a in plan.axes)
        raise DataError(f"the image contains NaN or infinite values (first found at {where}); fill or crop them first")
    for axis, g in enumerate(gathers):
        if g is not None:
            block = np.take(block, g, axis=axis)
    return (block.astype(np.float32) - np.float32(plan.mean)) / np.float32(plan.std)


def run_job(plan: StreamPlan, net: torch.nn.Module, exec_plan: Any, src: Any, sinks: Sequence[Any],
            job: tuple[tuple[int, ...], list]) -> int:
    """Predict one batch of tiles from ``src`` and write their cores to ``sinks``; returns the tile count.

    ``sinks`` are the denoised and (optionally) deconvolved outputs, in the input's layout.
    """
    lead, origins = job
    tiles = np.stack([read_tile(plan, src, lead, o) for o in origins])[:, None]
    x_t = torch.from_numpy(tiles).to(exec_plan.device)
    if exec_plan.channels_last:
        x_t = x_t.contiguous(memory_format=exec_plan.memory_format(len(plan.spatial)))
    with torch.inference_mode(), exec_plan.autocast():
        outs = net(x_t)
    outs = [o.float().cpu().numpy()[:, 0] for o in outs]
    g = plan.grid
    for k, origin in enumerate(origins):
        src_core = g.core_in_tile(origin)
        dst = plan.index(lead, [slice(o, o + e) for o, e in zip(origin, g.extent(origin))])
        for sink, out in zip(sinks, outs):
            if sink is None:
                continue
            core = np.array(out[k][src_core], dtype=np.float32)
            core *= np.float32(plan.std)
            core += np.float32(plan.mean)
            sink[dst] = plan.from_canonical(core)
    return len(origins)


def _open(a: Any, write: bool = False) -> Any:
    return a.open(write) if isinstance(a, ArrayRef) else a


def predict_lazy(model: DecoNoisingModel, source: Any, denoised: Any, deconvolved: Any = None, *,
                 plan: StreamPlan, progress: Callable[[int, int], None] | None = None,
                 cancel: Callable[[], bool] | None = None, **kwargs: Any) -> None:
    """Predict ``source`` tile by tile into ``denoised`` (and ``deconvolved``).

    Parameters
    ----------
    model : DecoNoisingModel
        The trained model.
    source : array-like or ArrayRef
        The input, of the shape and axes ``plan`` was made for; read tile by tile.
    denoised, deconvolved : array-like or ArrayRef
        Writable float32 outputs of the input's shape (``deconvolved`` may be None).
    plan : StreamPlan
        From :func:`plan_stream`.
    progress, cancel : callable, optional
        ``progress(done, total)`` after every batch; ``cancel()`` returning True
        raises :class:`.predict.Cancelled` (finished tiles stay written).
    device, precision, batch_size
        As for :func:`.predict.predict`; ``precision`` may be a plan already made
        (:func:`.predict.prediction_plan`), which keeps ``auto``'s reason and int8 fall-back.
    client : distributed.Client, optional
        Run the batches on this Dask cluster instead (see :mod:`.cluster`); ``source``
        and the outputs must then be ArrayRefs every worker can open.
    """
    gen = predict_lazy_iter(model, source, denoised, deconvolved, plan=plan, **kwargs)
    try:
        for done, total in gen:
            if progress is not None:
                progress(done, total)
            if cancel is not None and cancel():
                raise Cancelled("prediction cancelled")
    finally:
        gen.close()


def predict_lazy_iter(model: DecoNoisingModel, source: Any, denoised: Any, deconvolved: Any = None, *,
                      plan: StreamPlan, device: str = "auto", precision: str | ExecutionPlan = DEFAULT_PRECISION,
                      batch_size: int | None = None, client: Any = None,
                      on_plan: Callable[[Any], None] | None = None) -> Iterator[tuple[int, int]]:
    """Generator form of :func:`predict_lazy`: yields ``(done, total)`` tiles, ``(0, total)`` first.

    Closing it stops the work after the current batch; finished tiles stay written.
    ``precision="auto"`` is decided here, once, by timing this network
    (:func:`.predict.prediction_plan`, cached); Dask workers get the decision.
    ``on_plan(plan)`` gets that :class:`~.device.ExecutionPlan` before the first tile.
    """
    check_batch_size(batch_size)
    exec_plan = prediction_plan(model, device, precision)
    shape = source.shape
    # int8 may fall back on this image (below), after the batches are fixed: sized for fp32 then.
    batch_size = batch_size or default_batch_size(model, exec_plan.device, plan.grid.largest(),
                                                  reduced=exec_plan.dtype is not None)
    work = jobs(plan, shape, batch_size)
    total = sum(len(o) for _, o in work)
    crops = stream_calibration_crops(plan, source, work) if exec_plan.quantized else []
    net = None
    if client is None or exec_plan.quantized:
        # int8 is decided here, on this image's crops (the plan's fall-back beyond the tolerance);
        # Dask workers calibrate on the same crops and so build the same network.
        net, exec_plan = prediction_network(model, exec_plan, lambda: crops)
    if on_plan is not None:
        on_plan(exec_plan)
    if client is not None:
        from .cluster import run_on_cluster

        events: Iterator[int] = run_on_cluster(client, run_job, model, plan, source, (denoised, deconvolved),
                                               work, device, exec_plan.precision,
                                               crops if exec_plan.quantized else [])
    else:
        events = _run_here(net, plan, exec_plan, source, (denoised, deconvolved), work)
    del net  # a local run's generator holds it, and lets it go when it ends
    done = 0
    yield done, total  # before the first batch, as predict_iter: the plan can be shown at once
    try:
        for n in events:
            done += n
            yield done, total
    finally:
        events.close()


def stream_calibration_crops(plan: StreamPlan, source: Any, work: Sequence[tuple]) -> list[torch.Tensor]:
    """int8 calibration crops (:func:`.quantize.calibration_crops`) of a streamed input.

    Every tile is read once more to find the brightest and the darkest: reading is cheap
    next to the network, and a range that misses a bright spot would clip it.
    """
    src = _open(source)
    keep: dict[str, tuple[float, np.ndarray]] = {}
    for lead, origins in work:
        for origin in origins:
            tile = read_tile(plan, src, lead, origin)
            for key, value in (("max", float(tile.max())), ("min", -float(tile.min()))):
                if key not in keep or value > keep[key][0]:
                    keep[key] = (value, tile)
            keep.setdefault("first", (0.0, tile))
    keep["last"] = (0.0, tile)
    tiles = [keep[k][1] for k in ("max", "min", "first", "last")]
    return calibration_crops(tiles, 0.0, 1.0)


def _run_here(net, plan, exec_plan, source, outputs, work) -> Iterator[int]:
    try:
        for job in work:
            # Handles are reopened per batch: a memory map's pages then leave our resident set.
            src = _open(source)
            sinks = [None if o is None else _open(o, write=True) for o in outputs]
            yield run_job(plan, net, exec_plan, src, sinks, job)
            del src, sinks
    finally:
        del net
        release_memory(exec_plan.device)
