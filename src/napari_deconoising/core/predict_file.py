"""Predict an image file into image files, of any size, on one machine or a Dask cluster."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .data import DataError
from .device import resolve_device
from .io import ImageFileError
from .lazy_io import LazyImage, create_output, open_lazy
from .output_paths import output_clash
from .precision import DEFAULT_PRECISION
from .predict import prediction_plan
from .stream import plan_stream, predict_lazy
from .tiles import check_batch_size

if TYPE_CHECKING:
    from .device import ExecutionPlan
    from .model import DecoNoisingModel

__all__ = ["predict_file"]


def predict_file(model: DecoNoisingModel, source: str | PathLike, denoised: str | PathLike,
                 deconvolved: str | PathLike | None = None, *, axes: str | None = None,
                 tile_size: int | None = None, device: str = "auto",
                 precision: str | ExecutionPlan = DEFAULT_PRECISION,
                 batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
                 cancel: Callable[[], bool] | None = None, client: Any = None,
                 on_plan: Callable[[Any], None] | None = None) -> str:
    """Denoise (and deconvolve) an image file into new files, tile by tile.

    The input is opened lazily (:func:`.lazy_io.open_lazy`: memory-mapped TIFF, zarr,
    OME-Zarr level 0) and the outputs are written tile by tile (OME-Zarr for a
    ``.zarr`` name, BigTIFF otherwise), so memory stays at a few tiles whatever the
    image size. Outputs appear under their names only when complete.

    Parameters
    ----------
    model : DecoNoisingModel
        The trained model.
    source : path
        The input image.
    denoised, deconvolved : path
        Output names; ``deconvolved`` is optional.
    axes : str, optional
        The input's axis letters; read from the file when omitted.
    tile_size, device, precision, batch_size, progress, cancel
        As for :func:`.stream.predict_lazy`.
    client : distributed.Client, optional
        Run on this Dask cluster (see :mod:`.cluster`).
    on_plan : callable, optional
        ``on_plan(plan)`` with the :class:`~.device.ExecutionPlan` as it will run (an int8
        plan that fell back to fp32 on this image says so), before the first tile; once per
        channel for a model per channel.

    Returns
    -------
    str
        The axis letters used (the outputs have the input's shape, axes and pixel size).

    Raises
    ------
    ImageFileError
        Unreadable input, unsupported output suffix, missing output folder, an output
        that would overwrite the input (see :func:`output_clash`), two outputs of one
        name, or axes an OME-Zarr output cannot hold.
    DataError
        The input cannot be used (dtype, channels, axes).
    ValueError
        ``batch_size`` below 1, or a ``client`` with a model per channel.
    """
    check_batch_size(batch_size)
    outputs = [Path(p) for p in (denoised, deconvolved) if p is not None]
    if (why := output_clash(outputs, [source])) is not None:
        raise ImageFileError(why)
    src = open_lazy(source)
    axes = axes or (src.axes if src.axes and set(src.axes) <= set("STZCYX") else None)
    axes = axes.upper() if axes else None  # "cyx" is CYX, as plan_stream reads it
    if hasattr(model, "models"):  # one model per channel (ChannelModels): channel by channel, in memory
        if client is not None:
            raise ValueError("a model with one network per channel predicts in memory on this machine; "
                             "a Dask client (--workers, --scheduler) serves models of one network only")
        return _predict_channels(model, src, outputs, axes, tile_size=tile_size, device=device,
                                 precision=precision, batch_size=batch_size, progress=progress, cancel=cancel,
                                 on_plan=on_plan)
    if axes and "C" in axes and len(axes) == len(src.shape) and src.shape[axes.index("C")] > 1:
        raise DataError(_one_channel_model(src.shape[axes.index("C")], axes))
    # Dask workers each run a tile at once: on a local cluster they share this machine's RAM, so they
    # split what a deep 3D network's tile budget may grow into (the starting budget stays).
    share = 1 if client is None else max(1, len(client.nthreads()))
    plan = plan_stream(model, src.shape, src.ref.dtype, axes, tile_size, resolve_device(device), share=share)
    # "auto" is measured once here (cached) once the input is known to fit; every tile and Dask worker
    # then runs the answer.
    exec_plan = prediction_plan(model, device, precision)
    # bf16/fp16 activations take half the bytes: tiles sized for that. Not int8's: it is checked on the
    # image after the tiles are fixed, and where it misses, fp32 runs these tiles.
    if exec_plan.dtype is not None:
        plan = plan_stream(model, src.shape, src.ref.dtype, axes, tile_size, exec_plan.device, reduced=True,
                           share=share)
    scale, units = _pixel_size(src, plan.axes)
    with ExitStack() as stack:
        refs = [stack.enter_context(create_output(p, src.shape, plan.axes, chunks=plan.out_chunks(src.shape),
                                                  scale=scale, units=units, translation=_origin(src, plan.axes)))
                for p in outputs]
        # The plan itself, not its name: "auto" keeps its reason and int8's measured runner-up as fall-back.
        predict_lazy(model, src.ref, refs[0], refs[1] if len(refs) > 1 else None, plan=plan, device=device,
                     precision=exec_plan, batch_size=batch_size, progress=progress, cancel=cancel,
                     client=client, on_plan=on_plan)
    return plan.axes


def _predict_channels(model: Any, src: Any, outputs: list[Path], axes: str | None, **kwargs: Any) -> str:
    """A :class:`.channels.ChannelModels` runs each channel through its own model.

    The per-channel models predict from memory (the file is read once, the outputs
    keep its C axis); out-of-core streaming covers single models only.
    """
    import numpy as np

    if axes is None:
        raise DataError(f"give the axes of the image (e.g. CYX): the model has {len(model.models)} channels")
    if len(axes) != len(src.shape):
        raise DataError(f"axes {axes!r} do not describe an image of shape {src.shape}")
    scale, units = _pixel_size(src, axes)
    with ExitStack() as stack:
        # Created before predicting: an output that cannot be written (its suffix, its folder, axes
        # OME-Zarr cannot hold) fails at once, not after every channel has been predicted.
        refs = [stack.enter_context(create_output(p, src.shape, axes, scale=scale, units=units,
                                                  translation=_origin(src, axes))) for p in outputs]
        pred = model.predict(np.asarray(src.ref.open()), axes, **kwargs)
        for ref, result in zip(refs, (pred.denoised, pred.deconvolved)):
            out = ref.open(write=True)
            out[...] = result
            if hasattr(out, "flush"):
                out.flush()
    return axes


def _one_channel_model(n: int, axes: str) -> str:
    """Why a model of one network cannot predict an image with ``n`` channels (axes ``axes``)."""
    if axes.endswith("XC"):  # a TIFF's samples per pixel
        return (f"the image is RGB ({n} samples per pixel, axes {axes}): DecoNoising predicts raw fluorescence "
                "images, stored channel by channel (e.g. CYX)")
    return (f"this model has one channel and the image has {n} (axis C): predict each channel as its own image, "
            "or train a model with one network per channel on the image with its C axis (deconoising train "
            "IMAGE, with --axes such as CYX where the file does not say)")


def _pixel_size(src: LazyImage, axes: str) -> tuple[tuple[float, ...] | None, tuple[str | None, ...] | None]:
    """The input's pixel size for the output axes ``axes``.

    An axis keeps its size where ``axes`` (given with ``--axes``, or guessed) name it
    as the file does; the others get 1 and no unit, since the file's size was for
    another axis.
    """
    if src.scale is None or not len(src.axes) == len(src.scale) == len(axes):
        return None, None
    units = src.units or (None,) * len(axes)
    same = [a == b for a, b in zip(src.axes, axes)]
    scale = tuple(s if keep else 1.0 for s, keep in zip(src.scale, same))
    kept = tuple(u if keep else None for u, keep in zip(units, same))
    if all(s == 1.0 for s in scale) and not any(kept):
        return None, None
    return scale, kept if any(kept) else None


def _origin(src: LazyImage, axes: str) -> tuple[float, ...] | None:
    """The input's origin (OME-Zarr translation) for the output axes ``axes``: kept where ``axes``
    name an axis as the file does, 0 elsewhere (as :func:`_pixel_size` does with the scale)."""
    if src.translation is None or not len(src.axes) == len(src.translation) == len(axes):
        return None
    origin = tuple(t if a == b else 0.0 for t, a, b in zip(src.translation, src.axes, axes))
    return origin if any(origin) else None
