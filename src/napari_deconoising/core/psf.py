"""Point spread functions and the convolution that makes them part of the network."""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .io import ImageFileError, read_image

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["PSFError", "gaussian_psf", "prepare_psf", "load_psf", "training_psf", "PSFConvolution"]

# From this many kernel taps on, ``method="auto"`` uses the FFT. Measured (docs/benchmarks.md,
# "PSF convolution"): on the CPU the FFT beat oneDNN's single-channel direct convolution at
# every size from 5x5 (1.6 vs 9.6 ms) to 31x31 (2.4 vs 213 ms), and a separable Gaussian
# in fp32 (1.9 vs 13.6 ms for 13 taps); only tiny kernels stay direct.
FFT_MIN_TAPS = 10


class PSFError(ValueError):
    """A PSF is unusable (wrong dimensionality, empty, not finite, ...)."""


def gaussian_psf(sigma: float | Sequence[float], ndim: int = 2, truncate: float = 4.0) -> np.ndarray:
    """Sampled Gaussian PSF, normalised to sum 1.

    Parameters
    ----------
    sigma : float or sequence of float
        Standard deviation in pixels, one for all axes or one per axis. An axis with
        sigma 0 is not blurred.
    ndim : int
        Number of spatial dimensions (2 or 3).
    truncate : float
        Half-width of the kernel in units of sigma (rounded up, odd size).

    Returns
    -------
    numpy.ndarray
        Odd-sized float32 kernel that sums to 1; ``[[1.]]`` when every sigma is 0.
    """
    sig = _per_axis(sigma, ndim)
    axes_1d = []
    for s in sig:
        if s < 1e-3:  # narrower than a pixel by far: exactly the identity
            axes_1d.append(np.ones(1, dtype=np.float64))
            continue
        r = max(1, int(math.ceil(truncate * s)))
        x = np.arange(-r, r + 1, dtype=np.float64)
        g = np.exp(-0.5 * (x / s) ** 2)
        axes_1d.append(g / g.sum())
    k = axes_1d[0]
    for g in axes_1d[1:]:
        k = np.multiply.outer(k, g)
    k = k / k.sum()
    return k.astype(np.float32)


def prepare_psf(psf: np.ndarray, ndim: int = 2) -> np.ndarray:
    """Validate a measured PSF and bring it into the form the model needs.

    Negative values (background subtraction noise) are clipped to 0, the kernel is
    padded to odd size with the centre of mass of its core (the pixels above 5 % of the
    peak, so that clipped noise does not pull it) on the centre pixel, and it is
    normalised to sum 1.  The input is not modified.

    Raises
    ------
    PSFError
        If the PSF is empty, not finite, of the wrong dimensionality or all zero.
    """
    a = np.asarray(psf)
    if a.dtype.kind not in "biuf":
        raise PSFError(f"PSF must hold real numbers, got dtype {a.dtype}")
    a = np.squeeze(a).astype(np.float64)
    if a.size == 0:
        raise PSFError("PSF is empty")
    if a.ndim != ndim:
        raise PSFError(f"PSF has {a.ndim} dimensions {a.shape}, but a {ndim}D model needs a {ndim}D PSF "
                       f"({'ZYX' if ndim == 3 else 'YX'})")
    if not np.all(np.isfinite(a)):
        raise PSFError("PSF contains NaN or infinite values")
    a = np.clip(a, 0, None)
    total = a.sum()
    if total <= 0:
        raise PSFError("PSF has no positive values")
    # Centre on the core (see _core_centre) so the convolution does not shift the image's bright
    # structures; an aberrated PSF's faint lobes (below 5 % of the peak) do not move the centre.
    com = [int(round(c)) for c in _core_centre(a)]
    half = [max(c, n - 1 - c) for c, n in zip(com, a.shape)]
    out = np.zeros([2 * h + 1 for h in half], dtype=np.float64)
    src = tuple(slice(0, n) for n in a.shape)
    dst = tuple(slice(h - c, h - c + n) for h, c, n in zip(half, com, a.shape))
    out[dst] = a[src]
    return (out / out.sum()).astype(np.float32)


#: Fraction of the peak below which :func:`_core_centre` ignores a PSF's pixels.
CORE_FRACTION = 0.05


def _core_centre(a: np.ndarray) -> tuple[float, ...]:
    """Centre of mass of the part of ``a`` above :data:`CORE_FRACTION` of its peak, that level subtracted.

    Clipping zero-mean noise at 0 leaves a positive floor all over the box, and the centre
    of mass of the whole box is pulled towards the box's centre by it (2 px for a PSF 6 px
    off centre in a 41 px box at 1 % noise). The core holds the PSF, not the floor; for a
    clean symmetric PSF both centres are the same.
    """
    w = np.clip(a - CORE_FRACTION * a.max(), 0, None)
    return tuple(float((g * w).sum() / w.sum()) for g in np.indices(a.shape))


def training_psf(config: TrainConfig, psf: np.ndarray | None = None) -> np.ndarray | None:
    """The PSF ``config`` trains with: ``psf`` prepared when it says ``"measured"``, its
    Gaussian otherwise, None without a PSF (Noise2Void).

    Raises
    ------
    ValueError
        A measured PSF is asked for but none given, or one is given that the config does not use.
    """
    if config.psf == "measured":
        if psf is None:
            raise ValueError("config.psf is 'measured' but no PSF array was given")
        return prepare_psf(psf, ndim=config.ndim)
    if psf is not None:
        raise ValueError(f"a PSF array was given but config.psf is {config.psf!r}; use psf='measured'")
    if not config.uses_psf:
        return None
    return gaussian_psf(config.sigma_per_axis, ndim=config.ndim)


def load_psf(path: str | PathLike, ndim: int = 2) -> np.ndarray:
    """Read a measured PSF from an image file (see :mod:`.io`) and :func:`prepare_psf` it."""
    try:
        data, _ = read_image(path)
    except ImageFileError as e:
        raise PSFError(f"PSF: {e}") from None
    try:
        return prepare_psf(data, ndim=ndim)
    except PSFError as e:  # which file, when each channel has its own
        raise PSFError(f"{Path(path).name}: {e}") from None


def _per_axis(sigma: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    if isinstance(sigma, (int, float)):
        return (float(sigma),) * ndim
    sig = tuple(float(s) for s in sigma)
    if len(sig) == 1:
        return sig * ndim
    if len(sig) != ndim:
        raise PSFError(f"sigma has {len(sig)} values, expected 1 or {ndim}")
    return sig


def _separable_factors(kernel: np.ndarray) -> list[np.ndarray] | None:
    """1D factors whose outer product is ``kernel``, or None if it is not separable."""
    factors = []
    for ax in range(kernel.ndim):
        # The marginal along one axis is proportional to that axis' factor.
        other = tuple(a for a in range(kernel.ndim) if a != ax)
        f = kernel.sum(axis=other).astype(np.float64)
        factors.append(f)
    outer = factors[0]
    for f in factors[1:]:
        outer = np.multiply.outer(outer, f)
    outer = outer / outer.sum()
    if np.allclose(outer, kernel, rtol=1e-4, atol=1e-7):
        return [(f / f.sum()).astype(np.float32) for f in factors]
    return None


class PSFConvolution(nn.Module):
    """True ("same"-sized, reflect-padded) convolution with a fixed PSF.

    The kernel is flipped, so an asymmetric PSF acts as a convolution and not as a
    correlation. All but tiny kernels run through the FFT, which was the fastest path
    measured; direct and separable (1D passes) convolutions remain available.

    Parameters
    ----------
    kernel : numpy.ndarray
        Normalised PSF with odd size along every axis.
    method : {"auto", "direct", "separable", "fft"}
        Force an algorithm (tests compare them); ``"auto"`` picks the fastest.
    """

    def __init__(self, kernel: np.ndarray, method: str = "auto") -> None:
        super().__init__()
        k = np.asarray(kernel, dtype=np.float32)
        if any(n % 2 == 0 for n in k.shape):
            raise PSFError(f"PSF size must be odd along every axis, got {k.shape}")
        self.ndim = k.ndim
        self.radius = tuple(n // 2 for n in k.shape)
        factors = _separable_factors(k)
        if method == "auto":
            method = "fft" if k.size >= FFT_MIN_TAPS else "direct"
        if method == "separable" and factors is None:
            raise PSFError("kernel is not separable")
        if method not in ("direct", "separable", "fft"):
            raise ValueError(f"unknown method {method!r}")
        self.method = method
        # Flip once here: torch's conv is a correlation.
        flipped = np.flip(k).copy()
        self.register_buffer("kernel", torch.from_numpy(flipped)[None, None], persistent=False)
        if method == "separable":
            for ax, f in enumerate(factors):
                shape = [1, 1] + [1] * self.ndim
                shape[2 + ax] = f.size
                t = torch.from_numpy(f[::-1].copy()).reshape(shape)
                self.register_buffer(f"factor{ax}", t, persistent=False)

    @property
    def is_identity(self) -> bool:
        return all(r == 0 for r in self.radius)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` of shape (N, 1, *spatial) with the PSF."""
        if self.is_identity:
            return x
        pad = []
        for r in reversed(self.radius):
            pad += [r, r]
        xp = _reflect_pad(x, pad)
        conv = F.conv2d if self.ndim == 2 else F.conv3d
        if self.method == "direct":
            return conv(xp, self.kernel.to(xp.dtype))
        if self.method == "separable":
            out = xp
            for ax in range(self.ndim):
                out = conv(out, getattr(self, f"factor{ax}").to(out.dtype))
            return out
        return self._fft(xp, x.shape[2:])

    def _fft(self, xp: torch.Tensor, out_shape: torch.Size) -> torch.Tensor:
        dtype = xp.dtype
        xp = xp.float()  # FFTs in reduced precision lose too much
        dims = tuple(range(2, 2 + self.ndim))
        size = xp.shape[2:]
        k = torch.flip(self.kernel.float(), dims)  # undo the flip: FFT product is a convolution
        kf = torch.fft.rfftn(k, s=size, dim=dims)
        xf = torch.fft.rfftn(xp, s=size, dim=dims)
        full = torch.fft.irfftn(xf * kf, s=size, dim=dims)
        # Circular convolution of the padded input: the valid part starts at 2*radius.
        sl = [slice(None), slice(None)] + [slice(2 * r, 2 * r + n) for r, n in zip(self.radius, out_shape)]
        return full[tuple(sl)].to(dtype)


def _reflect_pad(x: torch.Tensor, pad: list[int]) -> torch.Tensor:
    """Reflect padding that also works when the pad exceeds the image size."""
    spatial = x.shape[2:]
    # pad lists the last axis first
    need = [pad[2 * i] for i in range(len(spatial))][::-1]
    if all(p < n for p, n in zip(need, spatial)):
        return F.pad(x, pad, mode="reflect")
    # Repeated reflection (numpy's "reflect" semantics) for tiny inputs.
    out = x
    for ax, p in zip(range(len(spatial) - 1, -1, -1), [pad[2 * i] for i in range(len(spatial))]):
        dim = 2 + ax
        while p > 0:
            n = out.shape[dim]
            step = min(p, n - 1) if n > 1 else 0
            if step == 0:
                reps = [1] * out.ndim
                reps[dim] = 2 * p + 1
                out = out.repeat(*reps)
                break
            sub = [0, 0] * (out.ndim - 2)
            idx = 2 * (out.ndim - 1 - dim)
            sub[idx] = sub[idx + 1] = step
            out = F.pad(out, sub, mode="reflect")
            p -= step
    return out
