"""Tile geometry: the halo mirrored at the border exactly as numpy pads in-memory prediction."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_deconoising.core.tiles import TileGrid, reflect_indices


@given(n=st.integers(1, 9), lo=st.integers(1, 30), hi=st.integers(1, 30))
@settings(max_examples=60, deadline=None)
def test_reflect_indices_match_numpy_pad(n, lo, hi):
    a = np.arange(n)
    mode = "reflect" if n > 1 else "edge"
    np.testing.assert_array_equal(np.pad(a, (lo, hi), mode=mode), reflect_indices(-lo, n + hi, n))


@given(n=st.integers(1, 40), core=st.integers(1, 16), halo=st.integers(0, 12))
@settings(max_examples=60, deadline=None)
def test_tiles_cover_the_image_once_and_read_what_the_padded_image_holds(n, core, halo):
    a = np.arange(n) * 10
    grid = TileGrid((n,), (core,), (halo,), edge=n == 1)
    padded = np.pad(a, (halo, halo + (-(-n // core) * core - n)), mode="reflect" if n > 1 else "edge")
    covered = np.zeros(n, int)
    for (o,) in grid.origins():
        (span,), (gather,) = grid.read_spans((o,))
        tile = a[span] if gather is None else a[span][gather]
        np.testing.assert_array_equal(tile, padded[o:o + core + 2 * halo])
        covered[o:o + grid.extent((o,))[0]] += 1
    assert (covered == 1).all()
