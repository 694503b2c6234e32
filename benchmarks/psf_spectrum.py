"""Does the data itself say how wide the PSF is? A training-free check for ``--psf-sigma auto``.

The power spectrum of a noisy image is ``|H(f)|**2 * P_phantom(f) + N``. With a Gaussian PSF,
``|H(f)|**2 = exp(-4 pi**2 sigma**2 f**2)``; modelling the phantom's spectrum as a power law
``A f**-alpha`` and the noise as flat, a least-squares fit of the radially averaged spectrum
(log scale, Hann window, mean over the dataset's images) gives a sigma without any network.

What it shows: whatever blur the *phantom* carries itself (a filament splatted onto the pixel
grid, a disc's pixelated edge) looks exactly like PSF width, in the spectrum and therefore to
any method that sees only the noisy data. ``--sigmas 0`` with ``--clean`` fits the noise-free
phantom, i.e. that intrinsic width.

Usage::

    python benchmarks/psf_spectrum.py --datasets text,filaments --sigmas 0 0.7 1.5 2.5 --seeds 0 1 2
    python benchmarks/psf_spectrum.py --datasets filaments --sigmas 0 --clean
    python benchmarks/psf_spectrum.py --sigmas 0.7 1.0 1.5 2.0 2.5 --noise corners
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import datasets  # noqa: E402


def power_spectrum(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed 2D power spectrum and the radial frequency ``|f|`` of each of its entries."""
    img = image.astype(np.float64) - image.mean()
    win = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    power = np.abs(np.fft.fft2(img * win)) ** 2 / (win**2).sum()
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(img.shape[0]), np.fft.fftfreq(img.shape[1]), indexing="ij"))
    return f, power


def corner_noise(image: np.ndarray, f_min: float = 0.6) -> float:
    """The flat noise level, read where a PSF of 0.5 px or wider has left no signal: the spectrum's
    corners beyond ``|f| = f_min`` (up to 0.707), outside the radial average's range."""
    f, power = power_spectrum(image)
    return float(power[f > f_min].mean())


def radial_spectrum(image: np.ndarray, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed power spectrum of a 2D image, averaged over rings of ``|f|`` up to 0.5."""
    f, power = power_spectrum(image)
    edges = np.linspace(0, 0.5, bins + 1)
    idx = np.digitize(f.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < bins)
    total = np.bincount(idx[ok], power.ravel()[ok], bins)
    count = np.bincount(idx[ok], None, bins)
    return 0.5 * (edges[1:] + edges[:-1]), total / np.maximum(count, 1)


def fit_sigma(freqs: np.ndarray, power: np.ndarray, f_min: float = 0.02, noise: float | None = None) -> dict:
    """Fit ``log(A f**-alpha exp(-4 pi**2 sigma**2 f**2) + N)`` to the spectrum above ``f_min``.

    ``noise``: the flat level ``N``, known (e.g. :func:`corner_noise`) instead of fitted.
    """
    keep = freqs > f_min
    f, p = freqs[keep], power[keep]

    def residual(q: np.ndarray) -> np.ndarray:
        log_a, alpha, sigma = q[:3]
        n = np.exp(q[3]) if noise is None else noise
        model = np.exp(log_a - alpha * np.log(f) - 4 * np.pi**2 * sigma**2 * f**2) + n
        return np.log(model) - np.log(p)

    free = noise is None
    start = [np.log(p[0]) + 2 * np.log(f[0]), 2.0, 1.5] + ([np.log(p[-5:].mean())] if free else [])
    res = least_squares(residual, start, bounds=([-50, -1, 0.05] + [-50] * free, [50, 6, 6] + [50] * free))
    return {"sigma": float(res.x[2]), "alpha": float(res.x[1]), "rms_log_residual": float(np.sqrt(np.mean(res.fun**2)))}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="text,filaments")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.7, 1.5, 2.5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data seeds")
    ap.add_argument("--clean", action="store_true", help="fit the noise-free image instead of the noisy one")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--noise", choices=["fit", "corners"], default="fit",
                    help="the noise level: fitted with the rest (default), or read from the spectrum's corners")
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "psf_spectrum")
    a = ap.parse_args(argv)
    info = common.machine_info()
    print(common.machine_line(info), flush=True)
    rows = []
    for name in a.datasets.split(","):
        for sigma in a.sigmas:
            fits = []
            for seed in a.seeds:
                ds = datasets.make(name, 3, a.size, seed=seed, log=lambda *_: None, sigma=sigma)
                if ds is None:
                    break
                images = ds.clean if a.clean else ds.noisy
                spectra = [radial_spectrum(im) for im in images]
                noise = float(np.mean([corner_noise(im) for im in images])) if a.noise == "corners" else None
                fits.append(fit_sigma(spectra[0][0], np.mean([s[1] for s in spectra], axis=0), noise=noise))
            if fits:
                rows.append({"dataset": name, "true_sigma": sigma, "clean": a.clean, "seeds": a.seeds, "fits": fits})
                print(f"{name:10s} true {sigma:.2f} px: fitted " + ", ".join(f"{x['sigma']:.2f}" for x in fits)
                      + " px (alpha " + ", ".join(f"{x['alpha']:.1f}" for x in fits) + ")", flush=True)
    common.write_summary(a.out, "psf_spectrum.json", {"machine": info, "args": {k: str(v) for k, v in vars(a).items()},
                                                      "rows": rows})
    return rows


if __name__ == "__main__":
    main()
