"""A training-free PSF width: edge and line models fitted on the raw pixels of the sharpest structures.

A thin line (a filament narrower than the PSF) has a Gaussian cross-section of width sigma, a
sharp step edge an erf profile of width sigma. Candidate windows are found on a lightly
smoothed copy (gradient magnitude for edges, Hessian ridge strength for lines), then in each
round window a straight-or-gently-curved structure is fitted on the *raw* noisy pixels (no
interpolation, which would add blur), weighted by a noise model ``var = gain * mean + offset``
estimated from the image itself::

    edge: a + b * Phi(u / s)                 u = n . x - d + kappa * v**2 / 2
    line: a + b * exp(-u**2 / (2 s**2))
    bar:  a + b * [Phi((u + w/2) / s) - Phi((u - w/2) / s)]     (kept only when clearly better)

Windows whose fit is poor or weak are dropped; the widths are combined by an inverse-variance
weighted median, in three rounds (window radius ``3 sigma + 2`` from the previous round).

What it is good for (docs/benchmarks.md, "seventh pass" and "eighth pass"): within 0.15 px on
thin filaments in 14 of 15 runs, but structures wider than the PSF (text strokes, the edges of
nuclei) read their own width too. It read more than 0.1 px *narrower* than the truth in none of
45 runs, so it is an upper bound the learned sigma is checked against (:mod:`.psf_check`, which
also takes the pixel's own width out of the fitted one).
"""

from __future__ import annotations

import numpy as np

__all__ = ["candidates", "estimate", "fit_window", "noise_model", "typical_strength", "weighted_median"]


def noise_model(image: np.ndarray, bins: int = 24) -> tuple[float, float]:
    """Fit ``var = gain * mean + offset`` from the residual of each pixel to its 4 neighbours.

    Returns
    -------
    (gain, offset) : tuple of float
        Local variances are binned by the local mean; the median per bin is robust against the
        few windows that hold an edge.
    """
    from scipy import ndimage

    img = image.astype(np.float64)
    k = np.array([[0, -0.25, 0], [-0.25, 1, -0.25], [0, -0.25, 0]])
    e = ndimage.convolve(img, k, mode="reflect")
    m = ndimage.uniform_filter(img, 7)
    v = ndimage.uniform_filter(e**2, 7) / 1.25
    edges = np.quantile(m, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.digitize(m.ravel(), edges) - 1, 0, bins - 1)
    full = [i for i in range(bins) if np.any(idx == i)]  # flat noise-free images leave bins empty
    mx = np.array([np.median(m.ravel()[idx == i]) for i in full])
    vy = np.array([np.median(v.ravel()[idx == i]) for i in full])
    if len(full) < 3 or np.ptp(mx) == 0:
        return 0.0, float(max(np.median(vy), 1e-12))
    gain, offset = np.polyfit(mx, vy, 1)
    if gain < 0:
        gain, offset = 0.0, float(np.median(vy))
    return float(gain), float(max(offset, 1e-6 * max(vy.max(), 1e-12)))


def typical_strength(strength: np.ndarray, live: np.ndarray) -> float:
    """The median of ``strength`` where ``live`` (the image is not exactly flat), at least 1e-12
    of its maximum (1 when nothing is live or all is 0).

    Zero-padded, stitched or clipped images are exactly flat there, often over more than half of
    the image: the median of all pixels would be 0, and dividing by it dropped every candidate.
    Where the image is not flat the zeros stay in (a ridge strength is 0 in every valley), so
    edges and ridges are ranked as before.
    """
    values = strength[live]
    top = float(values.max()) if values.size else 0.0
    if top <= 0:
        return 1.0
    return float(max(np.median(values), 1e-12 * top))


def candidates(image: np.ndarray, scale: float, radius: int, per_image: int) -> list[tuple[int, int, float]]:
    """Strongest edge and ridge points ``(y, x, normal angle)``, at least ``radius`` apart."""
    from scipy import ndimage

    img = image.astype(np.float64)
    gy = ndimage.gaussian_filter(img, scale, order=(1, 0))
    gx = ndimage.gaussian_filter(img, scale, order=(0, 1))
    hyy = ndimage.gaussian_filter(img, scale, order=(2, 0))
    hxx = ndimage.gaussian_filter(img, scale, order=(0, 2))
    hxy = ndimage.gaussian_filter(img, scale, order=(1, 1))
    lam = 0.5 * (hxx + hyy) - np.sqrt(0.25 * (hxx - hyy) ** 2 + hxy**2)  # most negative
    edge = np.hypot(gx, gy) * scale
    ridge = np.clip(-lam, 0, None) * scale**2
    # Flat (padding) where the gradient is 0 all around: a single 0 is the centre of a symmetric line.
    live = ndimage.maximum_filter(edge, 3) > 0
    pts = []
    for strength, kind in ((edge, 0), (ridge, 1)):
        s = strength / typical_strength(strength, live)
        peak = (s == ndimage.maximum_filter(s, 3)) & (s > 0)  # a flat area is no candidate
        inner = np.zeros_like(peak)
        inner[radius + 1: -radius - 1, radius + 1: -radius - 1] = True
        peak &= inner
        ys, xs = np.nonzero(peak)
        for y, x in zip(ys, xs):
            if kind == 0:
                theta = np.arctan2(gy[y, x], gx[y, x])
            else:  # normal of the ridge: eigenvector of the most negative eigenvalue
                theta = np.arctan2(lam[y, x] - hxx[y, x], hxy[y, x]) if abs(hxy[y, x]) > 1e-12 else (
                    0.0 if hxx[y, x] < hyy[y, x] else np.pi / 2)
            pts.append((s[y, x], y, x, theta))
    pts.sort(key=lambda p: -p[0])
    taken = np.zeros(img.shape, bool)
    out = []
    for _, y, x, theta in pts:
        if taken[y, x]:
            continue
        out.append((int(y), int(x), float(theta)))
        taken[max(0, y - radius): y + radius + 1, max(0, x - radius): x + radius + 1] = True
        if len(out) >= per_image:
            break
    return out


def _profile(kind: str, u: np.ndarray, s: float, w: float) -> np.ndarray:
    from scipy.special import ndtr

    if kind == "edge":
        return ndtr(u / s)
    if kind == "line":
        return np.exp(-0.5 * (u / s) ** 2)
    return ndtr((u + w / 2) / s) - ndtr((u - w / 2) / s)


def fit_window(image, noise, y, x, theta, radius, s0, bar_gain=25.0, plane=False):  # noqa: PLR0913
    """Fit the edge, line and bar models in the round window around ``(y, x)``; keep the best.

    A bar (stroke of width ``w``) replaces the line only when it lowers chi-square by more than
    ``bar_gain``: for a stroke narrower than the PSF, ``w`` and ``s`` trade off
    (``s**2 + w**2 / 12`` is what the data fixes), and a free ``w`` then pulls ``s`` low.

    Returns
    -------
    dict or None
        ``sigma``, its standard error ``se``, ``kind``, ``chi2`` (reduced), ``detection`` (chi-square
        drop against a flat window), or None when no fit converged.
    """
    from scipy import ndimage
    from scipy.optimize import least_squares

    yy, xx = np.mgrid[-radius: radius + 1, -radius: radius + 1]
    inside = yy**2 + xx**2 <= radius**2
    yr, xr = yy[inside].astype(float), xx[inside].astype(float)
    crop = image[y - radius: y + radius + 1, x - radius: x + radius + 1].astype(np.float64)
    data = crop[inside]
    std = np.sqrt(np.maximum(noise[0] * ndimage.uniform_filter(crop, 3)[inside] + noise[1], noise[1]))
    wy = data / std
    flat = float(np.sum((wy - (wy @ (1 / std)) / np.sum(1 / std**2) / std) ** 2))
    fits = {}
    for kind in ("edge", "line", "bar"):
        def resid(p, kind=kind):
            th, d, kappa, ls = p[:4]
            w = np.exp(p[4]) if kind == "bar" else 0.0
            v = -xr * np.sin(th) + yr * np.cos(th)
            u = xr * np.cos(th) + yr * np.sin(th) - d + 0.5 * kappa * v**2
            cols = [np.ones_like(u), _profile(kind, u, np.exp(ls), w)] + ([xr, yr] if plane else [])
            a = np.stack(cols, 1) / std[:, None]
            coef, *_ = np.linalg.lstsq(a, wy, rcond=None)
            return a @ coef - wy
        bar = kind == "bar"
        p0 = [theta, 0.0, 0.0, np.log(s0)] + [np.log(1.5)] * bar
        lo = [theta - 1.0, -radius / 2, -0.3, np.log(0.3)] + [np.log(0.3)] * bar
        hi = [theta + 1.0, radius / 2, 0.3, np.log(radius)] + [np.log(2.0 * radius)] * bar
        try:
            r = least_squares(resid, p0, bounds=(lo, hi), max_nfev=200)
            cov = np.linalg.inv(r.jac.T @ r.jac)
        except (ValueError, np.linalg.LinAlgError):
            continue
        rss = float(np.sum(r.fun**2))
        chi2 = rss / (data.size - len(p0) - 2 - 2 * plane)
        se = float(np.exp(r.x[3]) * np.sqrt(max(cov[3, 3], 0) * max(chi2, 1.0)))
        if np.isfinite(se) and se > 0:
            fits[kind] = {"sigma": float(np.exp(r.x[3])), "se": se, "kind": kind, "chi2": chi2, "rss": rss,
                          "detection": flat - rss, "width": float(np.exp(r.x[4])) if bar else None}
    if not fits:
        return None
    best = min((f for k, f in fits.items() if k != "bar"), key=lambda f: f["rss"], default=fits.get("bar"))
    if "bar" in fits and (best is None or fits["bar"]["rss"] < best["rss"] - bar_gain):
        best = fits["bar"]
    return best


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    c = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(c, 0.5 * c[-1])])


def estimate(images: np.ndarray, per_image: int = 60, max_chi2: float = 1.5,
             s_start: float = 1.0, min_detection: float = 100.0,
             rounds: int = 3, plane: bool = False, bar_gain: float = 25.0) -> dict:
    """A rough width from small windows, then (``rounds - 1`` times) windows sized to it.

    ``plane``: a linear background in each window (measured: worse, it trades with wide profiles).

    Returns
    -------
    dict
        ``sigma`` (weighted median), ``n`` windows used, ``spread`` (weighted interquartile half-range),
        ``first`` (the first pass' value) and the per-window fits.
    """
    s = s_start
    result = {}
    noises = []  # once per image: it does not change between rounds
    for img in images:
        gain, offset = noise_model(img)
        noises.append((gain, max(offset, (0.01 * img.std()) ** 2)))  # a floor for noise-free images
    for rnd in range(rounds):
        radius = int(np.clip(np.ceil(3 * s + 2), 4, 12))
        fits = []
        for img, noise in zip(images, noises):
            for y, x, th in candidates(img, max(0.7, 0.7 * s), radius, per_image):
                f = fit_window(img, noise, y, x, th, radius, s, bar_gain=bar_gain, plane=plane)
                if f is not None:
                    fits.append(f)
        ok = [f for f in fits if f["chi2"] < max_chi2 and f["detection"] > min_detection
              and 0.31 < f["sigma"] < 0.95 * radius]
        if not ok:
            return {"sigma": float("nan"), "n": 0, "spread": float("nan"), "first": s, "fits": []}
        vals = np.array([f["sigma"] for f in ok])
        wts = 1.0 / np.array([f["se"] for f in ok]) ** 2
        s = weighted_median(vals, wts)
        q1, q3 = weighted_median(vals, wts * (vals <= s)), weighted_median(vals, wts * (vals >= s))
        result = {"sigma": s, "n": len(ok), "n_tried": len(fits), "spread": 0.5 * (q3 - q1), "radius": radius,
                  "round": rnd, "first": result.get("sigma", s), "fits": ok}
    return result
