"""A PSF measured from an image of sub-resolution beads.

How microscopists measure their PSF: image fluorescent beads smaller than the resolution
(100-200 nm) with the settings of the experiment, then average the isolated beads. This
module does that for a 2D image (YX) or a stack (ZYX):

1. **Find** bright spots: local maxima of the lightly smoothed image that stand
   ``threshold`` noise levels above the background (median and median absolute deviation,
   robust to the beads themselves).
2. **Keep the isolated ones**: a bead whose box (the PSF's extent) reaches the image edge,
   holds another detected bead, is saturated, is much brighter than the typical bead (a
   clump) or much wider (out of focus, a clump) is left out, and the reasons are counted.
3. **Align** each bead on a sub-pixel Gaussian fit of its centre (Fourier shift) and
   subtract its local background (the mean of its box's outer shell).
4. **Average** them weighted by their light (the crops are summed, then scaled to unit sum:
   a faint bead's noise is not amplified to count as much as a bright bead's light), subtract
   what is left of the background, set values below its noise to 0 and normalise: the PSF,
   odd-sized and centred, ready for ``--psf`` / a measured-PSF layer. A Gaussian fitted to the
   average gives sigma per axis, with the spread of the single beads' widths as a check of
   consistency.

A bead of finite size widens what is measured: its light is the PSF convolved with the
bead. For a uniform sphere of diameter ``d`` the variance along any axis is ``d**2 / 20``,
so the Gaussian sigma is corrected in quadrature when ``bead_diameter`` is given (the
averaged PSF image itself is left as measured).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .bead_detect import BeadError, detect_spots, side_lobes
from .bead_psf import REJECT_REASONS, BeadPSF
from .gaussian_fit import fit_gaussian
from .psf import PSFError, prepare_psf

__all__ = ["BeadError", "BeadPSF", "distill_psf", "REJECT_REASONS"]

_BRIGHT = 1.6  # x the median integrated intensity: two beads together are about 2x
_FAINT = 0.3  # x the median integrated intensity: noise, or a bead far out of focus
_WIDE = 1.4  # x the median width (geometric mean over axes), and 1 / _WIDE for too narrow
_NARROW = 0.35  # px: narrower than a PSF sampled at the Nyquist rate or finer can be: a hot pixel
_MAX_BEADS = 2000
# What to do when no bead is usable, by the most common reason.
_HINTS = {
    "edge": "try a smaller box, or beads further from the edge (a stack: more planes around them)",
    "crowded": "try a smaller box, or an image with fewer, well separated beads",
    "saturated": "image the beads with less light or a shorter exposure",
    "bright": "try an image with fewer clumps", "wide": "focus on the beads",
    "narrow": "these look like hot pixels, or the image is sampled too coarsely for its PSF (under 0.4 px): "
              "check the image and its pixel size",
    "faint": "lower the threshold only as far as the beads stand out of the noise",
    "fit": "check that this is a bead image",
}
_FLOOR = 1.0  # x the noise of the average (measured: benchmarks/beads.py, docs/user-guide.md)


def distill_psf(image: np.ndarray, box: int | Sequence[int] | None = None, threshold: float = 6.0,
                bead_diameter: float | Sequence[float] = 0.0, smooth: float = 1.0) -> BeadPSF:
    """Measure the PSF from an image of isolated sub-resolution beads.

    Parameters
    ----------
    image : numpy.ndarray
        2D (YX) or 3D (ZYX) bead image, raw intensities.
    box : int or sequence of int, optional
        Odd size of the box around each bead, one for all axes or one per axis: the extent of
        the PSF to measure. By default 10 Gaussian sigmas of the brightest beads (at least 9),
        within the image.
    threshold : float
        How many noise levels (robust standard deviations of the smoothed image) a bead's peak
        must stand above the background to be detected.
    bead_diameter : float or sequence of float
        Bead diameter in pixels (per axis for anisotropic sampling, Z in planes); 0 for no
        correction.
    smooth : float
        Sigma (pixels) of the Gaussian smoothing used for detection only.

    Returns
    -------
    BeadPSF

    Raises
    ------
    BeadError
        No bead stands out of the noise, or none is isolated enough to use.
    PSFError
        The image is not 2D or 3D, or not finite.
    """

    a = np.asarray(image)
    if a.ndim not in (2, 3) or a.dtype.kind not in "iuf":
        raise PSFError(f"a bead image must be a 2D (YX) or 3D (ZYX) array of numbers, got shape {a.shape} "
                       f"and dtype {a.dtype}")
    saturation = float(np.iinfo(a.dtype).max) if a.dtype.kind in "iu" else None
    data = a.astype(np.float64)
    if not np.all(np.isfinite(data)):
        raise PSFError("the bead image contains NaN or infinite values")
    ndim = data.ndim
    if min(data.shape) < 3:
        raise PSFError(f"the bead image {data.shape} is too thin to measure a PSF along every axis: a stack needs "
                       "at least 3 planes (measure a 2D PSF on one plane instead)")
    d = _per_axis(bead_diameter, ndim, "bead_diameter")
    spots = detect_spots(data, smooth, threshold)
    size = _box_size(data, spots.positions, box)
    half = np.array(size) // 2
    rejected = dict.fromkeys(REJECT_REASONS, 0)
    # The box is about 10 sigmas wide (half = 5 sigmas): a bead more than 3 sigmas outside it
    # puts less than 1 % of its peak into it.
    reach = half + np.ceil(0.6 * half)
    lobes = side_lobes(spots, reach)
    found = spots.positions[~lobes][:_MAX_BEADS]
    keep = _isolated(found, data.shape, half, reach, rejected)
    ceiling = float(data.max())

    crops, origins, centres, widths, totals = [], [], [], [], []
    for pos in found[keep]:
        sl = tuple(slice(p - h, p + h + 1) for p, h in zip(pos, half))
        crop = data[sl]
        # at the integer type's full scale, or clipped lower (a 12-bit camera in a 16-bit file):
        # several pixels at the image's maximum
        if (saturation is not None and crop.max() >= saturation) or np.count_nonzero(crop == ceiling) > 1:
            rejected["saturated"] += 1
            continue
        if _hot(crop, half):
            rejected["narrow"] += 1
            continue
        crop = crop - _shell(crop).mean()  # the mean: a Poisson background's median is biased low
        spot = _fit(crop, half)
        if spot is None:
            rejected["fit"] += 1
            continue
        crops.append(crop)
        origins.append(pos)
        centres.append(np.asarray(spot.centre) - half + pos)
        widths.append(spot.sigma)
        totals.append(crop.sum())
    use = _typical(np.array(totals), np.array(widths).reshape(-1, ndim), rejected)
    if not use.any():
        raise BeadError(f"{len(found)} bead{'s' if len(found) != 1 else ''} found, none usable: "
                        f"{', '.join(f'{n} {REJECT_REASONS[k]}' for k, n in rejected.items() if n)}; "
                        f"{_HINTS[max(rejected, key=rejected.get)]}")
    positions = np.array(centres)[use]
    # the fitted centres onto the box's centre pixel
    mean = _weighted_average([_shift(crops[i], origins[i] - centres[i]) for i in np.flatnonzero(use)])
    shell = _shell(mean)
    # What is left of the background, then the noise floor: clipping noise at 0 alone would leave a
    # positive pedestal all over the box, which widens the PSF.
    mean = mean - shell.mean()
    floor = _FLOOR * shell.std()
    fitted = _fit(mean / mean.max(), np.array(mean.shape) // 2)  # before the floor: noise averages out
    mean[mean < floor] = 0.0
    psf = prepare_psf(mean, ndim=ndim)
    sigma_measured = fitted.sigma if fitted is not None else (math.nan,) * ndim
    sigma = tuple(float(math.sqrt(max(s * s - di * di / 20.0, 0.0))) for s, di in zip(sigma_measured, d))
    return BeadPSF(psf=psf, sigma=sigma, sigma_measured=tuple(float(s) for s in sigma_measured),
                   positions=positions, bead_sigmas=np.array(widths).reshape(-1, ndim)[use],
                   rejected={k: n for k, n in rejected.items() if n}, box=tuple(int(s) for s in size),
                   bead_diameter=tuple(float(v) for v in d))


def _box_size(data: np.ndarray, found: np.ndarray, box: int | Sequence[int] | None) -> tuple[int, ...]:
    ndim = data.ndim
    if box is not None:
        size = tuple(int(b) for b in _per_axis(box, ndim, "box"))
        bad = [b for b in size if b < 3 or b % 2 == 0]
        if bad:
            raise PSFError(f"box {size}: every size must be odd and at least 3")
        too_big = [(b, n) for b, n in zip(size, data.shape) if b > n]
        if too_big:
            raise PSFError(f"box {size} does not fit into the image {data.shape}")
        return size
    # A first look at the brightest beads, in a window of 15 pixels (or the image)
    win = [min(15, n - (1 - n % 2)) // 2 for n in data.shape]
    sigmas = []
    for pos in found[:40]:
        sl = tuple(slice(max(p - w, 0), p + w + 1) for p, w in zip(pos, win))
        crop = data[sl]
        centre = np.array(pos) - [s.start for s in sl]
        if _hot(crop, centre):
            continue
        spot = _fit(crop - np.median(crop), centre)
        if spot is not None and min(spot.sigma) >= _NARROW:
            sigmas.append(spot.sigma)
        if len(sigmas) == 10:
            break
    s = np.median(sigmas, axis=0) if sigmas else np.full(ndim, 1.5)
    s[-2:] = s[-2:].max()  # Y and X alike: a lateral PSF is round unless the optics are broken
    return tuple(int(min(max(2 * math.ceil(5 * si) + 1, 9), n - (1 - n % 2))) for si, n in zip(s, data.shape))


def _isolated(found: np.ndarray, shape: tuple[int, ...], half: np.ndarray, reach: np.ndarray,
              rejected: dict[str, int]) -> np.ndarray:
    """Which beads have their whole box inside the image and no other bead within ``reach``."""
    keep = np.ones(len(found), dtype=bool)
    inside = np.all((found >= half) & (found < np.array(shape) - half), axis=1)
    rejected["edge"] += int((~inside).sum())
    keep &= inside
    for i in np.flatnonzero(keep):
        near = np.all(np.abs(found - found[i]) <= reach, axis=1)
        near[i] = False
        if near.any():
            keep[i] = False
            rejected["crowded"] += 1
    return keep


def _fit(crop: np.ndarray, centre: np.ndarray):
    spot = fit_gaussian(crop, centre=tuple(float(c) for c in centre), sigma=1.5, fit_offset=False)
    ok = (spot.amplitude > 0 and np.isfinite(spot.residual)
          and all(abs(c - h) <= max(2.0, 0.5 * h) for c, h in zip(spot.centre, centre)))
    return spot if ok else None


def _weighted_average(crops: list[np.ndarray]) -> np.ndarray:
    """The background-subtracted ``crops`` summed and scaled to unit sum: each bead weighs by its light.

    Scaling every crop to unit sum first would weigh a faint bead like a bright one and
    amplify its noise by the ratio of their brightness (a bead of 350 photons beside two of
    5000 put the PSF's sigma up to 0.2 px off); with about equal background noise per bead,
    weights proportional to the light are the ones that make the average least noisy.
    """
    total = np.sum(crops, axis=0)
    if not total.sum() > 0:
        raise BeadError("the beads hold no light above their background: check that this is a bead image")
    return total / total.sum()


def _typical(totals: np.ndarray, widths: np.ndarray, rejected: dict[str, int]) -> np.ndarray:
    """Leave out hot pixels always, and clumps, out-of-focus beads and odd narrow spots once there are
    enough beads to know the typical one."""
    if len(totals) == 0:
        return np.zeros(0, dtype=bool)
    width = np.exp(np.log(widths).mean(axis=1))
    narrow = widths.min(axis=1) < _NARROW
    bright = np.zeros_like(narrow)
    wide = np.zeros_like(narrow)
    rest = ~narrow
    faint = np.zeros_like(narrow)
    if rest.sum() >= 5:
        # a noise blob is no bead: the average weighs it little, but its shape is noise
        faint = rest & (totals < _FAINT * np.median(totals[rest]))
        rest &= ~faint
    if rest.sum() >= 5:
        bright = rest & (totals > _BRIGHT * np.median(totals[rest]))
        typical = np.median(width[rest & ~bright])
        wide = rest & ~bright & (width > _WIDE * typical)
        narrow |= rest & ~bright & (width < typical / _WIDE)
    rejected["bright"] += int(bright.sum())
    rejected["wide"] += int(wide.sum())
    rejected["narrow"] += int(narrow.sum())
    rejected["faint"] += int(faint.sum())
    return ~(bright | wide | narrow | faint)


def _per_axis(value: float | Sequence[float], ndim: int, name: str) -> np.ndarray:
    v = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if v.shape not in ((1,), (ndim,)):
        raise PSFError(f"{name} {tuple(v)}: one value, or one per axis ({ndim})")
    return np.broadcast_to(v, (ndim,))


def _hot(crop: np.ndarray, centre: Sequence[int]) -> bool:
    """A hot pixel, not a bead: its neighbours hold less than 3 % of it, as they do for a Gaussian
    narrower than 0.38 px (a PSF sampled at the Nyquist rate gives them a seventh); no fit needed."""
    c = tuple(int(v) for v in centre)
    peak = crop[c] - np.median(crop)
    neighbours = [crop[c[:ax] + (c[ax] + step,) + c[ax + 1:]] for ax in range(crop.ndim) for step in (-1, 1)
                  if 0 <= c[ax] + step < crop.shape[ax]]
    return bool(peak > 0 and np.mean(neighbours) - np.median(crop) < 0.03 * peak)


def _shift(crop: np.ndarray, by: np.ndarray) -> np.ndarray:
    """``crop`` moved by ``by`` pixels (sub-pixel), by the Fourier shift theorem: no interpolation blur."""
    from scipy import ndimage

    return np.fft.ifftn(ndimage.fourier_shift(np.fft.fftn(crop), by)).real


def _shell(crop: np.ndarray) -> np.ndarray:
    """The voxels on the faces of ``crop``."""
    mask = np.ones(crop.shape, dtype=bool)
    mask[tuple(slice(1, -1) for _ in crop.shape)] = False
    return crop[mask]
