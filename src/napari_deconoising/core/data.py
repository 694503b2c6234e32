"""Turning user arrays into training patches: checks, normalisation, sampling."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DataError",
    "DataWarning",
    "ImageSet",
    "as_image_set",
    "default_axes",
    "normalisation_stats",
    "PatchSampler",
    "split_regions",
]

AXES_LETTERS = "STCZYXQ"


class DataError(ValueError):
    """The input images cannot be used (wrong shape, NaN, constant, RGB, ...)."""


class DataWarning(UserWarning):
    """The input was usable only after an adjustment (e.g. a smaller patch)."""


@dataclass
class ImageSet:
    """Images as a list of 2D views plus what is needed to restore the layout.

    Attributes
    ----------
    slices : list of numpy.ndarray
        2D views (Y, X) into the caller's arrays; never written to.
    shapes : list of tuple
        Original shape of each input array.
    layouts : list of tuple
        ``(perm, canonical_shape)`` per input array: transposing the array by
        ``perm`` and reshaping to ``(-1, Y, X)`` gives its slices.
    counts : list of int
        Number of slices per input array.
    """

    slices: list[np.ndarray]
    shapes: list[tuple[int, ...]]
    layouts: list[tuple[tuple[int, ...], tuple[int, ...]]]
    counts: list[int]

    def restore(self, index: int, stack: np.ndarray) -> np.ndarray:
        """Put a ``(S, Y, X)`` result for input ``index`` back into its input's layout."""
        perm, canon = self.layouts[index]
        inverse = np.argsort(perm)
        out = stack.reshape(canon).transpose(inverse)
        return out if out.flags.c_contiguous else np.ascontiguousarray(out)


def default_axes(shape: Sequence[int]) -> str:
    """Guess an axes string for an array shape (``YX``, ``SYX``, ``SZYX``)."""
    nd = len(shape)
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


def _layout(shape: tuple[int, ...], axes: str) -> tuple[tuple[int, ...], tuple[int, ...], int]:
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
    if "C" in axes and shape[axes.index("C")] > 1:
        raise DataError(
            f"the image has {shape[axes.index('C')]} channels (axis C); DecoNoising works on one "
            "channel at a time: train a model per channel"
        )
    rest = [i for i, a in enumerate(axes) if a not in "YX"]
    perm = (*rest, axes.index("Y"), axes.index("X"))
    h, w = shape[axes.index("Y")], shape[axes.index("X")]
    n = int(np.prod([shape[i] for i in rest])) if rest else 1
    return perm, (*[shape[i] for i in rest], h, w) if rest else (h, w), n


def as_image_set(data: np.ndarray | Sequence[np.ndarray], axes: str | None = None) -> ImageSet:
    """Check user data and view it as a list of 2D images.

    Parameters
    ----------
    data : array or list of arrays
        One image, a stack, or a list of differently-sized images/stacks, of any real
        dtype. Never modified or copied (except where a transpose forces a copy).
        Dask and zarr arrays stay lazy: their slices are dask arrays, read piece by piece.
    axes : str, optional
        Axis letters of each array (``YX``, ``SYX``, ``TYX``, ``ZYX``, ``TZYX``...). All
        axes other than Y and X are treated as a stack of 2D images. Guessed when
        omitted.

    Raises
    ------
    DataError
        For RGB or multichannel data, wrong dimensionality, non-numeric dtypes,
        empty arrays, or an axes string that does not fit.
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
        if a.ndim < 2:
            raise DataError(f"{name} has {a.ndim} dimension(s) {a.shape}; need at least 2 (Y, X)")
        if a.size == 0:
            raise DataError(f"{name} is empty {a.shape}")
        ax = axes if axes is not None else default_axes(a.shape)
        perm, canon, n = _layout(a.shape, ax)
        stack = a.transpose(perm).reshape(-1, canon[-2], canon[-1])
        slices.extend(stack[i] for i in range(stack.shape[0]))
        shapes.append(a.shape)
        layouts.append((perm, canon))
        counts.append(n)
    return ImageSet(slices, shapes, layouts, counts)


def _array_or_lazy(a):
    """numpy for array-likes in memory; a dask array for lazy ones (dask, zarr), read piece by piece."""
    if isinstance(a, np.ndarray) or not hasattr(a, "shape") or not hasattr(a, "__getitem__"):
        return np.asarray(a)
    import dask.array as da

    # name=False: a random task name; hashing the content for one would read it all.
    return a if isinstance(a, da.Array) else da.from_array(a, chunks=getattr(a, "chunks", "auto"), name=False)


def _materialise(patches: list) -> list[np.ndarray]:
    """Patches as numpy; lazy ones in one dask pass (a chunk shared by patches is read once)."""
    if not any(hasattr(p, "dask") for p in patches):
        return patches
    import dask

    return list(dask.compute(*patches, scheduler="synchronous"))


def _per_slice(slices: Sequence[np.ndarray], fn: Callable) -> list:
    """``fn(slice)`` for every slice; lazy (dask) results in one pass that reads each chunk once."""
    out = [fn(s) for s in slices]
    if any(hasattr(v, "dask") for o in out for v in (o if isinstance(o, tuple) else (o,))):
        import dask

        out = list(dask.compute(*out))
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


@dataclass(frozen=True)
class Region:
    """Rows ``y0:y1`` and columns ``x0:x1`` of slice ``index`` that patches may come from."""

    index: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def _warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


def fit_patch_size(slices: Sequence[np.ndarray], patch_size: int, multiple: int, minimum: int,
                   warn: Callable[[str], None] = _warn) -> int:
    """The patch size to use: ``patch_size``, or smaller (with a warning) for small images.

    ``warn`` receives the warning text (default: a :class:`DataWarning`).
    """
    smallest = min(min(s.shape) for s in slices)
    if smallest >= patch_size:
        return patch_size
    fitted = (smallest // multiple) * multiple
    if fitted < minimum:
        raise DataError(
            f"the image is too small ({smallest} px along its shorter side); the network needs at "
            f"least {minimum} px (use a smaller depth)"
        )
    warn(f"the image ({smallest} px) is smaller than the patch size {patch_size}; using {fitted} px patches")
    return fitted


def split_regions(slices: Sequence[np.ndarray], val_fraction: float, patch: int,
                  warn: Callable[[str], None] = _warn) -> tuple[list[Region], list[Region]]:
    """Split the data into training and validation regions.

    With several slices the last ``val_fraction`` of the slices (at least one) are held
    out. A single image is cut along its longer axis into a training part and a
    validation strip of at least one patch. If the image is too small for that, both
    use the whole image (with a warning).
    """
    usable = [i for i, s in enumerate(slices) if min(s.shape) >= patch]
    full = [Region(i, 0, slices[i].shape[0], 0, slices[i].shape[1]) for i in usable]
    if len(usable) >= 2:
        n_val = min(len(usable) - 1, max(1, round(val_fraction * len(usable))))
        return full[:-n_val], full[-n_val:]
    (i,) = usable
    h, w = slices[i].shape
    length = max(h, w)
    cut = max(patch, math.ceil(val_fraction * length))
    if length - cut < patch:
        warn(
            f"the image ({h}x{w}) is too small to hold out a separate validation part for "
            f"{patch} px patches; validation uses the training image, so it cannot detect overfitting"
        )
        return full, full
    if h >= w:
        return [Region(i, 0, h - cut, 0, w)], [Region(i, h - cut, h, 0, w)]
    return [Region(i, 0, h, 0, w - cut)], [Region(i, 0, h, w - cut, w)]


class PatchSampler:
    """Random square patches, normalised and augmented, drawn on the fly.

    Only the requested patches are ever materialised, so memory does not grow with
    the length of a time-lapse. Augmentation draws one of the 8 symmetries of the
    square (rotations by 90 degrees, with or without a mirror).
    """

    def __init__(self, slices: Sequence[np.ndarray], regions: Sequence[Region], patch: int,
                 mean: float, std: float, rng: np.random.Generator, augment: bool = True) -> None:
        self.slices, self.regions, self.patch = slices, list(regions), patch
        self.mean, self.std, self.rng, self.augment = mean, std, rng, augment
        # Pick regions in proportion to how many patch positions they hold.
        area = np.array([(r.shape[0] - patch + 1) * (r.shape[1] - patch + 1) for r in self.regions], float)
        self.weights = area / area.sum()

    def sample(self, n: int, rows: Sequence[int] | None = None) -> np.ndarray:
        """Return ``n`` patches as a float32 array of shape ``(n, 1, patch, patch)``.

        With ``rows``, all ``n`` positions are drawn (the random stream advances as for
        ``n``) but only those patches are read and returned, in that order: each
        process of a data-parallel run reads its share of one batch.
        """
        p = self.patch
        keep = range(n) if rows is None else [int(r) for r in rows]
        out = np.empty((len(keep), 1, p, p), dtype=np.float32)
        which = self.rng.choice(len(self.regions), size=n, p=self.weights)
        raw, moves = [], []
        for r_i in which:
            r = self.regions[r_i]
            y = r.y0 + int(self.rng.integers(0, r.shape[0] - p + 1))
            x = r.x0 + int(self.rng.integers(0, r.shape[1] - p + 1))
            raw.append(self.slices[r.index][y:y + p, x:x + p])
            moves.append((int(self.rng.integers(0, 4)), bool(self.rng.integers(0, 2))) if self.augment else (0, False))
        raw, moves = [raw[i] for i in keep], [moves[i] for i in keep]
        for j, (patch, (k, mirror)) in enumerate(zip(_materialise(raw), moves)):
            patch = np.rot90(patch, k)
            out[j, 0] = patch[:, ::-1] if mirror else patch
        out -= self.mean
        out /= self.std
        return out
