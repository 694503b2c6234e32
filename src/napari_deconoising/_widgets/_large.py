"""Large or lazy (dask/zarr) layers: predict tile by tile into OME-Zarr and show the results lazily.

The layer is never converted to one NumPy array: tiles (with their halo) are read from
it as they are predicted, and written to two OME-Zarr images in a folder. Result layers
are added before the first tile, backed by those zarr arrays, and refreshed as tiles
finish; a cancel keeps the finished tiles on disk and in the viewer.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image

from ..core import DecoNoisingModel
from ..core.device import execution_plan
from ..core.ome import create_ome_zarr
from ..core.predict import known_prediction_precision
from ..core.stream import StreamPlan, plan_stream, predict_lazy_iter
from ._layers import PROVENANCE_KEY, full_resolution, layer_array, provenance, unique_name

__all__ = ["LARGE_BYTES", "is_large", "layer_data", "LazyResults", "large_outputs", "large_predict_job",
           "sample_region"]

#: Layers above this size (or not held in memory) are predicted into a zarr store.
LARGE_BYTES = 1 << 30


def is_large(layer: Image) -> bool:
    """True for a dask/zarr-backed or multiscale layer, or an in-memory one above :data:`LARGE_BYTES`."""
    data = full_resolution(layer)
    return getattr(layer, "multiscale", False) or not isinstance(data, np.ndarray) or data.nbytes > LARGE_BYTES


def layer_data(layer: Image) -> Any:
    """What the core gets: the lazy array itself for a large layer, else a private NumPy copy."""
    return full_resolution(layer) if is_large(layer) else layer_array(layer)


def large_outputs(model: DecoNoisingModel, layer: Image, axes: str, tile_size: int | None, device: str,
                  folder: str | None) -> tuple[LazyResults, StreamPlan]:
    """Plan the tiles for a large layer and create its two OME-Zarr outputs in ``folder``.

    Raises
    ------
    DataError, ValueError
        The layer's layout does not fit the model, or a bad tile size.
    """
    data = full_resolution(layer)
    # The tiles (and the outputs' chunks) are fixed here, before the worker decides the precision: a
    # decision known without measuring (cached from an earlier run) sizes them for its bytes per voxel,
    # else they are sized for fp32, which is safe for either.
    reduced = known_prediction_precision(model, device) in ("bf16", "fp16")
    plan = plan_stream(model, data.shape, data.dtype, axes, tile_size, execution_plan(device, "fp32").device,
                       reduced=reduced)
    return LazyResults(folder, layer, plan), plan


def sample_region(data: Any, axes: str, side: int = 512) -> np.ndarray:
    """A small region (middle of the lead axes, first ``side`` px in Y and X) to check intensities on."""
    index = tuple(slice(0, side) if a in "YX" else n // 2 for a, n in zip(axes, data.shape))
    return np.asarray(data[index])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


class LazyResults:
    """The two OME-Zarr outputs of a large prediction and their (lazy) layers.

    Parameters
    ----------
    folder : str or Path, optional
        Where to write; a new temporary folder when empty.
    """

    def __init__(self, folder: str | Path | None, source: Image, plan: StreamPlan) -> None:
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="deconoising-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        shape = full_resolution(source).shape
        self.arrays, self.paths = [], []
        for role in ("denoised", "deconvolved"):
            path = self._free_path(f"{_safe(source.name)}_{role}")
            axes = plan.axes if _ngff_order(plan.axes) else None
            if axes:  # the layer's pixel size goes into the files too, not only into the result layers
                array = create_ome_zarr(path, shape, axes, chunks=plan.out_chunks(shape),
                                        scale=tuple(float(v) for v in source.scale), units=_units(source))
            else:  # an axis order OME-Zarr cannot describe: a plain zarr array
                import zarr

                array = zarr.create_array(str(path), shape=shape, chunks=plan.out_chunks(shape), dtype="f4",
                                          fill_value=0)
            self.arrays.append(array)
            self.paths.append(path)
        self.layers: list[Image] = []
        self._last_refresh = 0.0

    def _free_path(self, stem: str) -> Path:
        path, k = self.folder / f"{stem}.zarr", 2
        while path.exists():  # never overwrite earlier results
            path, k = self.folder / f"{stem}_{k}.zarr", k + 1
        return path

    def add_layers(self, viewer: Any, source: Image, model: DecoNoisingModel, model_name: str | None,
                   axes: str, **extra: Any) -> None:
        """Add ``<name> denoised`` / ``<name> deconvolved`` backed by the zarr arrays (nothing read)."""
        for role, array, path in zip(("denoised", "deconvolved"), self.arrays, self.paths):
            meta = dict(source.metadata) if isinstance(source.metadata, dict) else {}
            meta[PROVENANCE_KEY] = provenance(model, source, role, model_name, axes, store=str(path), **extra)
            self.layers.append(viewer.add_image(
                array, name=unique_name(viewer, f"{source.name} {role}"), scale=source.scale,
                translate=source.translate, colormap=source.colormap,
                contrast_limits=tuple(source.contrast_limits), blending=source.blending, metadata=meta))

    def refresh(self, force: bool = False) -> None:
        """Redraw the result layers (at most twice a second) so finished tiles appear."""
        now = time.monotonic()
        if force or now - self._last_refresh > 0.5:
            self._last_refresh = now
            for layer in self.layers:
                layer.refresh()


def _units(layer: Image) -> tuple[str | None, ...] | None:
    """The layer's units by their OME-Zarr names (None where napari says pixel), or None for none."""
    from ..core.units import normalize_unit

    units = tuple(normalize_unit(str(u)) for u in (getattr(layer, "units", None) or ()))
    return units if len(units) == layer.ndim and any(units) else None


def _ngff_order(axes: str) -> bool:
    from ..core.ome import ngff_axes

    try:
        ngff_axes(axes)
    except ValueError:
        return False
    return True


def large_predict_job(model: DecoNoisingModel, source: Any, outputs: LazyResults, plan: StreamPlan,
                      device: str, on_plan: Callable[[Any], None] | None = None
                      ) -> Generator[tuple[int, int], None, None]:
    """Worker-thread generator: tiles from ``source`` into the result arrays; yields (done, total).

    ``on_plan(plan)`` gets the device and precision chosen, before the first tile.
    """
    den, dec = outputs.arrays
    yield from predict_lazy_iter(model, source, den, dec, plan=plan, device=device, on_plan=on_plan)
