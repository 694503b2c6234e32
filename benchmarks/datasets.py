"""Benchmark data with known ground truth: phantom -> PSF blur -> noise.

Every dataset is a stack ``(n, size, size)`` with

* ``phantom``: the true fluorophore density (deconvolution target),
* ``clean``: phantom convolved with a Gaussian PSF (denoising target),
* ``noisy``: what the method sees.

Datasets
--------
text
    After the paper's synthetic experiment: text rendered with the DejaVu Sans
    font that ships with matplotlib, PSF sigma 1 px, pixel-wise Gaussian noise.
filaments
    Fluorescence-like filaments and blobs (``make_phantom``), PSF sigma 1 px,
    Poisson shot noise (30 photons at the phantom's peak) plus Gaussian read noise
    (2 photons).
nuclei
    The real nuclei image ``img2d.tif`` that ships in the stardist 0.9.2 wheel
    (BSD-3-Clause), used as phantom; PSF sigma 1 px, Poisson noise (30 photons at
    the 99.8th percentile) plus read noise 2. Fetched once with
    ``pip download --no-deps stardist==0.9.2`` into a cache directory; skipped
    with a note when that is not possible.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_deconoising.core.sample import camera_noise, gaussian_blur, make_phantom

CACHE = Path(
    os.environ.get(
        "DECONOISING_BENCH_CACHE", Path(__file__).resolve().parent.parent / "bench-output" / "cache"
    )
)
STARDIST_PIN = "stardist==0.9.2"

WORDS = [
    "deconvolution",
    "denoising",
    "noise",
    "void",
    "blind",
    "spot",
    "phantom",
    "point",
    "spread",
    "function",
    "microscope",
    "fluorescence",
    "photon",
    "shot",
    "read",
    "camera",
    "network",
    "convolution",
    "gaussian",
    "sigma",
    "pixel",
    "signal",
    "filament",
    "nucleus",
    "membrane",
    "actin",
    "tubulin",
    "lambda",
    "positivity",
    "patch",
    "batch",
    "epoch",
]


@dataclass
class Dataset:
    name: str
    noisy: np.ndarray
    clean: np.ndarray
    phantom: np.ndarray
    sigma: float
    description: str


def _font_path() -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")


def render_text(size: int, rng: np.random.Generator) -> np.ndarray:
    """Lines of random words in random font sizes, white on black, float in [0, 1]."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    y = int(rng.integers(0, 6))
    while y < size:
        fs = int(rng.integers(max(8, size // 24), max(10, size // 9)))
        font = ImageFont.truetype(_font_path(), fs)
        line = " ".join(rng.choice(WORDS, size=8))
        draw.text((int(rng.integers(-size // 4, 4)), y), line, fill=255, font=font)
        y += int(fs * rng.uniform(1.1, 1.6))
    return np.asarray(img, np.float32) / 255.0


def make_text(
    n: int = 3, size: int = 256, sigma: float = 1.0, noise_std: float = 0.25, seed: int = 0
) -> Dataset:
    rng = np.random.default_rng(seed)
    phantom = np.stack([render_text(size, rng) for _ in range(n)]).astype(np.float32)
    phantom = 0.1 + phantom  # dim background, text at 1.1
    clean = gaussian_blur(phantom, sigma)
    noisy = clean + rng.normal(0, noise_std, clean.shape).astype(np.float32)
    return Dataset(
        "text",
        noisy.astype(np.float32),
        clean,
        phantom,
        sigma,
        f"rendered text (DejaVu Sans), PSF sigma {sigma} px, Gaussian noise std {noise_std} "
        f"(signal range 1.0)",
    )


def make_filaments(
    n: int = 3,
    size: int = 256,
    sigma: float = 1.0,
    photons: float = 30.0,
    read_noise: float = 2.0,
    seed: int = 0,
) -> Dataset:
    rng = np.random.default_rng(seed + 1)
    phantom = np.stack(
        [make_phantom((size, size), seed=seed + 100 + i) for i in range(n)]
    ) * np.float32(photons)
    clean = gaussian_blur(phantom, sigma)
    noisy = camera_noise(clean, read_noise, rng)
    return Dataset(
        "filaments",
        noisy,
        clean,
        phantom.astype(np.float32),
        sigma,
        f"filaments and blobs (make_phantom), PSF sigma {sigma} px, Poisson noise "
        f"({photons:g} photons at peak) + Gaussian read noise {read_noise:g}",
    )


def stardist_nuclei(log=print) -> np.ndarray | None:
    """The 2D nuclei image from the stardist wheel (cached), or None."""
    cached = CACHE / "stardist_img2d.npy"
    if cached.exists():
        return np.load(cached)
    try:
        import tifffile
    except ImportError:
        log("nuclei: tifffile missing, skipped")
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", STARDIST_PIN, "-d", tmp],
            capture_output=True,
            text=True,
        )
        wheels = list(Path(tmp).glob("stardist-*.whl"))
        if r.returncode != 0 or not wheels:
            log(f"nuclei: could not download {STARDIST_PIN} ({r.stderr.strip()[-200:]}); skipped")
            return None
        with zipfile.ZipFile(wheels[0]) as z:
            img = tifffile.imread(io.BytesIO(z.read("stardist/data/images/img2d.tif")))
    img = np.asarray(img, np.float32)
    np.save(cached, img)
    return img


def make_nuclei(
    n: int = 3,
    size: int = 256,
    sigma: float = 1.0,
    photons: float = 30.0,
    read_noise: float = 2.0,
    seed: int = 0,
    log=print,
) -> Dataset | None:
    img = stardist_nuclei(log)
    if img is None:
        return None
    img = img.astype(np.float32)
    lo, hi = np.percentile(img, [0.5, 99.8])
    img = np.clip((img - lo) / (hi - lo), 0, None)
    h, w = img.shape
    if min(h, w) < size:
        raise ValueError(f"the nuclei image ({h}x{w}) is smaller than {size}")
    rng = np.random.default_rng(seed + 2)
    crops = []
    for i in range(n):  # disjoint-ish crops, in a fixed order
        y = (i * size) % max(1, h - size + 1)
        x = ((i * 3 * size) // 2) % max(1, w - size + 1)
        crops.append(img[y : y + size, x : x + size])
    phantom = (0.05 + np.stack(crops)).astype(np.float32) * np.float32(photons)
    clean = gaussian_blur(phantom, sigma)
    noisy = camera_noise(clean, read_noise, rng)
    return Dataset(
        "nuclei",
        noisy,
        clean,
        phantom,
        sigma,
        f"stardist img2d.tif nuclei as phantom, PSF sigma {sigma} px, Poisson noise "
        f"({photons:g} photons) + Gaussian read noise {read_noise:g}",
    )


def make(name: str, n: int, size: int, seed: int = 0, log=print, sigma: float = 1.0) -> Dataset | None:
    if name == "text":
        return make_text(n, size, sigma=sigma, seed=seed)
    if name == "filaments":
        return make_filaments(n, size, sigma=sigma, seed=seed)
    if name == "nuclei":
        return make_nuclei(n, size, sigma=sigma, seed=seed, log=log)
    raise ValueError(f"unknown dataset {name!r}")
