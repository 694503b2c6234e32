"""Sample data: noisy images with their ground truth."""

from __future__ import annotations

import numpy as np

from napari_deconoising._sample_data import (
    BEADS_SIGMA,
    NUCLEI_SIGMA,
    beads_sample,
    load_nuclei_crop,
    make_noisy,
    nuclei_sample,
    synthetic_sample,
    synthetic_sample_3d,
)
from napari_deconoising.core import psnr


def _check(layers, stem):
    names = [meta["name"] for _, meta, _ in layers]
    assert names == [f"{stem} ground truth", f"{stem} clean", f"{stem} noisy"]
    assert all(kind == "image" for *_, kind in layers)
    shapes = {data.shape for data, *_ in layers}
    assert len(shapes) == 1
    truth, clean, noisy = (d for d, *_ in layers)
    assert all(d.dtype == np.float32 for d in (truth, clean, noisy))
    # the noise is real and the clean image is the blurred truth
    assert psnr(clean, noisy) < 30
    assert clean.std() < truth.std()
    assert not layers[0][1]["visible"] and layers[2][1].get("visible", True)


def test_synthetic_sample():
    layers = synthetic_sample()
    _check(layers, "synthetic")
    assert layers[0][0].shape == (256, 256)


def test_synthetic_sample_3d_keeps_the_z_spacing():
    layers = synthetic_sample_3d(shape=(8, 40, 40), z_step=3.0)
    _check(layers, "synthetic 3D")
    assert layers[0][0].shape == (8, 40, 40)
    assert all(kwargs["scale"] == (3.0, 1.0, 1.0) for _, kwargs, _ in layers)
    assert layers[2][1]["metadata"]["napari-deconoising sample"]["psf_sigma_px"] == [2.0, 1.0, 1.0]


def test_nuclei_crop_is_shipped():
    crop = load_nuclei_crop()
    assert crop.shape == (256, 256) and crop.dtype == np.uint16
    assert crop.max() > 100


def test_nuclei_sample():
    layers = nuclei_sample()
    _check(layers, "nuclei")
    assert layers[2][1]["metadata"]["napari-deconoising sample"]["psf_sigma_px"] == NUCLEI_SIGMA


def test_beads_sample_records_its_psf_and_beads():
    [(image, kwargs, kind)] = beads_sample()
    assert kind == "image" and image.shape == (256, 256) and image.dtype == np.uint16
    meta = kwargs["metadata"]["napari-deconoising sample"]
    assert meta["psf_sigma_px"] == BEADS_SIGMA == 1.3
    assert len(meta["bead_positions"]) == 30 and kwargs["name"] == "beads"
    y, x = np.round(meta["bead_positions"][0]).astype(int)
    assert image[y, x] > 3 * np.median(image)  # a bead where the metadata says


def test_make_noisy_is_reproducible_and_does_not_modify_input():
    phantom = np.zeros((32, 32), np.uint16)
    phantom[10:20, 12:18] = 100
    before = phantom.copy()
    a = make_noisy(phantom, 1.5, seed=3)
    b = make_noisy(phantom, 1.5, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(phantom, before)
    noisy, clean, scaled = a
    assert scaled.max() == np.float32(20.0)
    np.testing.assert_allclose(clean.sum(), scaled.sum(), rtol=0.02)
