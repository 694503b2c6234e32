"""Checking user arrays and viewing them as 2D images or 3D volumes; normalisation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "check_axes",
    "DataError",
    "DataWarning",
    "ImageSet",
    "as_image_set",
    "check_values",
    "default_axes",
    "normalisation_stats",
]

AXES_LETTERS = "STCZYXQ"


class DataError(ValueError):
    """The input images cannot be used (wrong shape, NaN, constant, RGB, ...)."""


class DataWarning(UserWarning):
    """The input was usable only after an adjustment (e.g. a smaller patch)."""


@dataclass
class ImageSet:
    """Images as a list of 2D (or 3D) views plus what is needed to restore the layout.

    Attributes
    ----------
    slices : list of numpy.ndarray
        Views (Y, X), or (Z, Y, X) for 3D, into the caller's arrays; never written to.
    shapes : list of tuple
        Original shape of each input array.
    layouts : list of tuple
        ``(perm, canonical_shape)`` per input array: transposing the array by
        ``perm`` and reshaping to ``(-1, *spatial)`` gives its slices.
    counts : list of int
        Number of slices per input array.
    ndim : int
        Spatial dimensions of each slice (2 or 3).
    """

    slices: list[np.ndarray]
    shapes: list[tuple[int, ...]]
    layouts: list[tuple[tuple[int, ...], tuple[int, ...]]]
    counts: list[int]
    ndim: int = 2

    def restore(self, index: int, stack: np.ndarray) -> np.ndarray:
        """Put a ``(S, *spatial)`` result for input ``index`` back into its input's layout."""
        perm, canon = self.layouts[index]
        inverse = np.argsort(perm)
        out = stack.reshape(canon).transpose(inverse)
        return out if out.flags.c_contiguous else np.ascontiguousarray(out)


def default_axes(shape: Sequence[int], ndim: int = 2) -> str:
    """Guess an axes string for an array shape (``YX``, ``SYX``, ``SZYX``; 3D: ``ZYX``, ``SZYX``)."""
    nd = len(shape)
    if ndim == 3:
        if nd == 3:
            return "ZYX"
        if nd == 4:
            return "SZYX"
        raise DataError(f"cannot guess the axes of a {nd}D array {tuple(shape)} for 3D: pass axes "
                        "with a Z axis (e.g. 'ZYX' or 'TZYX')")
    if nd == 2:
        return "YX"
    if nd == 3:
        if shape[-1] in (3, 4) and shape[0] > 4:
            raise DataError(
                f"shape {tuple(shape)} looks like an RGB(A) image; DecoNoising needs single-channel "
                "fluorescence data (split the channels, or pass axes explicitly if this is a stack)"
            )
        return "SYX"
    if nd == 4:
        return "SZYX"
    raise DataError(f"cannot guess the axes of a {nd}D array {tuple(shape)}: pass axes (e.g. 'TZYX')")


def check_axes(axes: str, shape: tuple[int, ...]) -> str:
    """``axes`` in upper case, checked against ``shape``.

    Raises
    ------
    DataError
        Not one letter per dimension, a letter other than S, T, Z, C, Y, X, a letter
        twice, or no Y or no X.
    """
    axes = axes.upper()
    if len(axes) != len(shape):
        raise DataError(f"axes {axes!r} has {len(axes)} letters but the image has {len(shape)} dimensions {shape}")
    bad = set(axes) - set(AXES_LETTERS)
    if bad:
        raise DataError(f"axes {axes!r}: unknown letter(s) {''.join(sorted(bad))}; use S, T, Z, C, Y, X")
    if len(set(axes)) != len(axes):
        raise DataError(f"axes {axes!r} repeats a letter")
    if "Y" not in axes or "X" not in axes:
        raise DataError(f"axes {axes!r} must contain Y and X")
    return axes


def _layout(shape: tuple[int, ...], axes: str, ndim: int = 2) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    axes = check_axes(axes, shape)
    if ndim == 3 and "Z" not in axes:
        raise DataError(f"3D needs a Z axis, but the axes are {axes!r} (pass the axes, e.g. ZYX or TZYX)")
    if "C" in axes and shape[axes.index("C")] > 1:
        raise DataError(
            f"the image has {shape[axes.index('C')]} channels (axis C); DecoNoising works on one "
            "channel at a time: train a model per channel"
        )
    spatial = "ZYX"[-ndim:]
    rest = [i for i, a in enumerate(axes) if a not in spatial]
    perm = (*rest, *(axes.index(a) for a in spatial))
    n = int(np.prod([shape[i] for i in rest])) if rest else 1
    return perm, tuple(shape[i] for i in perm), n


def as_image_set(data: np.ndarray | Sequence[np.ndarray], axes: str | None = None,
                 ndim: int = 2) -> ImageSet:
    """Check user data and view it as a list of 2D images or 3D volumes.

    Parameters
    ----------
    data : array or list of arrays
        One image, a stack, or a list of differently-sized images/stacks, of any real
        dtype. Never modified or copied (except where a transpose forces a copy).
        Dask and zarr arrays stay lazy: their slices are dask arrays, read piece by piece.
    axes : str, optional
        Axis letters of each array (``YX``, ``SYX``, ``TYX``, ``ZYX``, ``TZYX``...). All
        axes other than the spatial ones are treated as a stack. Guessed when omitted.
    ndim : {2, 3}
        2: the spatial axes are Y, X (a Z-stack is a stack of images). 3: Z, Y, X, and
        a Z axis is required.

    Raises
    ------
    DataError
        For RGB or multichannel data, wrong dimensionality, non-numeric dtypes,
        empty arrays, a missing Z axis in 3D, or an axes string that does not fit.
    """
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    if not arrays:
        raise DataError("no images given")
    slices, shapes, layouts, counts = [], [], [], []
    for k, a in enumerate(arrays):
        a = _array_or_lazy(a)
        name = f"image {k}" if len(arrays) > 1 else "the image"
        if a.dtype.kind not in "biuf":
            raise DataError(f"{name} has dtype {a.dtype}; need real numbers (uint8, uint16, float, ...)")
        if a.ndim < ndim:
            if ndim == 3:
                raise DataError(f"3D needs a Z axis, but {name} has {a.ndim} dimension(s) {a.shape}")
            raise DataError(f"{name} has {a.ndim} dimension(s) {a.shape}; need at least 2 (Y, X)")
        if a.size == 0:
            raise DataError(f"{name} is empty {a.shape}")
        ax = axes if axes is not None else default_axes(a.shape, ndim)
        perm, canon, n = _layout(a.shape, ax, ndim)
        stack = a.transpose(perm).reshape(-1, *canon[len(canon) - ndim:])
        slices.extend(stack[i] for i in range(stack.shape[0]))
        shapes.append(a.shape)
        layouts.append((perm, canon))
        counts.append(n)
    return ImageSet(slices, shapes, layouts, counts, ndim)


def _array_or_lazy(a):
    """numpy for array-likes in memory; a dask array for lazy ones (dask, zarr), read piece by piece."""
    if isinstance(a, np.ndarray) or not hasattr(a, "shape") or not hasattr(a, "__getitem__"):
        return np.asarray(a)
    import dask.array as da

    # name=False: a random task name; hashing the content for one would read it all.
    return a if isinstance(a, da.Array) else da.from_array(a, chunks=getattr(a, "chunks", "auto"), name=False)


#: Lazy slices are reduced together up to this much input at a time (see :func:`_per_slice`).
GROUP_BYTES = 64 * 2**20


def _per_slice(slices: Sequence[np.ndarray], fn: Callable) -> list:
    """``fn(slice)`` for every slice; lazy (dask) results in passes that read each chunk once.

    Lazy slices are computed together, up to :data:`GROUP_BYTES` of input at a time: one
    dask computation for a whole time-lapse would keep many chunks in flight.
    """
    if not any(hasattr(s, "dask") for s in slices):
        return [fn(s) for s in slices]
    import dask

    out, group, size = [], [], 0
    for s in slices:
        group.append(fn(s))
        size += s.nbytes
        if size >= GROUP_BYTES:
            out.extend(dask.compute(*group))
            group, size = [], 0
    out.extend(dask.compute(*group))
    return out


def check_values(slices: Sequence[np.ndarray]) -> None:
    """Raise :class:`DataError` for NaN/inf values or data that is constant everywhere."""
    found = _per_slice(slices, lambda s: (np.isfinite(s).all() if s.dtype.kind == "f" else True, s.min(), s.max()))
    for i, (finite, _, _) in enumerate(found):
        if not finite:
            where = f" (slice {i})" if len(slices) > 1 else ""
            raise DataError(f"the image contains NaN or infinite values{where}; fill or crop them first")
    lo, hi = min(float(f[1]) for f in found), max(float(f[2]) for f in found)
    if lo == hi:
        raise DataError(f"the image is constant (every pixel is {lo:g}); there is nothing to denoise")


def normalisation_stats(slices: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean and standard deviation over all pixels, accumulated slice by slice in float64.

    Two passes over the data (mean, then spread around it), each a single pass over a
    lazy input's chunks.
    """
    sums = _per_slice(slices, lambda s: s.astype(np.float64, copy=False).sum())
    n = sum(s.size for s in slices)
    s1 = 0.0
    for v in sums:
        s1 += float(v)
    mean = s1 / n

    def spread(s):
        f = s.astype(np.float64, copy=False) - mean
        return (f * f).sum()

    s2 = 0.0
    for v in _per_slice(slices, spread):
        s2 += float(v)
    std = math.sqrt(s2 / n)
    if std == 0:
        raise DataError("the image is constant; there is nothing to denoise")
    return mean, std
