"""Least-squares fit of an axis-aligned Gaussian spot to a small 2D or 3D crop.

Used to locate beads with sub-pixel precision and to measure a PSF's width
(:mod:`.beads`). The model is ``offset + amplitude * prod_i exp(-(x_i - c_i)**2 / (2 s_i**2))``,
evaluated separably (one 1D Gaussian per axis, an outer product), so a 3D crop of
31 x 31 x 31 voxels costs little more than its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["GaussianSpot", "fit_gaussian", "gaussian_spot", "kernel_sigma"]


@dataclass(frozen=True)
class GaussianSpot:
    """A fitted spot: centre and width per axis (pixels, crop coordinates), height, offset."""

    centre: tuple[float, ...]
    sigma: tuple[float, ...]
    amplitude: float
    offset: float
    #: Root-mean-square residual of the fit in units of the amplitude (0: a perfect Gaussian).
    residual: float


def gaussian_spot(grids: Sequence[np.ndarray], centre: Sequence[float], sigma: Sequence[float]) -> np.ndarray:
    """The separable Gaussian ``prod_i exp(-(x_i - c_i)**2 / (2 s_i**2))``, peak 1 (not normalised).

    Parameters
    ----------
    grids : sequence of numpy.ndarray
        The pixel coordinates along each axis (1D each, e.g. ``np.arange(n)``).
    centre, sigma : sequence of float
        Centre and width per axis, pixels.

    Returns
    -------
    numpy.ndarray
        Shape ``tuple(len(g) for g in grids)``: one 1D Gaussian per axis, an outer product.
    """
    out = None
    for x, c, s in zip(grids, centre, sigma):
        g = np.exp(-0.5 * ((x - c) / s) ** 2)
        out = g if out is None else np.multiply.outer(out, g)
    return out


def _model(params: np.ndarray, grids: list[np.ndarray], ndim: int) -> np.ndarray:
    offset, amplitude = params[0], params[1]
    return offset + amplitude * gaussian_spot(grids, params[2:2 + ndim], params[2 + ndim:])


def fit_gaussian(crop: np.ndarray, centre: tuple[float, ...] | None = None,
                 sigma: float | tuple[float, ...] = 1.5, fit_offset: bool = True) -> GaussianSpot:
    """Fit a Gaussian spot to ``crop``.

    Parameters
    ----------
    crop : numpy.ndarray
        2D or 3D, one spot, background around it.
    centre : tuple of float, optional
        Starting centre in crop coordinates; default the brightest pixel.
    sigma : float or tuple of float
        Starting width in pixels, one for all axes or one per axis.
    fit_offset : bool
        Fit a constant background; with False it is held at 0 (for crops whose
        background has been removed).

    Returns
    -------
    GaussianSpot
        The centre is kept inside the crop and every sigma between 0.2 px and the crop's
        size on that axis.
    """
    from scipy.optimize import least_squares

    a = np.asarray(crop, dtype=np.float64)
    ndim = a.ndim
    grids = [np.arange(n, dtype=np.float64) for n in a.shape]
    lo, hi = float(np.percentile(a, 10)), float(a.max())
    c0 = np.unravel_index(int(np.argmax(a)), a.shape) if centre is None else centre
    s0 = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (ndim,))
    offset0 = lo if fit_offset else 0.0
    x0 = np.concatenate([[offset0, max(hi - offset0, 1e-12)], np.asarray(c0, dtype=np.float64), s0])
    shape = np.array(a.shape, dtype=np.float64)
    lower = np.concatenate([[-np.inf, 0.0], np.zeros(ndim), np.full(ndim, 0.2)])
    upper = np.concatenate([[np.inf, np.inf], shape - 1, shape])
    x0 = np.clip(x0, lower + 1e-9, upper - 1e-9)
    if not fit_offset:
        lower[0], upper[0], x0[0] = -1e-12, 1e-12, 0.0

    def residuals(p: np.ndarray) -> np.ndarray:
        return (_model(p, grids, ndim) - a).ravel()

    # x_scale="jac": offset and amplitude are in data units, centre and sigma in pixels.
    # a bead converges in under 10 evaluations; a hot pixel (sigma at its bound) would use them all
    res = least_squares(residuals, x0, bounds=(lower, upper), x_scale="jac", max_nfev=100)
    p = res.x
    amp = float(p[1])
    rms = float(np.sqrt(np.mean(res.fun**2)))
    return GaussianSpot(centre=tuple(float(v) for v in p[2:2 + ndim]), sigma=tuple(float(v) for v in p[2 + ndim:]),
                        amplitude=amp, offset=float(p[0]), residual=rms / amp if amp > 0 else float("inf"))


def kernel_sigma(kernel: np.ndarray) -> tuple[float, ...]:
    """The Gaussian sigma per axis (pixels) fitted to a PSF kernel around its peak, no background."""
    k = np.asarray(kernel, dtype=np.float64)
    peak = np.unravel_index(int(np.argmax(k)), k.shape)
    return fit_gaussian(k / k[peak], centre=tuple(float(p) for p in peak), fit_offset=False).sigma
