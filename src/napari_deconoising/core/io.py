"""Image files: read an array with its axis letters, write one atomically.

One entry point per direction, :func:`read_image` and :func:`write_image`, dispatching
on the file name's suffix to a backend: TIFF, and zarr / OME-Zarr (a folder ending in
``.zarr``, see :mod:`.ome`). A new format is a reader and a writer added to
:data:`FORMATS`; the callers (CLI, demo, PSF loading, sample data, widgets) do not
change. Outputs too large for memory are written tile by tile (:mod:`.lazy_io`) through
the same atomic :func:`atomic_output`.

Axis letters are ours (see :mod:`.data`): ``S`` stack of independent images, ``T``
time, ``Z`` depth, ``C`` channel, ``Y``, ``X``. An empty string means "unknown".
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tiff_meta import TO_TIFF, tiff_axes, tiff_write_options

__all__ = ["ImageFileError", "ImageFormat", "FORMATS", "image_format", "read_image", "write_image",
           "atomic_output", "is_zarr_store", "usual_permissions"]


class ImageFileError(ValueError):
    """An image file cannot be read or written: missing, unreadable or of an unsupported type."""


@dataclass(frozen=True)
class ImageFormat:
    """One file format: its name, the suffixes it owns, and how to read and write it.

    ``read(path) -> (array, axes)`` may raise anything for a broken file (it is turned
    into :class:`ImageFileError`); ``write(path, data, axes, scale, units)`` writes to
    exactly ``path`` (a temporary name chosen by :func:`write_image`), with the pixel size
    where one is given. A ``folder`` format stores an image as a directory (zarr).
    """

    name: str
    suffixes: tuple[str, ...]
    read: Callable[[Path], tuple[np.ndarray, str]]
    write: Callable[[Path, np.ndarray, str | None, Sequence[float] | None, Sequence[str | None] | None], None]
    folder: bool = False


# -- TIFF --------------------------------------------------------------------------



def _read_tiff(path: Path) -> tuple[np.ndarray, str]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return series.asarray(), tiff_axes(tif, series)


def _write_tiff(path: Path, data: np.ndarray, axes: str | None, scale: Sequence[float] | None = None,
                units: Sequence[str | None] | None = None) -> None:
    import tifffile

    # The axes and pixel size as the tile-by-tile outputs store them (see .tiff_meta).
    options = tiff_write_options(axes or "", data.shape, data.dtype, scale, units)
    # minisblack: else tifffile stores a (3, Y, X) stack as one RGB image.
    tifffile.imwrite(path, data, photometric="minisblack", **options)


def _read_zarr(path: Path) -> tuple[np.ndarray, str]:
    from .ome import read_ome_zarr

    return read_ome_zarr(path)


def _write_zarr(path: Path, data: np.ndarray, axes: str | None, scale: Sequence[float] | None = None,
                units: Sequence[str | None] | None = None) -> None:
    from .ome import write_ome_zarr

    write_ome_zarr(path, data, axes, scale=scale, units=units)


#: The known formats; the first whose suffixes match a file name handles it.
FORMATS: list[ImageFormat] = [
    ImageFormat("TIFF", (".tif", ".tiff", ".btf", ".tf2", ".tf8"), _read_tiff, _write_tiff),
    ImageFormat("OME-Zarr", (".zarr",), _read_zarr, _write_zarr, folder=True),
]


# -- dispatch ------------------------------------------------------------------------

def image_format(path: str | os.PathLike) -> ImageFormat:
    """The format that handles ``path``, from its suffix (case-insensitive).

    A folder that is a zarr group or array is zarr whatever its name (``0`` typed inside
    ``b2r.zarr``), and so is a name without a suffix inside a ``.zarr`` folder (``b2r.zarr/1``,
    an output too).

    Raises
    ------
    ImageFileError
        No known format owns the suffix. Callers check outputs with this before
        long work, so a typo fails at once rather than after training.
    """
    if Path(path).is_dir() and is_zarr_store(Path(path)):  # no other format is a folder
        return next(fmt for fmt in FORMATS if ".zarr" in fmt.suffixes)
    suffix = Path(str(path).rstrip("/")).suffix.lower()
    for fmt in FORMATS:
        if suffix in fmt.suffixes:
            return fmt
    if not suffix and any(part.lower().endswith(".zarr") for part in Path(path).parts[:-1]):
        # an image inside a zarr store, e.g. series 1 of a bioformats2raw container ("b2r.zarr/1")
        return next(fmt for fmt in FORMATS if ".zarr" in fmt.suffixes)
    known = ", ".join(s for fmt in FORMATS for s in fmt.suffixes)
    what = f"'{suffix}' files" if suffix else "files without a suffix"
    raise ImageFileError(f"cannot handle {Path(path)}: {what} are not supported (use one of {known})")


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Read an image file.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its suffix picks the format.

    Returns
    -------
    data : numpy.ndarray
        The pixels, in the file's dtype.
    axes : str
        Axis letters in our convention, one per dimension of ``data``; ``""`` when the
        file does not say (or says something ambiguous).

    Raises
    ------
    ImageFileError
        The file does not exist, its suffix is not supported, or it cannot be read.
    """
    p = Path(path)
    fmt = image_format(p)
    if not p.exists():
        raise ImageFileError(f"image file not found: {p}")
    try:
        return fmt.read(p)
    except Exception as e:  # readers raise many kinds of errors for broken files
        raise ImageFileError(f"cannot read {p} as a {fmt.name} image: {e}") from None


def write_image(path: str | os.PathLike, data: np.ndarray, axes: str | None = None, *,
                scale: Sequence[float] | None = None, units: Sequence[str | None] | None = None) -> None:
    """Write ``data`` to ``path`` atomically, in the format its suffix names.

    The file is written under a temporary name in the same folder and renamed over
    ``path`` when complete, so a crash or a full disk never leaves a half-written
    file, and an existing file stays intact until the new one is ready.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.
    data : numpy.ndarray
        Written in its own dtype.
    axes : str, optional
        Our axis letters for ``data``, stored in the file where the format allows.
    scale, units : sequence, optional
        The pixel size per axis and its unit (NGFF names such as ``"nanometer"``), stored
        as :func:`~.lazy_io.create_output` stores them (needs ``axes``).

    Raises
    ------
    ImageFileError
        Unsupported suffix, missing folder, or ``axes``, ``scale`` or ``units`` that do
        not fit ``data``.
    """
    p = Path(path)
    fmt = image_format(p)
    data = np.asarray(data)
    axes = axes.upper() if axes else None
    if axes and (len(axes) != data.ndim or not set(axes) <= set(TO_TIFF) or len(set(axes)) != len(axes)):
        raise ImageFileError(f"axes {axes!r} do not describe an array of shape {data.shape}")
    for name, values in (("scale", scale), ("units", units)):
        if values is not None and (not axes or len(values) != data.ndim):
            raise ImageFileError(f"a pixel size ({name} {tuple(values)}) needs axes and one value per axis of "
                                 f"an array of shape {data.shape}")
    with atomic_output(p) as tmp:
        fmt.write(tmp, data, axes, scale, units)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` when the block succeeds.

    The temporary file (or folder, for a folder format such as zarr) lives in the same
    folder, so the final rename is atomic; a crash, an error or a cancel removes it and
    leaves an existing ``path`` untouched. A folder replaces an existing one by two
    renames (old aside, new in place) before the old one is deleted.

    Raises
    ------
    ImageFileError
        Unsupported suffix or missing folder.
    """
    p = Path(path)
    fmt = image_format(p)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise ImageFileError(f"output folder does not exist: {folder}")
    if p.is_dir() and not (fmt.folder and (is_zarr_store(p) or not any(p.iterdir()))):
        # an existing zarr store (or an empty folder) of that name is replaced like a file; any other
        # folder is the user's
        raise ImageFileError(f"{p} is a folder that is not a zarr image; "
                             "refusing to replace it")
    if p.exists() and not p.is_dir() and fmt.folder:
        raise ImageFileError(f"{p} is a file, not a zarr folder; refusing to replace it")
    if fmt.folder:
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=p.suffix, dir=folder))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=p.suffix, dir=folder)
        os.close(fd)
        tmp = Path(name)
    try:
        usual_permissions(tmp)
        yield tmp
        _replace(tmp, p)
    except BaseException:
        _remove(tmp)
        raise


def is_zarr_store(path: Path) -> bool:
    """Whether the folder ``path`` holds a zarr array or group (format 2 or 3; format 2
    attributes alone count, so that reading names the store's problem)."""
    return any((path / name).is_file() for name in ("zarr.json", ".zgroup", ".zarray", ".zattrs"))


def usual_permissions(path: str | os.PathLike) -> None:
    """Give a file or folder made by ``tempfile`` (owner only: 0600 / 0700) the permissions of
    one made by ``open``/``mkdir`` under the user's umask, so colleagues in a shared folder
    can read the results as they can the rest."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


@functools.cache
def _set_and_reset_umask() -> int:
    """The umask, by setting it and back: the portable way, not safe while other threads make
    files, so done once and remembered."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``):
    setting it, even for an instant, would give files other threads make meanwhile the wrong mode."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _set_and_reset_umask()


def _replace(tmp: Path, p: Path) -> None:
    if not tmp.is_dir() or not p.exists():
        os.replace(tmp, p)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{p.name}.old.", dir=p.parent))
    os.replace(p, old / p.name)
    try:
        os.replace(tmp, p)
    except BaseException:
        os.replace(old / p.name, p)  # put the user's data back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)
