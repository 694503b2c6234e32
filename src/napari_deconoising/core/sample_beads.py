"""Synthetic bead images with a known PSF: to try :mod:`.beads`, and to test it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .gaussian_fit import gaussian_spot

__all__ = ["make_beads"]


def make_beads(shape: Sequence[int], sigma: float | Sequence[float] = 1.2, n: int = 30, seed: int = 0,
               photons: float = 5000.0, background: float = 100.0, min_distance: float = 20.0,
               psf: np.ndarray | None = None, margin: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Point-like beads blurred by a PSF, with shot noise, as a camera would record them.

    Parameters
    ----------
    shape : sequence of int
        YX or ZYX.
    sigma : float or sequence of float
        Gaussian PSF sigma in pixels (one for all axes or one per axis); the beads sit at
        random sub-pixel positions and each pixel samples the Gaussian at its centre.
    n : int
        Number of beads; at least ``min_distance`` apart along some axis.
    photons : float
        Photons per bead (the PSF's sum), before shot noise.
    background : float
        Photons per pixel of background.
    psf : numpy.ndarray, optional
        Any odd-sized PSF (ndim of ``shape``) instead of the Gaussian; the beads then sit
        on whole pixels.
    margin : int
        Distance of every bead from the image edge, pixels.

    Returns
    -------
    image : numpy.ndarray
        uint16 photon counts.
    positions : numpy.ndarray
        ``(n, ndim)`` bead centres.
    """
    from scipy.signal import fftconvolve

    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    rng = np.random.default_rng(seed)
    lo, hi = np.full(ndim, float(margin)), np.array(shape, dtype=float) - 1 - margin
    positions: list[np.ndarray] = []
    for _ in range(1000 * n):
        if len(positions) == n:
            break
        p = rng.uniform(lo, hi)
        if psf is not None:
            p = np.round(p)
        if all(np.max(np.abs(p - q)) >= min_distance for q in positions):
            positions.append(p)
    else:
        if len(positions) < n:
            raise ValueError(f"{n} beads {min_distance} px apart do not fit into {shape}")
    pos = np.array(positions).reshape(-1, ndim)
    if psf is None:
        sig = np.broadcast_to(np.asarray(sigma, dtype=float), (ndim,))
        signal = np.zeros(shape)
        axes = [np.arange(s, dtype=float) for s in shape]
        for p in pos:
            spot = gaussian_spot(axes, p, sig)  # the model the bead fits use
            signal += photons * spot / spot.sum()
    else:
        points = np.zeros(shape)
        points[tuple(pos.astype(int).T)] = photons
        signal = np.clip(fftconvolve(points, psf / psf.sum(), mode="same"), 0, None)
    image = rng.poisson(signal + background)
    return np.clip(image, 0, np.iinfo(np.uint16).max).astype(np.uint16), pos
