"""Training patches: fitting their size to the data, the validation split, sampling."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .config import TrainConfig
from .data import DataError, DataWarning

__all__ = ["Region", "fit_patch_size", "fit_patch_to_data", "split_regions", "validation_patch_count",
           "PatchSampler"]


@dataclass(frozen=True)
class Region:
    """The box ``lo[a]:hi[a]`` (per spatial axis) of slice ``index`` that patches may come from."""

    index: int
    lo: tuple[int, ...]
    hi: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(h - lo for lo, h in zip(self.lo, self.hi))

    # Rows and columns, as in 2D.
    y0 = property(lambda self: self.lo[-2])
    y1 = property(lambda self: self.hi[-2])
    x0 = property(lambda self: self.lo[-1])
    x1 = property(lambda self: self.hi[-1])


def _warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


def _per_axis(patch: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    return tuple(int(p) for p in patch) if isinstance(patch, (tuple, list)) else (int(patch),) * ndim


def fit_patch_size(slices: Sequence[np.ndarray], patch_size: int | Sequence[int],
                   multiple: int | Sequence[int], minimum: int | Sequence[int],
                   warn: Callable[[str], None] = _warn) -> int | tuple[int, ...]:
    """The patch size to use: ``patch_size``, or smaller (with a warning) for small images.

    An ``int`` asks for square (cubic) patches and gets an ``int`` back, fitted to the
    shortest side of any slice. A tuple has one size per spatial axis, each with its
    own ``multiple`` and ``minimum`` (ints apply to every axis), and each axis is
    fitted on its own; a tuple comes back. ``warn`` receives the warning text
    (default: a :class:`DataWarning`).
    """
    if not isinstance(patch_size, (tuple, list)):
        smallest = min(min(s.shape) for s in slices)
        if smallest >= patch_size:
            return patch_size
        if smallest < minimum:
            raise DataError(
                f"the image is too small ({smallest} px along its shorter side); the network needs at "
                f"least {minimum} px (use a smaller depth or mask radius)"
            )
        # A multiple of the pooling factor wastes no padding; the U-Net pads any other size itself.
        fitted = max((smallest // multiple) * multiple, minimum)
        warn(f"the image ({smallest} px) is smaller than the patch size {patch_size}; using {fitted} px patches")
        return fitted
    nd = len(patch_size)
    mults, mins = _per_axis(multiple, nd), _per_axis(minimum, nd)
    out = []
    for a, (p, m, lo) in enumerate(zip(patch_size, mults, mins)):
        name = "ZYX"[a - nd]
        smallest = min(s.shape[a] for s in slices)
        if smallest >= p:
            out.append(int(p))
            continue
        if smallest < lo:
            raise DataError(f"the image is too small along {name} ({smallest} px); the network needs at "
                            f"least {lo} px there (use a smaller depth or mask radius)")
        fitted = max((smallest // m) * m, lo)
        warn(f"the image ({smallest} px along {name}) is smaller than the patch size {p}; using {fitted} px "
             f"patches along {name}")
        out.append(fitted)
    return tuple(out)


def fit_patch_to_data(slices: Sequence[np.ndarray], config: TrainConfig,
                      warn: Callable[[str], None] = _warn) -> tuple[tuple[int, ...], TrainConfig]:
    """The patch shape for ``config`` on this data, and the config with ``pool_z`` settled.

    In 3D, whether Z is pooled is decided from the Z patch size actually available
    (see ``TrainConfig.pool_z``) and recorded, so a saved model rebuilds the same net.
    """
    m = 2**config.depth
    smallest = 2 * config.mask_radius + 1
    if config.ndim == 2 and not isinstance(config.patch_size, tuple):
        p = fit_patch_size(slices, config.patch_size, m, max(2 * m, smallest), warn=warn)
        return (p, p), config
    want = config.patch_per_axis
    if config.ndim == 3:
        z_avail = min(want[0], min(s.shape[0] for s in slices))
        config = config.replace(pool_z=config.pools_z(z_avail))
    mults = [m] * config.ndim
    mins = [max(2 * m, smallest)] * config.ndim
    if not config.pools_z():
        mults[0], mins[0] = 1, smallest
    return fit_patch_size(slices, want, mults, mins, warn=warn), config


#: Voxels the validation patches hold together, at the least (where 64 patches allow it).
VALIDATION_VOXELS = 2**20


def validation_patch_count(patch_shape: Sequence[int], batch_size: int,
                           min_voxels: int = VALIDATION_VOXELS) -> int:
    """How many validation patches to draw: enough for ``min_voxels``, at least a batch, at most 64.

    The validation loss is a mean over blind spots of (prediction - noisy value)**2, where the
    noise dominates, and it picks the epoch that is kept. One batch (the rule before) held
    about 8,000 spots for a 3D batch of four 16 x 64 x 64 patches, few enough to prefer an
    epoch 2 dB worse than the last. About 2**20 voxels (16 such patches; 64 of 64**2 or 100**2
    in 2D) gained 0.36 dB on every one of twelve 2D runs and 0.30 dB on average over ten 3D
    runs (docs/benchmarks.md, "a validation set sized by voxels"). ``min_voxels=0`` is one batch.
    """
    per_patch = math.prod(int(n) for n in patch_shape)
    return max(1, min(64, max(int(batch_size), math.ceil(min_voxels / per_patch))))


def split_regions(slices: Sequence[np.ndarray], val_fraction: float, patch: int | Sequence[int],
                  warn: Callable[[str], None] = _warn) -> tuple[list[Region], list[Region]]:
    """Split the data into training and validation regions.

    With several slices (images, or volumes in 3D) the last ``val_fraction`` of them
    (at least one) are held out. A single one is cut along its longer side (Y or X;
    never Z, which is often thin) into a training part and a validation strip of at
    least one patch. If it is too small for that, both use all of it (with a warning).
    """
    nd = slices[0].ndim
    size = _per_axis(patch, nd)
    usable = [i for i, s in enumerate(slices) if all(n >= p for n, p in zip(s.shape, size))]
    full = [Region(i, (0,) * nd, slices[i].shape) for i in usable]
    if len(usable) >= 2:
        n_val = min(len(usable) - 1, max(1, round(val_fraction * len(usable))))
        return full[:-n_val], full[-n_val:]
    (i,) = usable
    shape = slices[i].shape
    ax = nd - 2 if shape[-2] >= shape[-1] else nd - 1
    length, p = shape[ax], size[ax]
    cut = max(p, math.ceil(val_fraction * length))
    if length - cut < p:
        warn(
            f"the image ({'x'.join(map(str, shape))}) is too small to hold out a separate validation part for "
            f"{'x'.join(map(str, size))} px patches; validation uses the training image, so it cannot detect "
            "overfitting"
        )
        return full, full
    split_hi = tuple(length - cut if a == ax else n for a, n in enumerate(shape))
    split_lo = tuple(length - cut if a == ax else 0 for a in range(nd))
    return [Region(i, (0,) * nd, split_hi)], [Region(i, split_lo, shape)]


def _materialise(patches: list) -> list[np.ndarray]:
    """Patches as numpy; lazy ones in one dask pass (a chunk shared by patches is read once)."""
    if not any(hasattr(p, "dask") for p in patches):
        return patches
    import dask

    return list(dask.compute(*patches, scheduler="synchronous"))


class PatchSampler:
    """Random patches, normalised and augmented, drawn on the fly.

    Only the requested patches are ever materialised, so memory does not grow with
    the length of a time-lapse. Augmentation draws one of the symmetries of the patch
    in Y and X (the 8 of the square: rotations by 90 degrees, with or without a
    mirror; only the 4 with 180-degree rotations for a non-square patch) and, in 3D,
    a flip along Z. Z is never rotated into Y or X: its sampling usually differs.

    Parameters
    ----------
    slices : sequence of numpy.ndarray
        The 2D images or 3D volumes.
    regions : sequence of Region
        Where patches may come from.
    patch : int or tuple of int
        Patch size, one for all axes or one per axis.
    """

    def __init__(self, slices: Sequence[np.ndarray], regions: Sequence[Region], patch: int | Sequence[int],
                 mean: float, std: float, rng: np.random.Generator, augment: bool = True) -> None:
        self.slices, self.regions = slices, list(regions)
        self.patch = _per_axis(patch, slices[self.regions[0].index].ndim)
        self.mean, self.std, self.rng, self.augment = mean, std, rng, augment
        # Pick regions in proportion to how many patch positions they hold.
        counts = np.array([np.prod([n - p + 1 for n, p in zip(r.shape, self.patch)]) for r in self.regions],
                          float)
        self.weights = counts / counts.sum()

    def sample(self, n: int, rows: Sequence[int] | None = None) -> np.ndarray:
        """Return ``n`` patches as a float32 array of shape ``(n, 1, *patch)``.

        With ``rows``, all ``n`` positions are drawn (the random stream advances as for
        ``n``) but only those patches are read and returned, in that order: each
        process of a data-parallel run reads its share of one batch.
        """
        size = self.patch
        square = size[-1] == size[-2]
        keep = range(n) if rows is None else [int(r) for r in rows]
        out = np.empty((len(keep), 1, *size), dtype=np.float32)
        which = self.rng.choice(len(self.regions), size=n, p=self.weights)
        raw, moves = [], []
        for r_i in which:
            r = self.regions[r_i]
            start = [lo + int(self.rng.integers(0, m - p + 1)) for lo, m, p in zip(r.lo, r.shape, size)]
            raw.append(self.slices[r.index][tuple(slice(a, a + p) for a, p in zip(start, size))])
            move = (0, False, False)
            if self.augment:
                k = int(self.rng.integers(0, 4)) if square else 2 * int(self.rng.integers(0, 2))
                mirror = bool(self.rng.integers(0, 2))
                flip_z = len(size) == 3 and bool(self.rng.integers(0, 2))
                move = (k, mirror, flip_z)
            moves.append(move)
        raw, moves = [raw[i] for i in keep], [moves[i] for i in keep]
        for j, (patch, (k, mirror, flip_z)) in enumerate(zip(_materialise(raw), moves)):
            patch = np.rot90(patch, k, axes=(-2, -1))
            if mirror:
                patch = patch[..., ::-1]
            if flip_z:
                patch = patch[::-1]
            out[j, 0] = patch
        out -= self.mean
        out /= self.std
        return out
