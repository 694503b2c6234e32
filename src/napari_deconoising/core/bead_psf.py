"""The result of measuring a PSF from beads (:func:`.beads.distill_psf`), and its report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BeadPSF", "REJECT_REASONS", "edge_level", "fwhm"]

_EDGE = 0.05  # of the brightest slice's light, on a face of the box: worth a warning
_UNDERSAMPLED = 0.6  # px: below this the pixel grid limits the measured width

#: Why a detected bead was left out, in the order they are checked.
REJECT_REASONS = {
    "edge": "too close to the image edge",
    "crowded": "another bead within its box",
    "saturated": "saturated",
    "bright": "much brighter than the typical bead (a clump?)",
    "wide": "much wider than the typical bead (out of focus or a clump?)",
    "narrow": "much narrower than a bead (a hot pixel?)",
    "faint": "much fainter than the typical bead (noise?)",
    "fit": "no Gaussian could be fitted",
}

@dataclass(frozen=True)
class BeadPSF:
    """The result of :func:`distill_psf`.

    Attributes
    ----------
    psf : numpy.ndarray
        The averaged PSF: float32, odd-sized, centred, non-negative, sums to 1.
    sigma : tuple of float
        Gaussian sigma of ``psf`` per axis (Z, Y, X or Y, X), in pixels (Z in planes),
        corrected for the bead's size when one was given.
    sigma_measured : tuple of float
        The same before the bead-size correction.
    positions : numpy.ndarray
        ``(n, ndim)`` sub-pixel centres of the beads that were averaged, image coordinates.
    bead_sigmas : numpy.ndarray
        ``(n, ndim)`` Gaussian sigma of each averaged bead, pixels.
    rejected : dict
        Reason (a key of :data:`REJECT_REASONS`) -> number of beads left out for it.
    box : tuple of int
        Size of the box (and of ``psf``) per axis.
    bead_diameter : tuple of float
        The bead diameter taken out of ``sigma``, pixels per axis (0: none).
    """

    psf: np.ndarray
    sigma: tuple[float, ...]
    sigma_measured: tuple[float, ...]
    positions: np.ndarray
    bead_sigmas: np.ndarray
    rejected: dict[str, int] = field(default_factory=dict)
    box: tuple[int, ...] = ()
    bead_diameter: tuple[float, ...] = ()

    @property
    def n_beads(self) -> int:
        """How many beads were averaged."""
        return len(self.positions)

    @property
    def sigma_spread(self) -> tuple[float, ...]:
        """Standard deviation of the single beads' sigmas per axis (0 for a single bead)."""
        if self.n_beads < 2:
            return (0.0,) * self.bead_sigmas.shape[1]
        return tuple(float(v) for v in self.bead_sigmas.std(axis=0, ddof=1))

    def summary(self, spacing_nm: Sequence[float | None] | None = None) -> str:
        """A few lines for the user: beads used, sigma per axis (and in nm where ``spacing_nm``, the
        pixel size per axis, is known), FWHM, consistency, and what to do about a weak result."""
        names = "zyx"[-len(self.sigma):]
        nm = list(spacing_nm) if spacing_nm is not None else [None] * len(self.sigma)
        unit = ["planes" if a == "z" else "px" for a in names]
        sig = ", ".join(f"{a} {s:.2f} {u}" + (f" ({s * d:.0f} nm)" if d else "")
                        for a, s, u, d in zip(names, self.sigma, unit, nm))
        lines = [f"{self.n_beads} bead{'s' if self.n_beads != 1 else ''} averaged in a "
                 f"{' x '.join(map(str, self.box))} box; left out: {self.rejected_text()}",
                 f"Gaussian sigma: {sig}"]
        widths = fwhm(self.psf)
        lines.append("FWHM (measured profile): " + ", ".join(
            f"{a} {w * d:.0f} nm" if d else f"{a} {w:.2f} {u}" for a, w, u, d in zip(names, widths, unit, nm)))
        if any(self.bead_diameter):
            lines.append("bead size taken out; as measured: "
                         + ", ".join(f"{a} {s:.2f}" for a, s in zip(names, self.sigma_measured)))
        spread = self.sigma_spread
        lines.append("single beads vary by " + ", ".join(f"{a} ±{v:.2f}" for a, v in zip(names, spread)))
        edge = edge_level(self.psf)
        if edge > _EDGE:
            lines.append(f"a face of the box still holds {edge:.0%} of the brightest slice's light: a larger box "
                         "would hold more of the PSF (widefield stacks spread far along Z)")
        # measured (a review, NA 1.4, FWHM 230 nm): 100 and 200 nm beads corrected within 2 %, 500 nm 38 % off
        big = [a for a, d, w in zip(names, self.bead_diameter, widths) if d > w]
        if big:
            lines.append(f"the beads are wider than the FWHM ({', '.join(big)}): the size correction "
                         "is only approximate; beads well below the resolution measure the PSF better")
        if min(self.sigma_measured) < _UNDERSAMPLED:
            lines.append("the PSF is narrower than 0.6 px: the image samples it too coarsely for a precise "
                         "width (a smaller pixel size, or more magnification, would)")
        if self.n_beads < 5:
            lines.append(f"only {self.n_beads} bead{'s' if self.n_beads != 1 else ''}: the average is noisy; "
                         "image more isolated beads for a firmer PSF")
        if any(v > 0.15 * s for v, s in zip(spread, self.sigma_measured)):
            lines.append("the beads differ in width by more than 15 %: some may be out of focus, or the field "
                         "is not flat; check the beads used")
        return "\n".join(lines)

    def rejected_text(self) -> str:
        """``"3 too close to the image edge, 1 saturated"``, or ``"none"``."""
        parts = [f"{n} {REJECT_REASONS[k]}" for k, n in self.rejected.items() if n]
        return ", ".join(parts) if parts else "none"


def fwhm(psf: np.ndarray) -> tuple[float, ...]:
    """Full width at half maximum per axis, in pixels, read off the line profiles through the peak.

    Measured, not from a Gaussian fit: for a diffraction-limited PSF (an Airy core with rings)
    a fitted Gaussian is wider than the core. NaN where a profile does not fall below half
    its maximum inside the array.
    """
    a = np.asarray(psf, dtype=np.float64)
    peak = np.unravel_index(int(np.argmax(a)), a.shape)
    out = []
    for axis in range(a.ndim):
        index = list(peak)
        index[axis] = slice(None)
        line = a[tuple(index)] / a[peak]
        c = peak[axis]
        sides = []
        for step in (-1, 1):
            i = c
            while 0 <= i + step < len(line) and line[i + step] >= 0.5:
                i += step
            if not 0 <= i + step < len(line):
                sides.append(np.nan)
                break
            # linear interpolation between the last sample above half and the first below
            y0, y1 = line[i], line[i + step]
            sides.append(abs(i - c) + (y0 - 0.5) / (y0 - y1))
        out.append(float(sum(sides)) if len(sides) == 2 else float("nan"))
    return tuple(out)


def edge_level(psf: np.ndarray) -> float:
    """How much of the PSF the box cuts off: the light on a face of the box as a fraction of the
    brightest parallel slice's (for a widefield stack, whose every plane holds about the same light,
    the Z faces come close to 1)."""
    a = np.asarray(psf, dtype=np.float64)
    levels = []
    for ax in range(a.ndim):
        sums = a.sum(axis=tuple(i for i in range(a.ndim) if i != ax))
        if sums.max() > 0:
            levels.append(max(sums[0], sums[-1]) / sums.max())
    return float(max(levels, default=0.0))
