"""Synthetic diffraction-limited fluorescence images with known ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .psf import PSFConvolution, gaussian_psf

__all__ = ["Sample", "camera_noise", "gaussian_blur", "make_phantom", "make_sample", "psnr"]


@dataclass
class Sample:
    """A noisy image with everything that produced it.

    Attributes
    ----------
    noisy : numpy.ndarray
        What a camera would record (float32, photon units plus read noise).
    clean : numpy.ndarray
        Noise-free image: the phantom convolved with the PSF (denoising target).
    phantom : numpy.ndarray
        Fluorophore density before blurring (deconvolution target).
    sigma : float
        Standard deviation of the Gaussian PSF in pixels.
    """

    noisy: np.ndarray
    clean: np.ndarray
    phantom: np.ndarray
    sigma: float


def make_phantom(shape: tuple[int, int] = (256, 256), n_filaments: int | None = None,
                 n_blobs: int | None = None, seed: int = 0) -> np.ndarray:
    """Thin curved filaments and small round blobs on a dim background (float32, peak ~1)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    area = h * w / 256**2
    n_filaments = int(round(12 * area)) if n_filaments is None else n_filaments
    n_blobs = int(round(30 * area)) if n_blobs is None else n_blobs
    img = np.zeros(shape, np.float64)
    for _ in range(n_filaments):
        # A smooth random walk: heading changes slowly, one sub-pixel step at a time.
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        heading = rng.uniform(0, 2 * np.pi)
        turn = rng.normal(0, 0.02)
        length = rng.uniform(0.3, 1.0) * max(h, w)
        bright = rng.uniform(0.4, 1.0)
        for _ in range(int(length * 2)):
            heading += turn + rng.normal(0, 0.03)
            y += 0.5 * np.sin(heading)
            x += 0.5 * np.cos(heading)
            if not (0 <= y < h - 1 and 0 <= x < w - 1):
                break
            # Bilinear splat keeps the filament sub-pixel thin without aliasing.
            iy, ix = int(y), int(x)
            fy, fx = y - iy, x - ix
            img[iy, ix] += bright * (1 - fy) * (1 - fx) * 0.5
            img[iy + 1, ix] += bright * fy * (1 - fx) * 0.5
            img[iy, ix + 1] += bright * (1 - fy) * fx * 0.5
            img[iy + 1, ix + 1] += bright * fy * fx * 0.5
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(1.0, 3.5)
        img += rng.uniform(0.3, 1.0) * (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r)
    img = np.clip(img, 0, 1.0)
    img += 0.05  # autofluorescence background
    return img.astype(np.float32)


def make_sample(shape: tuple[int, int] = (256, 256), sigma: float = 1.5, photons: float = 30.0,
                read_noise: float = 2.0, seed: int = 0) -> Sample:
    """A noisy diffraction-limited image with known clean image and phantom.

    Parameters
    ----------
    shape : tuple of int
        Image size.
    sigma : float
        Gaussian PSF standard deviation in pixels.
    photons : float
        Expected photon count at the phantom's peak intensity (lower is noisier).
    read_noise : float
        Standard deviation of the Gaussian camera read noise, in photons.
    seed : int
        Seed for structure and noise.
    """
    rng = np.random.default_rng(seed + 10_000)
    phantom = make_phantom(shape, seed=seed) * np.float32(photons)
    clean = np.clip(gaussian_blur(phantom, sigma), 0, None)
    noisy = camera_noise(clean, read_noise, rng)
    return Sample(noisy=noisy, clean=clean, phantom=phantom, sigma=float(sigma))


def gaussian_blur(images: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Blur a 2D image, or each 2D image of a stack ``(..., Y, X)``, with a Gaussian PSF.

    The same convolution the network uses (:class:`.psf.PSFConvolution`, reflecting
    borders), so synthetic data is blurred exactly as the model assumes.

    Parameters
    ----------
    images : numpy.ndarray
        One image ``(Y, X)`` or a stack of them.
    sigma : float or (float, float)
        PSF standard deviation in pixels, one value or one per axis (Y, X).

    Returns
    -------
    numpy.ndarray
        float32, the shape of ``images``.
    """
    a = np.ascontiguousarray(images, np.float32)
    conv = PSFConvolution(gaussian_psf(sigma))
    with torch.no_grad():
        out = conv(torch.from_numpy(a.reshape(-1, 1, *a.shape[-2:])))
    return out.numpy().reshape(a.shape)


def camera_noise(clean: np.ndarray, read_noise: float, rng: np.random.Generator) -> np.ndarray:
    """What a camera records of ``clean``: Poisson shot noise plus Gaussian read noise.

    Parameters
    ----------
    clean : numpy.ndarray
        Expected photon counts per pixel (negative values count as 0).
    read_noise : float
        Standard deviation of the read noise, in photons.
    rng : numpy.random.Generator
        Source of randomness; the shot noise is drawn first, then the read noise.

    Returns
    -------
    numpy.ndarray
        float32, the shape of ``clean``.
    """
    shot = rng.poisson(np.clip(clean, 0, None)).astype(np.float32)
    return shot + rng.normal(0, read_noise, np.shape(clean)).astype(np.float32)


def psnr(truth: np.ndarray, estimate: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, with the data range of ``truth`` by default."""
    truth = np.asarray(truth, np.float64)
    estimate = np.asarray(estimate, np.float64)
    if data_range is None:
        data_range = float(truth.max() - truth.min())
    mse = float(np.mean((truth - estimate) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)
