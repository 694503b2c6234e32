"""A learned PSF sigma checked against the width of the data's sharpest lines and edges.

The edge fit (:mod:`.psf_edges`) reads structures wider than the PSF (text strokes, the
borders of nuclei) as wider and, after the pixel's own width is taken out, never much
narrower: it is an upper bound. The learning run (:mod:`.learned_psf`) errs both ways. So a
learned sigma is kept when it lies at or just below the edges' width, replaced by it when
it lies above, and said to be unclear when it lies far below (docs/benchmarks.md, "eighth
pass" and "ninth pass").

In 3D the lines and edges are fitted on sums of a few planes (slabs): summing along Z keeps
a line's lateral cross-section (the projection of a Gaussian-blurred line is the line blurred
by the lateral Gaussian) and adds its photons, so the fit reads the *lateral* sigma; the
axial one is not checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .psf_edges import estimate as fit_edges

__all__ = ["EDGE_TOLERANCE", "MAX_IMAGES", "MAX_SIDE", "PIXEL_VARIANCE", "SLABS", "SLAB_PLANES", "cross_check",
           "edge_sigma", "edge_views"]

#: How far (px) a learned sigma may lie below the width of the sharpest lines and edges and
#: still count as confirmed by them (:func:`cross_check`): the accuracy goal of issue 12.
EDGE_TOLERANCE = 0.15

#: Views (2D images, or 3D slabs) the check fits, and the largest side it reads of each: each
#: costs a few seconds (60 windows, three rounds), whatever its size beyond the crop.
MAX_IMAGES, MAX_SIDE = 4, 512

#: Slabs per volume in 3D, and the most planes one sums: a quarter of a 32-plane stack is what
#: was measured; thicker slabs crowd (the sum of all planes read 0.5-1.3 px at 0.7 px).
SLABS, SLAB_PLANES = 4, 8

#: The variance (px**2) a pixel adds to a fitted width: the edge models are Gaussian and erf
#: profiles at pixel centres, while a camera pixel integrates over its area (a box of 1 px,
#: variance 1/12). The network's PSF maps phantom pixels to image pixels without that term.
PIXEL_VARIANCE = 1.0 / 12.0


def edge_views(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The 2D float32 images the edge fit reads: the images themselves (2D), or slabs (3D).

    At most :data:`MAX_IMAGES` views, each cropped to its central :data:`MAX_SIDE` pixels per
    side before it is read (a lazy dask or zarr array then reads only the crop). A volume gives
    :data:`SLABS` slabs, each the sum of up to :data:`SLAB_PLANES` planes around the centre of
    one quarter of its planes.
    """
    views = []
    for img in images:
        if len(views) >= MAX_IMAGES:
            break
        if img.ndim not in (2, 3) or min(img.shape[-2:]) < 32:
            continue
        y0, x0 = [max(0, (n - MAX_SIDE) // 2) for n in img.shape[-2:]]
        crop = img[..., y0: y0 + MAX_SIDE, x0: x0 + MAX_SIDE]
        if img.ndim == 2:
            views.append(np.asarray(crop, dtype=np.float32))
            continue
        z = crop.shape[0]
        n = min(SLABS, z)
        planes = min(SLAB_PLANES, z // n)
        for k in range(n):  # centred in each n-th of the stack
            a = int(round((k + 0.5) * z / n - planes / 2))
            views.append(np.asarray(crop[a: a + planes], dtype=np.float64).sum(0).astype(np.float32))
    return views[:MAX_IMAGES]


def edge_sigma(images: Sequence[np.ndarray]) -> dict | None:
    """The PSF sigma the sharpest lines and edges of ``images`` allow, or None when none fits.

    ``images`` are 2D images or 3D volumes (then the lateral sigma, see the module docstring).

    Returns
    -------
    dict or None
        ``sigma`` (px, the fitted width with :data:`PIXEL_VARIANCE` taken out), ``width`` (the
        fitted width itself), ``n`` (windows used) and ``spread`` (weighted interquartile
        half-range of the windows' widths).
    """
    views = edge_views(images)
    if not views:
        return None
    r = fit_edges(views)
    if not r["n"]:
        return None
    width = float(r["sigma"])
    return {"sigma": math.sqrt(max(width**2 - PIXEL_VARIANCE, 0.0)), "width": width, "n": int(r["n"]),
            "spread": float(r["spread"])}


def _lateral(learned: float | Sequence[float], tol: float, ndim: int) -> float | None:
    """The one sigma the edges are checked against, or None: a 2D estimate per axis, or a 3D
    one whose Y and X differ by more than ``tol`` (the edges give a single lateral width)."""
    if isinstance(learned, (int, float)):
        return float(learned)
    y, x = learned[-2:]
    return 0.5 * (y + x) if ndim == 3 and abs(y - x) <= tol else None


def cross_check(estimate: dict, edge: dict | None, tol: float = EDGE_TOLERANCE, ndim: int = 2) -> dict:
    """A learned sigma checked against the width of the sharpest lines and edges.

    A learned sigma above the edges' width is too wide and the edges' width is used; one
    within ``tol`` below it is confirmed; one further below is not clear (one of the two is
    off, and the data cannot say which): the learned value is kept, the narrower one, since
    too wide a PSF costs far more than too narrow a one, and the message gives both. In 3D
    the lateral sigma (Y and X) is checked and the axial one kept as learned.

    Parameters
    ----------
    estimate : dict
        From :meth:`~.learned_psf.LearnedSigmaTrainer.estimate` without the check.
    edge : dict or None
        From :func:`edge_sigma`; None when no line or edge could be fitted.
    tol : float
        How far below the edges' width a learned sigma still counts as confirmed (px).
    ndim : int
        2 or 3: the estimate's spatial axes (3: ``learned`` is one value or Z, Y, X).

    Returns
    -------
    dict
        A copy of ``estimate`` with ``edges`` (the edge fit, or None) and, where the check
        decided, a new ``sigma``, ``method``, ``clear`` and ``message``.
    """
    out = dict(estimate, edges=edge)
    learned = estimate["learned"]
    lateral = _lateral(learned, tol, ndim)
    what = "lateral sigma" if ndim == 3 else "sigma"
    if edge is None:
        if out["clear"]:
            out["message"] += " (no sharp lines or edges in the data to check it against)"
        return out
    e = round(float(edge["sigma"]), 4)
    if not out["clear"] or lateral is None:  # unclear already, or Y and X apart
        out["message"] += f"; the sharpest lines and edges measure {e:.2f} px"
        return out
    z = learned if isinstance(learned, (int, float)) else learned[0]
    axial = "" if ndim == 2 else f"; the axial sigma, {z:.2f} px, is as learned, not checked"
    if lateral > e:
        sigma = e if ndim == 2 else [float(z), e, e]
        out |= {"method": "edges", "sigma": sigma,
                "message": f"PSF {what} from the data: {e:.2f} px, the width of its sharpest lines and edges "
                           f"({edge['n']} fits); the network learned {lateral:.2f} px, wider than they allow{axial}"}
    elif lateral >= e - tol:
        out["message"] += f", {'lateral sigma ' if ndim == 3 else ''}confirmed by the sharpest lines and edges " \
                          f"({e:.2f} px){axial}"
    else:
        out |= {"clear": False,
                "message": f"PSF {what}: the data gave no clear answer: the network learned {lateral:.2f} px, "
                           f"its sharpest lines and edges measure {e:.2f} px (edges read structures wider than "
                           f"the PSF as wider; the network reads some data too narrow); using the learned "
                           f"value. A PSF measured on beads avoids the guess ('deconoising beads', "
                           "or Measure PSF from beads in napari)"}
    return out
