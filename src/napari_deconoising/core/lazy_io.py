"""Images larger than memory: open inputs lazily, create outputs to fill tile by tile.

An input or output is described by an :class:`ArrayRef`, a small picklable record
(path, kind, shape, dtype) that any process can :meth:`~ArrayRef.open`: Dask workers
open their own handles instead of receiving pixels. Handles are opened per use and
dropped after, so a memory-mapped file's pages never pile up in a process' resident
memory.

- TIFF inputs are memory-mapped when the pixels are stored contiguously and
  uncompressed; otherwise they are read through tifffile's zarr store, page by page.
- Zarr arrays and OME-Zarr images (level 0) are read chunk by chunk.
- Outputs are OME-Zarr when the name ends in ``.zarr`` and an uncompressed BigTIFF
  otherwise, both created under a temporary name (:func:`.io.atomic_output`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import ImageFileError, atomic_output, image_format

__all__ = ["ArrayRef", "LazyImage", "open_lazy", "create_output"]


@dataclass(frozen=True)
class ArrayRef:
    """How to reopen an array on disk, in any process.

    ``kind`` is ``"memmap"`` (raw pixels at ``offset`` in a file, e.g. a contiguous
    TIFF), ``"zarr"`` (the array at ``key`` in a zarr store) or ``"tiff"`` (a TIFF read
    through tifffile's zarr store). ``path`` is made absolute where the record is made.
    """

    path: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    offset: int = 0
    key: str = ""

    def __post_init__(self) -> None:
        # Dask workers run in their own working folder (a scheduler started elsewhere): a relative
        # path would name another file there. Made absolute here, where it is made; unpickling a
        # record on a worker does not call this again.
        object.__setattr__(self, "path", os.path.abspath(self.path))

    def open(self, write: bool = False) -> Any:
        """An array-like view (numpy indexing) of the pixels; writable with ``write``."""
        if self.kind == "memmap":
            return np.memmap(self.path, dtype=self.dtype, mode="r+" if write else "r", offset=self.offset,
                             shape=self.shape)
        import zarr

        if self.kind == "zarr":
            return zarr.open_array(str(Path(self.path) / self.key) if self.key else self.path,
                                   mode="r+" if write else "r")
        if self.kind == "tiff":
            import tifffile

            # Level 0 of series 0, as read_image reads it (a pyramid's other levels are not used).
            return zarr.open_array(tifffile.imread(self.path, aszarr=True, series=0, level=0), mode="r")
        raise ValueError(f"unknown array kind {self.kind!r}")


@dataclass(frozen=True)
class LazyImage:
    """An input opened without reading its pixels: where it is, its axes and pixel size.

    ``scale`` is the pixel size per axis and ``units`` the unit of each (NGFF names such
    as ``"micrometer"``, ``None`` where unknown); both ``None`` when the file gives none.
    ``translation`` is an OME-Zarr image's origin per axis (in the units of ``scale``).
    """

    ref: ArrayRef
    axes: str
    scale: tuple[float, ...] | None = None
    units: tuple[str | None, ...] | None = None
    translation: tuple[float, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ref.shape

    def dask(self) -> Any:
        """The pixels as a dask array (for lazy training patches and napari layers)."""
        import dask.array as da

        array = self.ref.open()
        chunks = getattr(array, "chunks", None)
        if self.ref.kind == "memmap" or not chunks:
            chunks = tuple(1 if i < len(self.shape) - 2 else min(n, 2048) for i, n in enumerate(self.shape))
        return da.from_array(array, chunks=chunks, asarray=True, fancy=False, name=False)


def open_lazy(path: str | Path) -> LazyImage:
    """Open a TIFF, zarr array or OME-Zarr image without reading its pixels.

    Raises
    ------
    ImageFileError
        Missing file, unsupported suffix, or not readable as that format.
    """
    p = Path(path)
    fmt = image_format(p)
    if not p.exists():
        raise ImageFileError(f"image file not found: {p}")
    try:
        if fmt.folder:
            from .ome import open_ome_zarr

            img = open_ome_zarr(p)
            ref = ArrayRef(str(p), "zarr", tuple(img.array.shape), str(img.array.dtype), key=img.key)
            return LazyImage(ref, img.axes, img.scale, img.units, img.translation)
        return LazyImage(*_open_tiff(p))
    except ImageFileError:
        raise
    except Exception as e:  # readers raise many kinds of errors for broken files
        raise ImageFileError(f"cannot read {p} as a {fmt.name} image: {e}") from None


def _open_tiff(p: Path) -> tuple[ArrayRef, str, tuple[float, ...] | None, tuple[str | None, ...] | None]:
    import tifffile

    from .tiff_meta import tiff_axes, tiff_pixel_size

    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        axes = tiff_axes(tif, series)
        scale, units = tiff_pixel_size(tif, series, axes)
        shape, dtype = tuple(series.shape), series.dtype
        offset = series.dataoffset  # None unless contiguous and uncompressed
        if series.levels and len(series.levels) > 1:
            offset = None
    if offset is not None and dtype.isnative:
        return ArrayRef(str(p), "memmap", shape, dtype.str, offset=int(offset)), axes, scale, units
    return ArrayRef(str(p), "tiff", shape, dtype.str), axes, scale, units


@contextmanager
def create_output(path: str | Path, shape: Sequence[int], axes: str, *, chunks: Sequence[int] | None = None,
                  scale: Sequence[float] | None = None, units: Sequence[str | None] | None = None,
                  translation: Sequence[float] | None = None) -> Iterator[ArrayRef]:
    """Create a float32 image to fill tile by tile; it appears under ``path`` when the block ends.

    Yields an :class:`ArrayRef` to open for writing. A ``.zarr`` path becomes a
    one-level OME-Zarr image chunked as ``chunks``; any TIFF suffix an uncompressed
    BigTIFF whose pixels are memory-mapped (with OME-XML for a ``.ome.tif`` name, which
    Bio-Formats expects). ``scale`` and ``units`` (the pixel size per axis, as
    :class:`LazyImage` has them) are stored in either (see :mod:`.tiff_meta` for TIFF);
    ``translation`` only in OME-Zarr (TIFF has no field for it). On an error or a cancel
    nothing appears under ``path`` and an existing file there is left untouched.

    Raises
    ------
    ImageFileError
        Unsupported suffix or missing folder; ``axes`` that OME-Zarr cannot store.
    """
    fmt = image_format(path)
    with atomic_output(path) as tmp:
        if fmt.folder:
            from .ome import create_ome_zarr

            try:
                create_ome_zarr(tmp, shape, axes, chunks=chunks, scale=scale, units=units, translation=translation)
            except ValueError as e:
                raise ImageFileError(f"cannot write {path}: {e}") from None
            yield ArrayRef(str(tmp), "zarr", tuple(shape), "<f4", key="0")
        else:
            ome = Path(path).name.lower().endswith((".ome.tif", ".ome.tiff"))  # the name promises OME-XML
            yield _create_tiff(tmp, shape, axes, scale, units, ome=ome)


def _create_tiff(tmp: Path, shape: Sequence[int], axes: str, scale: Sequence[float] | None,
                 units: Sequence[str | None] | None, ome: bool = False) -> ArrayRef:
    import warnings

    import tifffile

    from .tiff_meta import tiff_write_options

    options = tiff_write_options(axes, shape, np.float32, scale, units, ome=ome)
    with warnings.catch_warnings():
        # ImageJ itself opens no BigTIFF; Fiji opens one with Bio-Formats, which reads its ImageJ description.
        warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
        # An empty (sparse) file of the final size; pixels are filled through a memory map.
        tifffile.imwrite(tmp, shape=tuple(shape), dtype=np.float32, bigtiff=True, photometric="minisblack",
                         **options)
    with tifffile.TiffFile(tmp) as tif:
        offset = tif.series[0].dataoffset
    return ArrayRef(str(tmp), "memmap", tuple(shape), "<f4", offset=int(offset))
