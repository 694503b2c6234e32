"""Finding bead candidates in a bead image (the first step of :func:`.beads.distill_psf`).

Real bead images are not flat: illumination falls off towards the corners, and a widefield
stack's out-of-focus rings make maxima of their own next to every bead. So the background
is local (a minimum filter wider than any bead, smoothed: a rolling-ball estimate), the
noise is measured against it, and a maximum much fainter than a brighter one close by is
taken as part of that bead (a ring or side lobe), not as a bead of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .psf import PSFError

__all__ = ["BeadError", "Spots", "detect_spots", "side_lobes"]

#: Width (pixels, per axis, at most the image) of the minimum filter behind the local background.
BACKGROUND_WINDOW = 31
#: A maximum fainter than this fraction of a brighter one within its reach is part of that bead.
LOBE = 0.25


class BeadError(PSFError):
    """No usable beads: none found, or every one left out (the message says why)."""


@dataclass(frozen=True)
class Spots:
    """Candidate beads, brightest first: integer positions and their height above the local background."""

    positions: np.ndarray
    heights: np.ndarray
    noise: float


def detect_spots(data: np.ndarray, smooth: float, threshold: float) -> Spots:
    """Local maxima of the smoothed image that stand ``threshold`` noise levels above the local background.

    Parameters
    ----------
    data : numpy.ndarray
        The bead image, 2D or 3D, float.
    smooth : float
        Sigma (pixels) of the Gaussian smoothing that detection sees.
    threshold : float
        Noise levels (robust standard deviations of the smoothed image around its local
        background) a maximum must stand above it.

    Returns
    -------
    Spots
        Brightest first.

    Raises
    ------
    BeadError
        When no maximum does.
    """
    from scipy import ndimage

    smoothed = ndimage.gaussian_filter(data, smooth)
    window = [min(BACKGROUND_WINDOW, n) for n in data.shape]
    background = ndimage.gaussian_filter(ndimage.minimum_filter(smoothed, size=window, mode="nearest"),
                                         [w / 4 for w in window])
    signal = smoothed - background
    # the minimum filter sits below the noise: measure the noise around the residual's median
    centre = float(np.median(signal))
    noise = 1.4826 * float(np.median(np.abs(signal - centre)))
    if noise <= 0:  # sparse counts (most pixels 0 photons) or a flat simulated background
        quiet = signal[signal <= np.percentile(signal, 99)]  # leave the beads' brightest pixels out
        noise = float(quiet.std()) or max(float(signal.std()), 1e-12) * 1e-3
    level = centre + threshold * noise
    peaks = (smoothed == ndimage.maximum_filter(smoothed, size=3, mode="nearest")) & (signal > level)
    found = np.argwhere(peaks)
    if len(found) == 0:
        raise BeadError(f"no beads found: no spot stands {threshold:g} noise levels above the local background "
                        f"(noise {noise:.3g} after smoothing); lower the threshold if the beads are faint, or check "
                        "that this is a bead image")
    heights = signal[tuple(found.T)] - centre
    order = np.argsort(-heights, kind="stable")
    return Spots(found[order], heights[order], noise)


def side_lobes(spots: Spots, reach: np.ndarray) -> np.ndarray:
    """Which spots lie within ``reach`` (pixels per axis) of a spot more than ``1 / LOBE`` times as high.

    Returns a boolean mask over ``spots.positions``: True for a ring or side lobe of a brighter spot.
    """
    pos, h = spots.positions, spots.heights
    lobe = np.zeros(len(pos), dtype=bool)
    for i in range(len(pos)):  # brightest first: a lobe's own lobes are its bead's too
        if lobe[i]:
            continue
        near = np.all(np.abs(pos[i + 1:] - pos[i]) <= reach, axis=1) & (h[i + 1:] < LOBE * h[i])
        lobe[i + 1:] |= near
    return lobe
