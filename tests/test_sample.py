"""Synthetic samples and the forward model behind them: Gaussian blur and camera noise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from napari_deconoising.core.sample import camera_noise, gaussian_blur, make_phantom, make_sample, psnr


@settings(max_examples=20, deadline=None)
@given(sigma=st.floats(0.5, 3.0), value=st.floats(0.0, 1000.0))
def test_blur_keeps_a_constant_image(sigma, value):
    img = np.full((24, 20), value, np.float32)
    np.testing.assert_allclose(gaussian_blur(img, sigma), img, rtol=1e-5, atol=1e-3)


def test_blur_of_a_stack_is_the_blur_of_each_image():
    stack = np.random.default_rng(0).random((2, 3, 32, 40)).astype(np.float32)
    out = gaussian_blur(stack, 1.5)
    assert out.shape == stack.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[1, 2], gaussian_blur(stack[1, 2], 1.5), rtol=1e-6, atol=1e-6)


def test_blur_matches_scipy_away_from_the_border():
    img = np.zeros((64, 64), np.float32)
    img[20:40, 30] = 1
    img[32, 10:50] = 2
    ours = gaussian_blur(img, (1.0, 2.0))
    ref = ndimage.gaussian_filter(img.astype(np.float64), (1.0, 2.0), mode="reflect", truncate=4)
    np.testing.assert_allclose(ours[8:-8, 8:-8], ref[8:-8, 8:-8], atol=2e-3)
    assert abs(float(ours.sum()) - float(img.sum())) < 1e-3 * img.sum()


def test_camera_noise_has_poisson_plus_read_noise_statistics():
    clean = np.full((400, 400), 25.0, np.float32)
    noisy = camera_noise(clean, 3.0, np.random.default_rng(1))
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert abs(noisy.mean() - 25.0) < 0.1
    assert abs(noisy.var() - (25.0 + 9.0)) < 0.6  # shot variance = mean, plus read variance


def test_camera_noise_is_reproducible_and_treats_negatives_as_zero():
    clean = np.array([[-5.0, 0.0], [4.0, 9.0]], np.float32)
    a = camera_noise(clean, 0.0, np.random.default_rng(3))
    b = camera_noise(clean, 0.0, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a[0, 0] == 0 and a[0, 1] == 0
    assert np.all(a == np.round(a))  # no read noise: whole photons only


@pytest.mark.parametrize("seed", [0, 4])
def test_make_sample_is_phantom_blur_noise(seed):
    s = make_sample((48, 40), sigma=1.5, photons=30.0, read_noise=2.0, seed=seed)
    np.testing.assert_array_equal(s.phantom, make_phantom((48, 40), seed=seed) * np.float32(30.0))
    np.testing.assert_array_equal(s.clean, np.clip(gaussian_blur(s.phantom, 1.5), 0, None))
    np.testing.assert_array_equal(s.noisy, camera_noise(s.clean, 2.0, np.random.default_rng(seed + 10_000)))
    assert all(a.dtype == np.float32 for a in (s.noisy, s.clean, s.phantom))
    assert psnr(s.clean, s.noisy) < psnr(s.clean, s.clean + 0.1)
