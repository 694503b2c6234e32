import numpy as np
import pytest

from napari_deconoising.core.data import (
    DataError,
    as_image_set,
    check_values,
    normalisation_stats,
)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_accepts_real_dtypes(dtype):
    a = (np.random.default_rng(0).random((20, 30)) * 200).astype(dtype)
    s = as_image_set(a)
    assert len(s.slices) == 1 and s.slices[0].shape == (20, 30)
    assert np.shares_memory(s.slices[0], a)  # a view, not a copy


def test_axes_and_restore():
    a = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    s = as_image_set(a, "TYXZ")  # odd order: Z last
    assert len(s.slices) == 10 and s.slices[0].shape == (3, 4)
    stack = np.stack(s.slices)
    np.testing.assert_array_equal(s.restore(0, stack), a)
    assert len(as_image_set(np.zeros((3, 8, 8)) + np.arange(3)[:, None, None]).slices) == 3


def test_list_of_differently_sized_images():
    s = as_image_set([np.ones((10, 12)), np.ones((3, 20, 7))])
    assert [x.shape for x in s.slices] == [(10, 12), (20, 7), (20, 7), (20, 7)]
    assert s.counts == [1, 3]


@pytest.mark.parametrize("data, axes, msg", [
    (np.zeros((64, 64, 3)), None, "RGB"),
    (np.zeros((2, 64, 64)), "CYX", "channels"),
    (np.zeros((64,)), None, "at least 2"),
    (np.zeros((4, 4, 4, 4, 4)), None, "axes"),
    (np.zeros((4, 8, 8)), "YX", "3 dimensions"),
    (np.zeros((4, 8, 8)), "SYQ", "Y and X"),
    (np.zeros((4, 8, 8)), "SYW", "unknown"),
    (np.array([[1 + 1j]]), None, "dtype"),
    (np.zeros((0, 8)), None, "empty"),
])
def test_bad_shapes_are_refused(data, axes, msg):
    with pytest.raises(DataError, match=msg):
        as_image_set(data, axes)


def test_nan_and_constant_are_refused():
    a = np.ones((16, 16), np.float32)
    with pytest.raises(DataError, match="constant"):
        check_values([a])
    a[3, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        check_values([a])


def test_normalisation_matches_numpy():
    rng = np.random.default_rng(0)
    imgs = [rng.normal(5, 2, (30, 40)).astype(np.float32), rng.normal(7, 1, (10, 10)).astype(np.float32)]
    m, s = normalisation_stats(imgs)
    allpix = np.concatenate([i.ravel() for i in imgs]).astype(np.float64)
    assert m == pytest.approx(allpix.mean()) and s == pytest.approx(allpix.std())


# -- 3D ---------------------------------------------------------------------------------------

def test_3d_views_volumes_without_copying():
    a = np.random.default_rng(0).random((5, 6, 20, 30)).astype(np.float32)  # TZYX
    s = as_image_set(a, "TZYX", ndim=3)
    assert s.ndim == 3 and len(s.slices) == 5 and s.slices[0].shape == (6, 20, 30)
    assert all(np.shares_memory(v, a) for v in s.slices)  # a time-lapse is never copied
    np.testing.assert_array_equal(s.restore(0, np.stack(s.slices)), a)
    assert as_image_set(a[0], ndim=3).slices[0].shape == (6, 20, 30)  # ZYX guessed


def test_3d_odd_axis_order_restores():
    a = np.arange(3 * 4 * 5 * 6).reshape(3, 4, 5, 6)
    s = as_image_set(a, "YZXS", ndim=3)
    assert len(s.slices) == 6 and s.slices[0].shape == (4, 3, 5)
    np.testing.assert_array_equal(s.slices[2], a[..., 2].transpose(1, 0, 2))
    np.testing.assert_array_equal(s.restore(0, np.stack(s.slices)), a)


@pytest.mark.parametrize("data, axes, msg", [
    (np.zeros((3, 20, 20)), "SYX", "needs a Z axis"),
    (np.zeros((20, 20)), None, "needs a Z axis"),
    (np.zeros((2, 2, 3, 20, 20)), None, "cannot guess"),
])
def test_3d_bad_input(data, axes, msg):
    with pytest.raises(DataError, match=msg):
        as_image_set(data, axes, ndim=3)
