import numpy as np
from scipy import ndimage

from napari_deconoising.core import psnr
from napari_deconoising.core.sample3d import make_phantom_3d, make_sample_3d


def test_sample_is_its_phantom_blurred_plus_noise():
    s = make_sample_3d((12, 40, 48), sigma=(2.0, 1.0, 1.0), seed=1)
    assert s.noisy.shape == s.clean.shape == s.phantom.shape == (12, 40, 48)
    assert s.noisy.dtype == s.clean.dtype == s.phantom.dtype == np.float32
    assert s.sigma == (2.0, 1.0, 1.0)
    want = ndimage.gaussian_filter(s.phantom.astype(np.float64), (2.0, 1.0, 1.0), mode="mirror")
    np.testing.assert_allclose(s.clean, want, rtol=1e-5, atol=1e-4)
    resid = s.noisy - s.clean
    assert abs(resid.mean()) < 0.5  # Poisson and read noise are unbiased
    # shot noise: brighter voxels are noisier
    bright = s.clean > np.percentile(s.clean, 99)
    dim = s.clean <= np.percentile(s.clean, 50)
    assert resid[bright].var() > resid[dim].var()
    assert 10 < psnr(s.clean, s.noisy) < 35


def test_phantom_is_reproducible_and_has_structure():
    a = make_phantom_3d((8, 32, 32), seed=5)
    np.testing.assert_array_equal(a, make_phantom_3d((8, 32, 32), seed=5))
    assert not np.array_equal(a, make_phantom_3d((8, 32, 32), seed=6))
    assert a.min() >= 0.05 and a.max() <= 1.05
    assert 0.001 < (a > 0.3).mean() < 0.2  # sparse bright structures on a dim background
