"""PSFs from optics: how they compare with their Gaussian approximation, and does it matter?

Part 1 (seconds): for a few objectives, the lateral and axial FWHM of the PSF computed by
``psf`` (Richards-Wolf), the Gaussian sigma of Zhang et al. 2007 and a least-squares
Gaussian fitted to the computed PSF, on a fine grid (lambda/NA / 20 pixels, n lambda/NA^2 / 10
Z steps).

Part 2 (``--train``, minutes): a synthetic phantom blurred with the computed in-focus PSF
of an NA 1.4 oil objective (65 nm pixels) plus shot and read noise; DecoNoising trained
with that PSF ("From optics") and with the Gaussian of the same optics, and Noise2Void.
PSNR of denoised vs clean and deconvolved vs phantom.

Usage::

    python benchmarks/optics.py            # part 1
    python benchmarks/optics.py --train    # both parts (one seed; --steps, --seed)
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from scipy.optimize import curve_fit

from napari_deconoising.core import PSFConvolution, TrainConfig, train
from napari_deconoising.core.optics import Optics, gaussian_sigma, optics_psf
from napari_deconoising.core.sample import camera_noise, make_phantom, psnr

OBJECTIVES = [  # (label, na, n, emission nm)
    ("NA 0.3 air", 0.3, 1.0, 520), ("NA 0.8 air", 0.8, 1.0, 520),
    ("NA 1.2 water", 1.2, 1.333, 600), ("NA 1.4 oil", 1.4, 1.518, 520),
]


def fwhm(profile: np.ndarray, step: float) -> float:
    p = profile / profile.max()
    right = p[len(p) // 2:]
    i = int(np.argmax(right < 0.5))
    return 2 * step * (i - 1 + (right[i - 1] - 0.5) / (right[i - 1] - right[i]))


def fit_sigma(k: np.ndarray) -> np.ndarray:
    grids = [g - (n - 1) / 2 for g, n in zip(np.indices(k.shape, dtype=float), k.shape)]

    def gauss(_x, a, *s):
        return (a * np.exp(-0.5 * sum((g / si) ** 2 for g, si in zip(grids, s)))).ravel()

    p, _ = curve_fit(gauss, None, k.ravel(), p0=[k.max()] + [2.0] * k.ndim)
    return np.abs(p[1:])


def table() -> None:
    print("| objective | modality | lateral FWHM | in λ/NA | axial FWHM | Zhang σ_r / fitted 2D σ | "
          "Zhang σ_z / fitted 3D σ_z |")
    print("|---|---|---|---|---|---|---|")
    for label, na, n, lam in OBJECTIVES:
        for modality in ("widefield", "confocal"):
            px, dz = lam / na / 20, n * lam / na**2 / 10
            o = Optics(na=na, wavelength_nm=lam, n_immersion=n, pixel_nm=px, z_step_nm=dz, modality=modality,
                       excitation_nm=lam - 32 if modality == "confocal" else None)
            k2, k3 = optics_psf(o, ndim=2), optics_psf(o, ndim=3)
            sz, sr, _ = gaussian_sigma(o)
            f2, f3 = fit_sigma(k2)[0], fit_sigma(k3)[0]
            lat = fwhm(k2[k2.shape[0] // 2], px)
            ax = fwhm(k3[:, k3.shape[1] // 2, k3.shape[2] // 2], dz)
            print(f"| {label}, {lam} nm | {modality} | {lat:.0f} nm | {lat / (lam / na):.3f} | {ax:.0f} nm | "
                  f"{sr * px:.0f} / {f2 * px:.0f} nm ({f2 / sr:.2f}x) | {sz * dz:.0f} / {f3 * dz:.0f} nm "
                  f"({f3 / sz:.2f}x) |")


def training(steps: int, seed: int) -> None:
    o = Optics(na=1.4, wavelength_nm=520, n_immersion=1.518, pixel_nm=65, z_step_nm=200)
    kernel = optics_psf(o)
    sigma = gaussian_sigma(o)[1]
    rng = np.random.default_rng(seed + 10_000)
    phantom = make_phantom((256, 256), seed=seed) * np.float32(30.0)
    with torch.no_grad():
        clean = PSFConvolution(kernel)(torch.from_numpy(phantom)[None, None]).numpy()[0, 0]
    clean = np.clip(clean, 0, None)
    noisy = camera_noise(clean, 2.0, rng)
    print(f"\n{o.describe()}: kernel {kernel.shape}; raw PSNR {psnr(clean, noisy):.2f} dB vs clean, "
          f"{psnr(phantom, noisy):.2f} dB vs phantom; {steps} steps, seed {seed}")
    base = TrainConfig(depth=2, channels=16, patch_size=64, batch_size=16, epochs=steps // 10, steps_per_epoch=10,
                       seed=seed, device="cpu", precision="fp32")
    runs = [("From optics (computed PSF)", base.replace(psf="measured", optics=o), kernel),
            (f"Gaussian sigma {sigma:.2f} px (Zhang)", base.replace(psf_sigma=sigma), None),
            ("Noise2Void", base.replace(psf="none"), None)]
    print("| PSF in the model | denoised vs clean | deconvolved vs phantom | seconds |\n|---|---|---|---|")
    for label, cfg, psf in runs:
        t0 = time.perf_counter()
        model = train(noisy, cfg, psf=psf)
        pred = model.predict(noisy, "YX", device="cpu")
        print(f"| {label} | {psnr(clean, pred.denoised):.2f} dB | {psnr(phantom, pred.deconvolved):.2f} dB | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", action="store_true")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    table()
    if args.train:
        training(args.steps, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
