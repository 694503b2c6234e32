"""The Wiener-preconditioned phantom: a fixed filter between the U-Net and the phantom.

DecoNoising's loss sees the phantom ``z`` only through the PSF (``s = h * z``), so in
Fourier mode ``f`` gradient descent on the phantom is slowed by ``|H(f)|**2`` relative to
Noise2Void, which fits the denoised image directly. Where the PSF is wide (3D, with its
long Z axis) the network spends hundreds of steps catching up (docs/benchmarks.md, "Why 3D
DecoNoising starts slower").

With preconditioning the U-Net predicts ``u`` and the phantom is ``z = w * u``, where ``w``
is the fixed Wiener filter ``W = (1 + eps) conj(H) / (|H|**2 + eps)``. Then ``s = h * w * u``
is ``u`` low-passed by ``(1 + eps) |H|**2 / (|H|**2 + eps)``, close to 1 wherever the PSF
passes the signal, so the U-Net learns at Noise2Void's pace there. ``|W| >= |H|`` (for
``|H| <= 1``): ``W`` vanishes only where the PSF does, so every phantom the data can tell
apart stays reachable; the model is the same, only the path of training differs. The phantom
still goes through the PSF, and the positivity term still applies to it.

The filter is applied as a true convolution (:class:`~.psf.PSFConvolution`, reflect
padding) with a kernel cut at twice the PSF's radius, where less than 1 % of its absolute
mass is lost at ``eps = 0.01`` (the Gaussians of the benchmarks); a finite kernel keeps
tiled prediction exact.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_WIENER_EPS_3D", "WIENER_REACH", "wiener_kernel", "wiener_radius"]

#: ``TrainConfig.wiener_eps`` of 3D models by default (docs/benchmarks.md, "a preconditioned phantom").
DEFAULT_WIENER_EPS_3D = 0.01
#: The filter's kernel reaches this many PSF radii from its centre.
WIENER_REACH = 2


def wiener_radius(psf_shape: tuple[int, ...], eps: float) -> tuple[int, ...]:
    """Per axis, the radius of :func:`wiener_kernel`'s kernel (0 when off or without a PSF)."""
    if eps <= 0 or all(n == 1 for n in psf_shape):
        return (0,) * len(psf_shape)
    return tuple(WIENER_REACH * (n // 2) for n in psf_shape)


def wiener_kernel(psf: np.ndarray, eps: float) -> np.ndarray:
    """The spatial kernel of ``(1 + eps) conj(H) / (|H|**2 + eps)``, ``H`` the PSF's transfer function.

    Parameters
    ----------
    psf : numpy.ndarray
        Normalised PSF (sums to 1), odd size along every axis.
    eps : float
        Regularisation, > 0: modes the PSF damps below ``|H|**2 = eps`` are not amplified
        further; the largest gain is ``(1 + eps) / (2 sqrt(eps))``.

    Returns
    -------
    numpy.ndarray
        float32 kernel of size ``2 * wiener_radius + 1`` per axis, centred, summing to 1
        (a flat image passes unchanged). A convolution kernel: a PSF that is not
        symmetric gives a kernel that is its flipped, regularised inverse.
    """
    psf = np.asarray(psf, dtype=np.float64)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    radius = wiener_radius(psf.shape, eps)
    # A grid four times the kernel: the cut-off tail does not alias back into it.
    grid = tuple(max(4 * (2 * r + 1), n) for r, n in zip(radius, psf.shape))
    axes = tuple(range(psf.ndim))
    k = np.zeros(grid)
    k[tuple(slice(0, n) for n in psf.shape)] = psf
    k = np.roll(k, tuple(-(n // 2) for n in psf.shape), axis=axes)  # centre at the origin
    h = np.fft.rfftn(k, axes=axes)
    w = np.fft.irfftn((1 + eps) * np.conj(h) / (np.abs(h) ** 2 + eps), s=grid, axes=axes)
    w = np.roll(w, radius, axis=axes)[tuple(slice(0, 2 * r + 1) for r in radius)]
    return (w / w.sum()).astype(np.float32)
