"""The Wiener-preconditioned phantom: the filter's laws, and the network that uses it."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from napari_deconoising.core import DecoNoisingNet, gaussian_psf, prepare_psf
from napari_deconoising.core.precondition import WIENER_REACH, wiener_kernel, wiener_radius


def _transfer(kernel, size):
    """DFT of a centred kernel on a ``size`` grid (real and even for a symmetric kernel)."""
    k = np.zeros(size)
    k[tuple(slice(0, n) for n in kernel.shape)] = kernel
    return np.fft.fftn(np.roll(k, [-(n // 2) for n in kernel.shape], axis=tuple(range(k.ndim))))


@given(sigma=st.floats(0.5, 3.0), eps=st.sampled_from([0.1, 0.01, 0.001]), ndim=st.sampled_from([2, 3]))
@settings(max_examples=20, deadline=None)
def test_a_flat_image_passes_unchanged_and_the_size_follows_the_psf(sigma, eps, ndim):
    psf = gaussian_psf(sigma, ndim=ndim)
    w = wiener_kernel(psf, eps)
    assert w.dtype == np.float32
    assert w.shape == tuple(2 * WIENER_REACH * (n // 2) + 1 for n in psf.shape)
    assert w.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(w, np.flip(w), atol=1e-6)  # a symmetric PSF, a symmetric filter


@pytest.mark.parametrize("sigma,ndim", [((2.0, 1.0, 1.0), 3), (1.0, 2), (2.5, 2)])
@pytest.mark.parametrize("eps", [0.1, 0.01])
def test_psf_then_filter_is_the_regularised_identity(sigma, ndim, eps):
    """h * w has the transfer function (1 + eps) |H|^2 / (|H|^2 + eps), within what cutting the kernel costs."""
    psf = gaussian_psf(sigma, ndim=ndim)
    w = wiener_kernel(psf, eps)
    size = tuple(2 * n for n in w.shape)
    h = _transfer(psf, size).real
    both = _transfer(w, size) * _transfer(psf, size)
    want = (1 + eps) * h**2 / (h**2 + eps)
    assert np.abs(both - want).max() < 0.05
    # |W| >= |H| (about): W vanishes only where the PSF does, so every phantom mode the data
    # can see stays reachable.
    assert (np.abs(_transfer(w, size)) >= 0.9 * np.abs(h) - 0.01).all()


def test_an_asymmetric_psf_gets_the_flipped_inverse():
    k = np.zeros((7, 5), np.float32)
    k[3, 2], k[2, 2], k[3, 4], k[5, 1] = 1.0, 0.5, 0.25, 0.3
    psf = prepare_psf(k)
    w = wiener_kernel(psf, 0.01)
    assert w.sum() == pytest.approx(1.0, abs=1e-5)
    size = tuple(2 * n for n in w.shape)
    h = _transfer(psf, size)
    want = 1.01 * np.abs(h) ** 2 / (np.abs(h) ** 2 + 0.01)

    def error(kernel):
        return np.abs(_transfer(kernel, size) * h - want).mean()

    assert error(w) < 0.25 * error(np.flip(w))  # a convolution kernel, not a correlation one


def test_off_and_without_a_psf_there_is_no_filter():
    assert wiener_radius((9, 9), 0.0) == (0, 0)
    assert wiener_radius((1, 1, 1), 0.01) == (0, 0, 0)
    assert wiener_radius((17, 9, 9), 0.01) == (16, 8, 8)
    with pytest.raises(ValueError, match="eps"):
        wiener_kernel(gaussian_psf(1.0), 0.0)
    assert DecoNoisingNet(None, depth=2, channels=4, wiener_eps=0.01).precondition is None
    assert DecoNoisingNet(gaussian_psf(1.0), depth=2, channels=4, wiener_eps=0.0).precondition is None


@pytest.mark.parametrize("ndim", [2, 3])
def test_the_phantom_is_the_filtered_unet_output_and_the_psf_still_applies(ndim):
    psf = gaussian_psf(1.0 if ndim == 2 else (2.0, 1.0, 1.0), ndim=ndim)
    torch.manual_seed(0)
    net = DecoNoisingNet(psf, depth=2, channels=4, ndim=ndim, wiener_eps=0.01).eval()
    plain = DecoNoisingNet(psf, depth=2, channels=4, ndim=ndim).eval()
    plain.load_state_dict(net.state_dict())  # same weights: the filter adds no parameter
    x = torch.randn(1, 1, *((12, 24, 24) if ndim == 3 else (40, 36)))
    with torch.no_grad():
        denoised, phantom = net(x)
        u = plain.unet(x)
    w = wiener_kernel(psf, 0.01)
    want = ndimage.convolve(u[0, 0].numpy().astype(np.float64), w.astype(np.float64), mode="mirror")
    np.testing.assert_allclose(phantom[0, 0].numpy(), want, atol=1e-4 * np.abs(want).max())
    torch.testing.assert_close(denoised, plain.psf(phantom))
    r_plain, r = plain.receptive_radius, net.receptive_radius
    assert tuple(b - a for a, b in zip(r_plain, r)) == wiener_radius(psf.shape, 0.01)
