"""Sample data: noisy diffraction-limited images with their ground truth, and beads.

The image samples are made by the core: a sharp "phantom" is blurred with a Gaussian PSF
(the noise-free "clean" image, the target of denoising) and then Poisson (shot)
and Gaussian (read) noise are added. The phantom is the target of deconvolution.
The bead sample is an image of sub-resolution beads whose PSF is known, to measure it
with the "Measure PSF from beads" widget.
"""

from __future__ import annotations

from importlib.resources import as_file, files

import numpy as np

from .core.io import ImageFileError, read_image
from .core.sample import camera_noise, gaussian_blur, make_sample
from .core.sample3d import make_sample_3d
from .core.sample_beads import make_beads

__all__ = ["synthetic_sample", "synthetic_sample_3d", "nuclei_sample", "beads_sample", "load_nuclei_crop",
           "make_noisy", "NUCLEI_SIGMA", "BEADS_SIGMA", "BEADS_PIXEL_UM"]

#: Gaussian PSF sigma (px) used for the nuclei sample.
NUCLEI_SIGMA = 2.0
#: Gaussian PSF sigma (px) of the bead sample, and its pixel size (µm): 1.3 px at 65 nm is the
#: sigma of a 1.4 NA oil objective at 520 nm (0.21 * 520 / 1.4 = 78 nm).
BEADS_SIGMA = 1.3
BEADS_PIXEL_UM = 0.065


def _layers(stem: str, noisy, clean, phantom, sigma, source: str, scale: tuple | None = None) -> list[tuple]:
    meta = {
        "napari-deconoising sample": {
            "psf_sigma_px": list(sigma) if isinstance(sigma, tuple) else sigma,
            "source": source,
            "noise": "Poisson + Gaussian read noise",
        }
    }
    layers = [
        (
            phantom,
            {
                "name": f"{stem} ground truth",
                "visible": False,
                "colormap": "gray",
                "metadata": {**meta, "role": "phantom (deconvolution target)"},
            },
            "image",
        ),
        (
            clean,
            {
                "name": f"{stem} clean",
                "visible": False,
                "colormap": "gray",
                "metadata": {**meta, "role": "blurred, noise-free (denoising target)"},
            },
            "image",
        ),
        (
            noisy,
            {
                "name": f"{stem} noisy",
                "colormap": "gray",
                "metadata": {**meta, "role": "noisy input"},
            },
            "image",
        ),
    ]
    if scale is not None:
        for _, kwargs, _ in layers:
            kwargs["scale"] = scale
    return layers


def synthetic_sample(
    shape: tuple[int, int] = (256, 256), sigma: float = 1.5, photons: float = 30.0, seed: int = 0
) -> list[tuple]:
    """Synthetic filaments and blobs: noisy image, clean image and ground truth (phantom)."""
    s = make_sample(shape=shape, sigma=sigma, photons=photons, read_noise=2.0, seed=seed)
    return _layers(
        "synthetic",
        s.noisy,
        s.clean,
        s.phantom,
        s.sigma,
        f"napari_deconoising.core.make_sample(shape={shape}, sigma={sigma}, photons={photons})",
    )


def synthetic_sample_3d(
    shape: tuple[int, int, int] = (32, 128, 128), sigma: tuple[float, float, float] = (2.0, 1.0, 1.0),
    photons: float = 100.0, z_step: float = 2.0, seed: int = 0,
) -> list[tuple]:
    """A synthetic stack of 3D filaments and vesicles (ZYX), blurred more along Z, with its
    clean stack and ground truth; the layers' scale carries the Z spacing (``z_step`` pixels)."""
    s = make_sample_3d(shape=shape, sigma=sigma, photons=photons, z_step=z_step, seed=seed)
    return _layers(
        "synthetic 3D",
        s.noisy,
        s.clean,
        s.phantom,
        s.sigma,
        f"napari_deconoising.core.sample3d.make_sample_3d(shape={shape}, sigma={sigma}, "
        f"photons={photons}, z_step={z_step})",
        scale=(float(z_step), 1.0, 1.0),
    )


def load_nuclei_crop() -> np.ndarray:
    """The 256x256 crop of StarDist's ``img2d.tif`` shipped with the plugin (uint16)."""
    try:
        with as_file(files("napari_deconoising") / "data" / "nuclei_crop.tif") as path:
            return read_image(path)[0]
    except (FileNotFoundError, ImageFileError):
        raise FileNotFoundError(
            "the nuclei sample image (napari_deconoising/data/nuclei_crop.tif) is missing from "
            "this installation; reinstall napari-deconoising or use the synthetic sample"
        ) from None


def make_noisy(
    phantom: np.ndarray, sigma: float, photons: float = 20.0, read_noise: float = 2.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale ``phantom`` to ``photons`` at its peak, blur it, add Poisson and read noise.

    Returns ``(noisy, clean, scaled_phantom)`` as float32 arrays.
    """
    p = np.asarray(phantom, np.float32)
    p = (p - p.min()) / max(float(p.max() - p.min()), 1e-12) * np.float32(photons)
    clean = np.clip(gaussian_blur(p, sigma), 0, None)
    noisy = camera_noise(clean, read_noise, np.random.default_rng(seed))
    return noisy, clean, p


def nuclei_sample() -> list[tuple]:
    """Fluorescent nuclei (StarDist sample, BSD-3), blurred (sigma 2 px) and made noisy."""
    noisy, clean, phantom = make_noisy(load_nuclei_crop(), NUCLEI_SIGMA, photons=20.0, seed=0)
    return _layers(
        "nuclei",
        noisy,
        clean,
        phantom,
        NUCLEI_SIGMA,
        "StarDist 0.9.2 stardist/data/images/img2d.tif, crop [256:512, 0:256] (BSD-3-Clause)",
    )


def beads_sample(shape: tuple[int, int] = (256, 256), sigma: float = BEADS_SIGMA, n: int = 30,
                 seed: int = 0) -> list[tuple]:
    """Point-like beads blurred by a Gaussian PSF, with shot noise (uint16 photon counts).

    The layer's scale is the pixel size in µm (a unitless scale, as napari's readers give
    it), so that sizes in nm and a bead diameter can be tried; the metadata has the true
    sigma and bead positions.
    """
    image, positions = make_beads(shape, sigma, n=n, seed=seed)
    meta = {
        "napari-deconoising sample": {
            "psf_sigma_px": sigma,
            "pixel_size_nm": 1000.0 * BEADS_PIXEL_UM,
            "bead_positions": positions.tolist(),
            "source": f"napari_deconoising.core.sample_beads.make_beads(shape={shape}, sigma={sigma}, n={n}, "
                      f"seed={seed})",
            "noise": "Poisson",
        },
        "role": "beads (measure the PSF: Measure PSF from beads)",
    }
    kwargs = {"name": "beads", "colormap": "gray", "scale": (BEADS_PIXEL_UM, BEADS_PIXEL_UM), "metadata": meta}
    return [(image, kwargs, "image")]
