"""Tile geometry: tiles cover the image once, stay inside the domain, and a lazy read equals the extended image."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_deconoising.core.tiles import TileGrid, reflect_indices


@given(n=st.integers(1, 9), lo=st.integers(1, 30), hi=st.integers(1, 30))
@settings(max_examples=60, deadline=None)
def test_reflect_indices_match_numpy_pad(n, lo, hi):
    a = np.arange(n)
    mode = "reflect" if n > 1 else "edge"
    np.testing.assert_array_equal(np.pad(a, (lo, hi), mode=mode), reflect_indices(-lo, n + hi, n))


@given(n=st.integers(1, 40), k=st.integers(1, 6), hk=st.integers(0, 4), rk=st.integers(0, 4),
       m=st.sampled_from([1, 2, 4]), other=st.integers(1, 5))
@settings(max_examples=80, deadline=None)
def test_tiles_cover_the_image_once_inside_the_domain(n, k, hk, rk, m, other):
    core, halo, margin = k * m, hk * m, min(rk, hk) * m
    a = np.arange(n * other).reshape(n, other) * 10
    grid = TileGrid((n, other), (core, other), (halo, 0), (margin, 0), (m, 1))
    aligned = -(-n // m) * m
    extended = grid.extend(a)
    np.testing.assert_array_equal(extended[:, 0], reflect_indices(-margin, aligned + margin, n) * other * 10)
    covered = np.zeros(n, int)
    for o in grid.origins():
        (lo, hi), _ = grid.box(o)
        assert -margin <= lo and hi <= aligned + margin and lo % m == 0 and hi % m == 0  # on the pooling grid
        assert lo in (-margin, o[0] - halo) and hi in (aligned + margin, o[0] + core + halo)  # full halo inside
        spans, gathers = grid.read_spans(o)
        tile = a[tuple(spans)]
        for axis, g in enumerate(gathers):
            if g is not None:
                tile = np.take(tile, g, axis=axis)
        np.testing.assert_array_equal(tile, grid.tile(extended, o))  # lazy read == in-memory
        assert tile.shape == grid.tile_shape(o) and all(s <= b for s, b in zip(tile.shape, grid.largest()))
        e = grid.extent(o)[0]
        np.testing.assert_array_equal(tile[grid.core_in_tile(o)], a[o[0]:o[0] + e])
        covered[o[0]:o[0] + e] += 1
    assert (covered == 1).all()


@given(ny=st.integers(1, 60), nx=st.integers(1, 60), batch=st.integers(1, 5))
@settings(max_examples=40, deadline=None)
def test_batches_hold_one_shape_and_every_tile_once(ny, nx, batch):
    grid = TileGrid((ny, nx), (8, 12), (4, 4), (0, 0), (4, 4))
    batches = grid.batches(batch)
    assert sorted(o for b in batches for o in b) == sorted(grid.origins())
    for b in batches:
        assert 1 <= len(b) <= batch and len({grid.tile_shape(o) for o in b}) == 1
    assert len(batches) <= len({grid.tile_shape(o) for o in grid.origins()}) + len(grid.origins()) // batch


def test_a_thin_axis_is_one_tile_without_halo():
    grid = TileGrid((32, 256, 256), (32, 128, 128), (18, 36, 36), (0, 0, 0), (1, 4, 4))
    assert len(grid.origins()) == 4
    assert {grid.tile_shape(o) for o in grid.origins()} == {(32, 164, 164)}


def test_a_batch_size_below_one_is_refused():
    grid = TileGrid((32, 32), (8, 8), (4, 4), (0, 0), (4, 4))
    for batch in (0, -2):
        with pytest.raises(ValueError, match=f"batch_size={batch}: must be at least 1"):
            grid.batches(batch)
