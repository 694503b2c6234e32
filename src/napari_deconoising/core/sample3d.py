"""A synthetic fluorescence stack (filaments and vesicles) with its ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Sample3D", "make_phantom_3d", "make_sample_3d"]


@dataclass
class Sample3D:
    """A noisy stack with everything that produced it.

    Attributes
    ----------
    noisy : numpy.ndarray
        What a microscope would record, (Z, Y, X) float32: photons plus read noise.
    clean : numpy.ndarray
        Noise-free stack: the phantom blurred by the PSF (denoising target).
    phantom : numpy.ndarray
        Fluorophore density before blurring (deconvolution target).
    sigma : tuple of float
        Standard deviation of the Gaussian PSF in voxels, (Z, Y, X).
    """

    noisy: np.ndarray
    clean: np.ndarray
    phantom: np.ndarray
    sigma: tuple[float, float, float]


def make_phantom_3d(shape: tuple[int, int, int] = (32, 160, 160), z_step: float = 2.0,
                    n_filaments: int | None = None, n_vesicles: int | None = None,
                    seed: int = 0) -> np.ndarray:
    """Curved 3D filaments and hollow vesicles on a dim background (float32, peak ~1).

    ``z_step`` is the Z spacing in units of the Y/X pixel size: structures are made in
    physical space, so a round vesicle spans fewer planes than pixels, as in a real
    confocal stack.
    """
    rng = np.random.default_rng(seed)
    d, h, w = shape
    scale = d * z_step * h * w / (64 * 160 * 160)
    n_filaments = max(1, round(16 * scale)) if n_filaments is None else n_filaments
    n_vesicles = max(1, round(24 * scale)) if n_vesicles is None else n_vesicles
    img = np.zeros(shape, np.float64)
    for _ in range(n_filaments):
        _splat_filament(img, rng, z_step)
    zz, yy, xx = np.indices(shape, dtype=np.float64)
    zz *= z_step
    for _ in range(n_vesicles):
        c = rng.uniform(0, 1, 3) * np.array([d * z_step, h, w])
        r = rng.uniform(2.0, 5.0)
        dist = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        img += rng.uniform(0.4, 1.0) * np.clip(1.0 - np.abs(dist - r), 0, None)  # a 1-px shell
    img = np.clip(img, 0, 1.0)
    img += 0.05  # autofluorescence background
    return img.astype(np.float32)


def _splat_filament(img: np.ndarray, rng: np.random.Generator, z_step: float) -> None:
    """Add one smooth random walk, drawn with trilinear weights (sub-voxel thin)."""
    d, h, w = img.shape
    p = rng.uniform(0, 1, 3) * np.array([d - 1, h - 1, w - 1])
    v = rng.normal(size=3)
    v[0] *= 0.3  # mostly lateral, as cytoskeleton in a thin cell
    v /= np.linalg.norm(v)
    bright = rng.uniform(0.4, 1.0)
    for _ in range(int(rng.uniform(0.3, 1.0) * max(h, w) * 2)):
        v += rng.normal(0, 0.05, 3)
        v /= np.linalg.norm(v)
        p = p + 0.5 * v / np.array([z_step, 1.0, 1.0])
        if not all(0 <= q < n - 1 for q, n in zip(p, img.shape)):
            return
        i = p.astype(int)
        f = p - i
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    wgt = ((f[0] if dz else 1 - f[0]) * (f[1] if dy else 1 - f[1])
                           * (f[2] if dx else 1 - f[2]))
                    img[i[0] + dz, i[1] + dy, i[2] + dx] += bright * wgt * 0.7


def make_sample_3d(shape: tuple[int, int, int] = (32, 160, 160),
                   sigma: tuple[float, float, float] = (2.0, 1.0, 1.0), photons: float = 100.0,
                   read_noise: float = 2.0, z_step: float = 2.0, seed: int = 0) -> Sample3D:
    """A noisy, anisotropically blurred stack with known clean stack and phantom.

    Parameters
    ----------
    shape : tuple of int
        (Z, Y, X) size.
    sigma : tuple of float
        Gaussian PSF standard deviation in voxels per axis (Z, Y, X).
    photons : float
        Expected photon count at the phantom's peak (lower is noisier).
    read_noise : float
        Standard deviation of the Gaussian read noise, in photons.
    z_step : float
        Z spacing in units of the pixel size (see :func:`make_phantom_3d`).
    seed : int
        Seed for structure and noise.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed + 10_000)
    phantom = make_phantom_3d(shape, z_step=z_step, seed=seed) * np.float32(photons)
    # "mirror" is the reflection the model's PSF convolution uses.
    clean = ndimage.gaussian_filter(phantom.astype(np.float64), sigma, mode="mirror", truncate=4.0)
    clean = np.clip(clean, 0, None).astype(np.float32)
    noisy = rng.poisson(clean).astype(np.float32) + rng.normal(0, read_noise, shape).astype(np.float32)
    return Sample3D(noisy=noisy, clean=clean, phantom=phantom,
                    sigma=tuple(float(s) for s in sigma))
