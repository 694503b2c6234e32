"""Tile geometry of prediction: a grid of cores over the spatial axes, each read with a halo.

The border contract (the same for in-memory, out-of-core and Dask prediction):

* The network sees a *domain* per axis: the image, extended at its end by reflection to a
  multiple of the axis' pooling factor (edge repeat on a length-1 axis), plus ``margins``
  mirrored pixels beyond both ends (one pooling multiple, see :func:`.tile_plan.tile_margins`).
* Beyond the domain there is no halo: the network's own zero padding applies there, as
  it does at every patch border in training.
* Interior tile edges carry the full halo (the receptive radius plus the PSF's) of real
  data, so a tile's core does not depend on where the tile ends.

A tile is its core plus the halo clipped to the domain, so tiles at the border (and a
tile covering a whole axis) are smaller and tiles come in a few shapes: :meth:`TileGrid.batches`
groups equal shapes, so a batch is one forward pass. Every tile edge lies on the pooling grid
of the whole domain, so tiled prediction equals predicting the whole domain at once to float
precision. A tile cut from a lazy array (:meth:`TileGrid.read_spans`) equals the same tile
cut from the in-memory extended image (:meth:`TileGrid.extend`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TileGrid", "check_batch_size", "reflect_indices"]


def check_batch_size(batch_size: int | None) -> None:
    """Refuse a ``batch_size`` (tiles per forward pass) below 1; None is fine (from the memory budget).

    Raises
    ------
    ValueError
        ``batch_size`` < 1: no batch would run, and the outputs would keep whatever their
        memory held (uninitialised, or zeros in a new file).
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1 tile per forward pass, "
                         "or None for the default")


def reflect_indices(lo: int, hi: int, n: int, edge: bool = False) -> np.ndarray:
    """Indices into an axis of length ``n`` for positions ``lo..hi-1``, mirrored beyond its ends.

    Mirrors without repeating the border pixel, as ``numpy.pad(mode="reflect")`` does
    for any pad width, or repeats the border (``mode="edge"``) when ``edge`` or ``n == 1``.
    """
    k = np.arange(lo, hi)
    if edge or n == 1:
        return np.clip(k, 0, n - 1)
    period = 2 * (n - 1)
    k = np.abs(k) % period
    return np.where(k >= n, period - k, k)


@dataclass(frozen=True)
class TileGrid:
    """Tiles over the spatial axes (canonical order, e.g. Y, X) of one image.

    ``cores`` tile the image from the origin; a tile reads up to ``halos`` more on each
    side, clipped to the domain ``[-margin, aligned + margin)`` per axis, where
    ``aligned`` is the axis length rounded up to its pooling multiple ``mults``.
    Cores, halos and margins are multiples of ``mults``.
    """

    shape: tuple[int, ...]
    cores: tuple[int, ...]
    halos: tuple[int, ...]
    margins: tuple[int, ...]
    mults: tuple[int, ...]

    @property
    def aligned(self) -> tuple[int, ...]:
        return tuple(-(-n // m) * m for n, m in zip(self.shape, self.mults))

    def origins(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(0, n, c) for n, c in zip(self.shape, self.cores))))

    def box(self, origin: Sequence[int]) -> list[tuple[int, int]]:
        """The tile's extent per axis, ``(lo, hi)`` in image coordinates (may reach beyond the image)."""
        return [(max(o - h, -r), min(o + c + h, a + r))
                for o, c, h, r, a in zip(origin, self.cores, self.halos, self.margins, self.aligned)]

    def tile_shape(self, origin: Sequence[int]) -> tuple[int, ...]:
        return tuple(hi - lo for lo, hi in self.box(origin))

    def lengths(self, axis: int) -> list[int]:
        """The tiles' lengths along ``axis``, one per core along it."""
        zero = [0] * len(self.shape)
        return [hi - lo for lo, hi in (self.box(zero[:axis] + [o] + zero[axis + 1:])[axis]
                                       for o in range(0, self.shape[axis], self.cores[axis]))]

    def largest(self) -> tuple[int, ...]:
        """The longest tile along each axis (an upper bound of any tile's size, for memory planning)."""
        return tuple(max(self.lengths(i)) for i in range(len(self.shape)))

    def batches(self, batch_size: int) -> list[list[tuple[int, ...]]]:
        """Origins in batches of at most ``batch_size`` tiles of one shape (one forward pass each).

        Shapes come in the order they first appear, origins in grid order within a shape.
        """
        check_batch_size(batch_size)
        groups: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for o in self.origins():
            groups.setdefault(self.tile_shape(o), []).append(o)
        return [g[b:b + batch_size] for g in groups.values() for b in range(0, len(g), batch_size)]

    def read_spans(self, origin: Sequence[int]) -> tuple[list[slice], list[np.ndarray | None]]:
        """What to read for a tile: one slice per axis, then per-axis gathers (None: read as is)."""
        spans, gathers = [], []
        for (lo, hi), n in zip(self.box(origin), self.shape):
            idx = reflect_indices(lo, hi, n)
            a, b = int(idx.min()), int(idx.max()) + 1
            spans.append(slice(a, b))
            gathers.append(None if b - a == idx.size and idx[0] == a and np.all(np.diff(idx) == 1) else idx - a)
        return spans, gathers

    def domain_indices(self) -> list[np.ndarray | None]:
        """Per axis, the image indices that make up the domain (None where it is the image itself)."""
        idx = [reflect_indices(-r, a + r, n) for n, a, r in zip(self.shape, self.aligned, self.margins)]
        return [None if i.size == n and i[0] == 0 and np.all(np.diff(i) == 1) else i for i, n in zip(idx, self.shape)]

    def extend(self, image):
        """The whole domain of ``image`` (spatial axes only): tile ``origin`` is ``[lo + margin, hi + margin)``.

        ``image`` is a NumPy array or a torch tensor; a tensor is gathered on its own device.
        """
        for axis, idx in enumerate(self.domain_indices()):
            if idx is None:
                continue
            if isinstance(image, np.ndarray):
                image = np.take(image, idx, axis=axis)
            else:
                import torch  # only a tensor brings us here

                image = image.index_select(axis, torch.from_numpy(idx).to(image.device))
        return image

    def tile(self, extended: np.ndarray, origin: Sequence[int]) -> np.ndarray:
        """Tile ``origin`` cut from :meth:`extend`'s result."""
        return extended[tuple(slice(lo + r, hi + r) for (lo, hi), r in zip(self.box(origin), self.margins))]

    def extent(self, origin: Sequence[int]) -> tuple[int, ...]:
        """The part of the tile's core inside the image."""
        return tuple(min(c, n - o) for o, c, n in zip(origin, self.cores, self.shape))

    def core_in_tile(self, origin: Sequence[int]) -> tuple[slice, ...]:
        """Where :meth:`extent` lies in the tile's output."""
        return tuple(slice(o - lo, o - lo + e) for o, (lo, _), e in zip(origin, self.box(origin), self.extent(origin)))
