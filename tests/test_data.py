import numpy as np
import pytest

from napari_deconoising.core.data import (
    DataError,
    DataWarning,
    PatchSampler,
    as_image_set,
    check_values,
    fit_patch_size,
    normalisation_stats,
    split_regions,
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


def test_patch_shrinks_with_warning_or_fails():
    with pytest.warns(DataWarning, match="smaller than the patch"):
        assert fit_patch_size([np.zeros((50, 70))], 100, 8, 16) == 48
    with pytest.raises(DataError, match="too small"):
        fit_patch_size([np.zeros((10, 70))], 100, 8, 16)


def test_split_single_image_and_stack():
    tr, va = split_regions([np.zeros((300, 200))], 0.1, 64)
    assert tr[0].shape == (236, 200) and va[0].shape == (64, 200)
    tr, va = split_regions([np.zeros((64, 64))] * 20, 0.1, 64)
    assert len(tr) == 18 and len(va) == 2
    with pytest.warns(DataWarning, match="validation"):
        tr, va = split_regions([np.zeros((100, 100))], 0.1, 64)
    assert tr == va


def test_patch_sampler_normalises_augments_and_does_not_touch_data():
    rng = np.random.default_rng(0)
    img = rng.random((80, 90)).astype(np.float32) * 100
    before = img.copy()
    tr, _ = split_regions([img], 0.1, 32)
    sampler = PatchSampler([img], tr, 32, mean=50.0, std=10.0, rng=np.random.default_rng(1))
    p = sampler.sample(64)
    assert p.shape == (64, 1, 32, 32) and p.dtype == np.float32
    np.testing.assert_array_equal(img, before)
    assert abs(p.mean()) < 0.3  # roughly centred by the given mean/std
    # every patch is some rotation/flip of a crop of the training region
    crop = (p[0, 0] * 10 + 50)
    found = False
    for k in range(4):
        for flip in (False, True):
            q = np.rot90(crop, -k) if not flip else np.rot90(crop[:, ::-1], -k)
            for y in range(tr[0].y0, tr[0].y1 - 31):
                hits = np.where(np.abs(img[y, :] - q[0, 0]) < 1e-3)[0]
                for x in hits:
                    if x + 32 <= img.shape[1] and np.allclose(img[y:y + 32, x:x + 32], q, atol=1e-3):
                        found = True
    assert found
