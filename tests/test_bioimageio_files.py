"""The package's sizes and test image, per spatial axis and per channel (no bioimageio needed)."""

import dataclasses

import numpy as np
import pytest

from napari_deconoising.bioimageio.files import geometry, package_test_image
from napari_deconoising.core import ChannelModels
from napari_deconoising.core.predict import tile_halos


def test_2d_geometry_is_the_same_on_every_axis(trained):
    geo = geometry(trained)
    assert geo.steps == (4, 4) and geo.halos == tile_halos(trained) and geo.axes == ("y", "x")
    assert geo.mins == (2 * geo.halo + 4,) * 2 and (geo.min, geo.step) == (geo.mins[0], 4)


def test_a_thin_stack_model_has_step_1_and_its_own_halo_along_z(trained3d):
    """No Z pooling: any number of planes above the Z minimum is valid, which is far below Y's."""
    assert not trained3d.config.pools_z()
    geo = geometry(trained3d)
    assert geo.steps == (1, 4, 4) and geo.halos == tile_halos(trained3d)
    assert geo.mins[0] == 2 * geo.halos[0] + 1 < geo.mins[1]


def test_channels_share_the_largest_halo(trained):
    wide = dataclasses.replace(trained, psf=np.pad(trained.psf, 6))  # 12 px more PSF: a larger halo
    geo = geometry(ChannelModels([trained, wide]))
    assert geo.halos == tuple(max(a, b) for a, b in zip(tile_halos(trained), tile_halos(wide)))
    assert geo.halos != tile_halos(trained)


def test_channel_test_image_is_channels_first_of_a_valid_size(trained, sample):
    pair = ChannelModels([trained, dataclasses.replace(trained, mean=trained.mean + 100)])
    geo = geometry(pair)
    synthetic = package_test_image(pair, None)
    assert synthetic.shape[0] == 2 and all((n - geo.min) % geo.step == 0 for n in synthetic.shape[1:])
    assert synthetic[1].mean() == pytest.approx(synthetic[0].mean() + 100, rel=1e-3)  # each in its units
    stack = np.stack([sample.noisy, sample.noisy + 1] * 3).reshape(3, 2, *sample.noisy.shape)  # TCYX
    with pytest.warns(UserWarning, match=r"middle plane \(T 1 of 3\)"):
        picked = package_test_image(pair, np.moveaxis(stack, 1, 3), sample_axes="TYXC")
    np.testing.assert_array_equal(picked, package_test_image(pair, stack[0]))
    with pytest.raises(ValueError, match="needs 2 channels"):
        package_test_image(pair, sample.noisy)
    with pytest.raises(ValueError, match=r"too small.*\(Y, X|too small.*YX"):
        package_test_image(pair, np.zeros((2, 20, 300), np.float32))


def test_a_stack_sample_gives_its_middle_plane_and_says_so(trained, sample):
    from napari_deconoising.core.data import DataWarning

    stack = np.stack([sample.noisy + k for k in range(5)])  # ZYX, each plane its own offset
    with pytest.warns(DataWarning, match=r"middle plane \(Z 2 of 5\) is the package's test image"):
        picked = package_test_image(trained, stack, sample_axes="ZYX")
    np.testing.assert_array_equal(picked, package_test_image(trained, stack[2]))
    with pytest.warns(DataWarning, match=r"\(axis 0 2 of 5\)"):  # axes unknown: still the middle
        package_test_image(trained, stack)


def test_a_multichannel_sample_for_a_single_channel_model_is_refused(trained, sample, recwarn):
    with pytest.raises(ValueError, match=r"has 2 channels \(axis C\) but the model is for one channel"):
        package_test_image(trained, np.stack([sample.noisy, sample.noisy]), sample_axes="CYX")
    one = package_test_image(trained, sample.noisy[None], sample_axes="CYX")  # a C axis of one is no channel axis
    np.testing.assert_array_equal(one, package_test_image(trained, sample.noisy))
    assert not recwarn.list
