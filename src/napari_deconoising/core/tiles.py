"""Tile geometry of prediction: a grid of cores over the spatial axes, each read with a halo.

The halo is mirrored at the image border exactly as ``numpy.pad(mode="reflect")`` pads
a whole image in in-memory prediction, so a tile cut from a lazy array equals the same
tile cut from the padded image.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TileGrid", "reflect_indices"]


def reflect_indices(lo: int, hi: int, n: int, edge: bool = False) -> np.ndarray:
    """Indices into an axis of length ``n`` for positions ``lo..hi-1`` beyond its ends.

    Mirrors without repeating the border pixel, as ``numpy.pad(mode="reflect")`` does
    for any pad width, or repeats the border (``mode="edge"``) when ``edge``.
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

    ``cores`` tile the image from the origin; every tile reads ``halos`` more on each
    side, mirrored at the border. ``edge`` repeats instead of mirroring (an axis of
    length 1 cannot be mirrored), matching in-memory prediction.
    """

    shape: tuple[int, ...]
    cores: tuple[int, ...]
    halos: tuple[int, ...]
    edge: bool

    def origins(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(0, n, c) for n, c in zip(self.shape, self.cores))))

    def read_spans(self, origin: Sequence[int]) -> tuple[list[slice], list[np.ndarray | None]]:
        """What to read for a tile: one slice per axis, then per-axis gathers (None: read as is)."""
        spans, gathers = [], []
        for o, c, h, n in zip(origin, self.cores, self.halos, self.shape):
            idx = reflect_indices(o - h, o + c + h, n, self.edge)
            lo, hi = int(idx.min()), int(idx.max()) + 1
            spans.append(slice(lo, hi))
            gathers.append(None if hi - lo == idx.size and idx[0] == lo and np.all(np.diff(idx) == 1)
                           else idx - lo)
        return spans, gathers

    def extent(self, origin: Sequence[int]) -> tuple[int, ...]:
        """The part of the tile's core inside the image."""
        return tuple(min(c, n - o) for o, c, n in zip(origin, self.cores, self.shape))
