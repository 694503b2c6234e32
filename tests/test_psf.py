import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from napari_deconoising.core.psf import PSFConvolution, PSFError, gaussian_psf, load_psf, prepare_psf


@settings(max_examples=30, deadline=None)
@given(sy=st.floats(0, 6), sx=st.floats(0, 6))
def test_gaussian_psf_sums_to_one_and_is_symmetric(sy, sx):
    k = gaussian_psf((sy, sx))
    assert k.dtype == np.float32
    assert abs(float(k.sum()) - 1) < 1e-5
    assert all(n % 2 == 1 for n in k.shape)
    np.testing.assert_allclose(k, k[::-1, :], atol=1e-7)
    np.testing.assert_allclose(k, k[:, ::-1], atol=1e-7)
    assert np.unravel_index(k.argmax(), k.shape) == tuple(n // 2 for n in k.shape)


def test_kernel_size_follows_sigma():
    assert gaussian_psf(1.0).shape == (9, 9)
    assert gaussian_psf((2.0, 0.5)).shape == (17, 5)
    assert gaussian_psf(1.0, ndim=3).shape == (9, 9, 9)


def test_sigma_zero_is_identity():
    k = gaussian_psf(0)
    assert k.shape == (1, 1) and k[0, 0] == 1
    conv = PSFConvolution(k)
    x = torch.randn(2, 1, 13, 17)
    assert torch.equal(conv(x), x)


def _asymmetric_kernel():
    rng = np.random.default_rng(3)
    k = rng.random((5, 7)).astype(np.float32)
    k[0, 0] = 5  # strongly asymmetric
    return k / k.sum()


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_convolution_equals_scipy_convolve_reflect(method):
    k = _asymmetric_kernel()
    img = np.random.default_rng(0).random((23, 31)).astype(np.float32)
    conv = PSFConvolution(k, method=method)
    got = conv(torch.from_numpy(img)[None, None])[0, 0].numpy()
    # scipy's "mirror" is torch's "reflect" (edge pixel not repeated)
    want = ndimage.convolve(img.astype(np.float64), k.astype(np.float64), mode="mirror")
    np.testing.assert_allclose(got, want, atol=2e-5)
    # and it is a convolution, not a correlation
    corr = ndimage.correlate(img.astype(np.float64), k.astype(np.float64), mode="mirror")
    assert np.abs(got - corr).max() > 1e-2


def test_separable_gaussian_matches_direct():
    k = gaussian_psf((1.3, 2.1))
    x = torch.randn(3, 1, 40, 37)
    sep = PSFConvolution(k, method="separable")
    direct = PSFConvolution(k, method="direct")
    torch.testing.assert_close(sep(x), direct(x), atol=1e-5, rtol=1e-5)


def test_auto_picks_fft_except_for_tiny_kernels():
    rng = np.random.default_rng(1)
    for shape in ((21, 21), (5, 5), (9, 9)):
        k = rng.random(shape).astype(np.float32)
        assert PSFConvolution(k / k.sum()).method == "fft"
    assert PSFConvolution(gaussian_psf(1.0)).method == "fft"
    assert PSFConvolution(np.full((3, 3), 1 / 9, np.float32)).method == "direct"
    with pytest.raises(PSFError, match="separable"):
        PSFConvolution(_asymmetric_kernel(), method="separable")


def test_convolution_preserves_constants_and_is_differentiable():
    conv = PSFConvolution(_asymmetric_kernel())
    x = torch.full((1, 1, 16, 16), 3.0, requires_grad=True)
    y = conv(x)
    torch.testing.assert_close(y, torch.full_like(y, 3.0))
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_convolution_works_on_images_smaller_than_kernel():
    conv = PSFConvolution(gaussian_psf(3.0))  # 25x25 kernel
    x = torch.rand(1, 1, 6, 5)
    assert conv(x).shape == x.shape


def test_prepare_psf_clips_centres_and_normalises():
    raw = np.zeros((12, 10))
    raw[3, 6] = 4.0
    raw[3, 7] = 4.0
    raw[0, 0] = -1.0  # background-subtraction noise
    psf = raw.copy()
    out = prepare_psf(psf)
    np.testing.assert_array_equal(psf, raw)  # input untouched
    assert out.min() >= 0 and abs(out.sum() - 1) < 1e-6
    assert all(n % 2 == 1 for n in out.shape)
    c = tuple(n // 2 for n in out.shape)
    assert out[c] > 0


@pytest.mark.parametrize("seed", range(4))
def test_prepare_psf_centres_a_noisy_off_centre_psf_on_its_peak(seed):
    # Clipped zero-mean noise leaves a floor over the whole box; its weight must not pull the
    # centre towards the box centre (it shifted this PSF by 2 px).
    g = gaussian_psf(1.5)
    r = g.shape[0] // 2
    raw = np.zeros((41, 41))
    raw[14 - r:14 + r + 1, 14 - r:14 + r + 1] = g / g.max()
    noisy = raw + 0.01 * np.random.default_rng(seed).standard_normal(raw.shape)
    for a in (raw, noisy):
        out = prepare_psf(a)
        assert np.unravel_index(out.argmax(), out.shape) == tuple(n // 2 for n in out.shape)


@pytest.mark.parametrize(
    "bad, msg",
    [
        (np.zeros((0, 5)), "empty"),
        (np.full((5, 5), np.nan), "NaN"),
        (np.zeros((5, 5)), "no positive"),
        (np.ones((3, 5, 5)), "dimensions"),
        (np.array([["a"]]), "real numbers"),
    ],
)
def test_prepare_psf_rejects_bad_input(bad, msg):
    with pytest.raises(PSFError, match=msg):
        prepare_psf(bad)


def test_load_psf_from_tiff(tmp_path):
    import tifffile

    k = gaussian_psf(1.5)
    tifffile.imwrite(tmp_path / "psf.tif", (k * 1000).astype(np.uint16))
    got = load_psf(tmp_path / "psf.tif")
    assert abs(got.sum() - 1) < 1e-5
    with pytest.raises(PSFError, match="not found"):
        load_psf(tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    with pytest.raises(PSFError, match="cannot read"):
        load_psf(tmp_path / "junk.tif")


# -- 3D ---------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(sz=st.floats(0, 4), sy=st.floats(0, 3), sx=st.floats(0, 3))
def test_3d_gaussian_psf_sums_to_one_and_is_centred(sz, sy, sx):
    k = gaussian_psf((sz, sy, sx), ndim=3)
    assert k.ndim == 3 and abs(float(k.sum()) - 1) < 1e-5
    assert all(n % 2 == 1 for n in k.shape)
    for ax in range(3):
        np.testing.assert_allclose(k, np.flip(k, ax), atol=1e-7)
    assert np.unravel_index(k.argmax(), k.shape) == tuple(n // 2 for n in k.shape)


def test_3d_kernel_is_anisotropic():
    assert gaussian_psf((2.0, 1.0, 1.0), ndim=3).shape == (17, 9, 9)
    assert gaussian_psf((0.0, 1.0, 1.0), ndim=3).shape == (1, 9, 9)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_3d_convolution_equals_scipy_convolve_reflect(method):
    rng = np.random.default_rng(4)
    k = rng.random((5, 3, 7)).astype(np.float32)
    k[0, 0, 0] = 4  # asymmetric
    k /= k.sum()
    vol = rng.random((9, 14, 17)).astype(np.float32)
    got = PSFConvolution(k, method=method)(torch.from_numpy(vol)[None, None])[0, 0].numpy()
    want = ndimage.convolve(vol.astype(np.float64), k.astype(np.float64), mode="mirror")
    np.testing.assert_allclose(got, want, atol=2e-5)
    corr = ndimage.correlate(vol.astype(np.float64), k.astype(np.float64), mode="mirror")
    assert np.abs(got - corr).max() > 1e-2


def test_3d_gaussian_all_methods_agree_and_preserve_constants():
    k = gaussian_psf((2.0, 1.0, 1.0), ndim=3)  # 17 planes: deeper than the volume below
    x = torch.randn(2, 1, 12, 20, 18)
    fft = PSFConvolution(k)
    assert fft.method == "fft"
    torch.testing.assert_close(fft(x), PSFConvolution(k, method="direct")(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fft(x), PSFConvolution(k, method="separable")(x), atol=1e-5, rtol=1e-5)
    want = ndimage.convolve(x[0, 0].double().numpy(), k.astype(np.float64), mode="mirror")
    np.testing.assert_allclose(fft(x)[0, 0].numpy(), want, atol=2e-5)
    c = torch.full((1, 1, 6, 10, 10), 2.0)
    torch.testing.assert_close(fft(c), c)


def test_3d_measured_psf_from_tiff_and_dimension_mismatch(tmp_path):
    import tifffile

    raw = np.zeros((11, 8, 9))
    raw[6, 3, 5] = 10.0
    raw[5, 3, 5] = raw[7, 3, 5] = 5.0
    raw[0, 0, 0] = -1.0
    tifffile.imwrite(tmp_path / "psf3d.tif", raw.astype(np.float32))
    psf = load_psf(tmp_path / "psf3d.tif", ndim=3)
    assert psf.ndim == 3 and abs(psf.sum() - 1) < 1e-6 and psf.min() >= 0
    assert psf[tuple(n // 2 for n in psf.shape)] == psf.max()
    with pytest.raises(PSFError, match="3D model needs a 3D PSF"):
        prepare_psf(gaussian_psf(1.0), ndim=3)
    with pytest.raises(PSFError, match="2D model needs a 2D PSF"):
        load_psf(tmp_path / "psf3d.tif", ndim=2)


def test_the_training_psf_follows_the_config():
    from napari_deconoising.core import TrainConfig
    from napari_deconoising.core.psf import training_psf

    g = training_psf(TrainConfig(psf_sigma=1.5))
    np.testing.assert_allclose(g, gaussian_psf(1.5))
    assert training_psf(TrainConfig(psf="none")) is None
    measured = gaussian_psf(2.0)
    assert training_psf(TrainConfig(psf="measured"), measured).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no PSF array was given"):
        training_psf(TrainConfig(psf="measured"))
    with pytest.raises(ValueError, match="use psf='measured'"):
        training_psf(TrainConfig(psf_sigma=1.0), measured)
