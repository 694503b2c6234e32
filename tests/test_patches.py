import numpy as np
import pytest

from napari_deconoising.core.data import DataError, DataWarning
from napari_deconoising.core.patches import (
    VALIDATION_VOXELS,
    PatchSampler,
    fit_patch_size,
    split_regions,
    validation_patch_count,
)


def test_patch_shrinks_with_warning_or_fails():
    with pytest.warns(DataWarning, match="smaller than the patch"):
        assert fit_patch_size([np.zeros((50, 70))], 100, 8, 16) == 48
    with pytest.raises(DataError, match="too small"):
        fit_patch_size([np.zeros((10, 70))], 100, 8, 16)


def test_an_image_as_large_as_the_minimum_is_used_even_off_the_pooling_multiple():
    # 23 px rounds down to 16 for depth 3, below the 21 px a mask radius of 10 needs: 21 it is
    with pytest.warns(DataWarning, match="using 21 px"):
        assert fit_patch_size([np.zeros((23, 40))], 32, 8, 21) == 21
    with pytest.warns(DataWarning, match="using 21 px"):
        assert fit_patch_size([np.zeros((23, 40))], (32, 32), 8, 21) == (21, 32)
    with pytest.raises(DataError, match="smaller depth or mask radius"):
        fit_patch_size([np.zeros((20, 40))], 32, 8, 21)


def test_split_single_image_and_stack():
    tr, va = split_regions([np.zeros((300, 200))], 0.1, 64)
    assert tr[0].shape == (236, 200) and va[0].shape == (64, 200)
    tr, va = split_regions([np.zeros((64, 64))] * 20, 0.1, 64)
    assert len(tr) == 18 and len(va) == 2
    with pytest.warns(DataWarning, match="validation"):
        tr, va = split_regions([np.zeros((100, 100))], 0.1, 64)
    assert tr == va


@pytest.mark.parametrize("patch", [(16, 64, 64), (8, 32, 32), (32, 128, 128), (100, 100), (64, 64), (512, 512), (4, 4)])
@pytest.mark.parametrize("batch", [1, 4, 20, 64, 200])
@pytest.mark.parametrize("voxels", [0, 2**16, 2**20])
def test_validation_holds_a_batch_or_enough_voxels_and_at_most_64_patches(patch, batch, voxels):
    n = validation_patch_count(patch, batch, voxels)
    per_patch = int(np.prod(patch))
    assert 1 <= n <= 64
    assert n >= min(batch, 64)  # never fewer than a batch
    assert n * per_patch >= voxels or n == 64  # the voxels asked for, where 64 patches allow it
    assert (n - 1) * per_patch < voxels or n == min(batch, 64)  # and no more than needed


def test_the_engine_validates_on_about_a_million_voxels():
    assert VALIDATION_VOXELS == 2**20
    assert validation_patch_count((16, 64, 64), 4) == 16  # one batch (before stop 12) was 4
    assert validation_patch_count((16, 64, 64), 20) == 20  # the 3D default: still a batch
    assert validation_patch_count((100, 100), 20) == 64  # the 2D default: was 20
    assert validation_patch_count((16, 64, 64), 4, min_voxels=0) == 4  # one batch


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


# -- 3D ---------------------------------------------------------------------------------------

def test_3d_patch_fits_each_axis_on_its_own():
    vol = [np.zeros((12, 80, 90))]
    with pytest.warns(DataWarning, match="along Z"):
        assert fit_patch_size(vol, (16, 64, 64), (1, 4, 4), (5, 8, 8)) == (12, 64, 64)
    with pytest.warns(DataWarning, match="along Z"):
        assert fit_patch_size(vol, (16, 64, 64), 4, 8) == (12, 64, 64)  # 12 is a multiple of 4
    with pytest.raises(DataError, match="along Z"):
        fit_patch_size([np.zeros((4, 80, 90))], (16, 64, 64), 1, (5, 8, 8))


def test_3d_split_cuts_y_or_x_never_z():
    tr, va = split_regions([np.zeros((8, 200, 300))], 0.1, (8, 32, 32))
    assert tr[0].shape == (8, 200, 268) and va[0].shape == (8, 200, 32)
    assert va[0].lo == (0, 0, 268)
    tr, va = split_regions([np.zeros((8, 32, 32))] * 10, 0.2, (8, 32, 32))  # TZYX: last volumes held out
    assert [r.index for r in va] == [8, 9] and len(tr) == 8


def _coordinates(shape):
    z, y, x = np.indices(shape)
    return (z * 10_000 + y * 100 + x).astype(np.float32)


@pytest.mark.parametrize("patch", [(4, 16, 16), (4, 8, 16)])
def test_3d_sampler_flips_every_axis_and_rotates_only_yx(patch):
    vol = _coordinates((10, 40, 50))
    tr, _ = split_regions([vol], 0.1, patch)
    s = PatchSampler([vol], tr, patch, mean=0.0, std=1.0, rng=np.random.default_rng(0))
    p = s.sample(200)[:, 0]
    assert p.shape == (200, *patch)
    z, y, x = p // 10_000, (p // 100) % 100, p % 100
    # Z stays on axis 0: constant across Y and X, consecutive along Z (maybe reversed)
    assert (z == z[:, :, :1, :1]).all()
    dz = np.diff(z[:, :, 0, 0], axis=1)
    assert set(np.unique(dz)) == {-1, 1}  # both orientations occur
    # Y and X: each patch axis walks along exactly one image axis, both ways over the batch
    walks = set()
    for q_y, q_x in zip(y, x):
        for ax in (1, 2):
            step = (np.diff(q_y[0], axis=ax - 1).ravel()[0], np.diff(q_x[0], axis=ax - 1).ravel()[0])
            walks.add((ax, int(step[0]), int(step[1])))
    rotated = any(step[0] != 0 for ax, *step in walks if ax == 2)  # patch X walks along image Y
    assert rotated == (patch[1] == patch[2])
    assert {(1, 1, 0), (1, -1, 0)} <= walks or {(2, 0, 1), (2, 0, -1)} <= walks
    # every value comes from the training region
    assert (x[..., :] < tr[0].x1).all() and (y < tr[0].y1).all()
