"""The training-free line and edge fit (core/psf_edges.py)."""

import numpy as np
import pytest

from napari_deconoising.core import make_sample
from napari_deconoising.core.psf_edges import estimate, noise_model


@pytest.mark.parametrize("sigma", [0.7])
def test_thin_filaments_give_their_blur_and_never_read_narrower(sigma):
    image = make_sample((160, 160), sigma=sigma, seed=1).noisy.astype(np.float32)
    found = estimate([image])
    assert found["n"] >= 5
    # Measured within 0.15 px on filaments; the pixel grid adds about 1/12 px**2 in quadrature.
    assert sigma - 0.1 <= found["sigma"] <= np.sqrt(sigma**2 + 1 / 12) + 0.15


def test_noise_alone_has_no_lines_or_edges():
    rng = np.random.default_rng(0)
    found = estimate([rng.poisson(50.0, (128, 128)).astype(np.float32)])
    assert found["n"] == 0 and np.isnan(found["sigma"])


def test_the_noise_model_reads_a_poisson_gain():
    rng = np.random.default_rng(1)
    ramp = np.linspace(20, 400, 256)[None, :].repeat(256, 0)
    gain, offset = noise_model(rng.poisson(ramp).astype(np.float64))
    assert gain == pytest.approx(1.0, abs=0.15) and offset < 20


def test_a_zero_padded_image_gives_the_width_of_the_image_itself():
    from napari_deconoising.core.psf_check import edge_sigma

    image = make_sample((160, 160), sigma=1.2).noisy.astype(np.float32)
    pad = np.zeros((320, 320), np.float32)
    pad[80:240, 80:240] = image  # more than half the gradient exactly 0: its median was 0
    plain, padded = edge_sigma([image]), edge_sigma([pad])
    assert padded is not None and padded["sigma"] == pytest.approx(plain["sigma"], abs=0.1)


def test_the_typical_strength_leaves_out_only_the_flat_area():
    from napari_deconoising.core.psf_edges import typical_strength

    strength = np.array([0, 0, 0, 0, 2.0, 4.0, 6.0])
    assert typical_strength(strength, strength > 0) == 4.0
    assert typical_strength(strength, np.arange(7) >= 3) == 3.0  # a zero where the image is not flat counts
    assert typical_strength(np.zeros(5), np.ones(5, bool)) == 1.0


def test_the_centre_of_a_clean_symmetric_line_is_a_candidate():
    # its smoothed gradient is exactly 0 there, as in padding, but the image is not flat around it
    from napari_deconoising.core.psf_edges import candidates

    y = np.arange(64)[:, None]
    line = np.exp(-0.5 * ((y - 32) / 1.5) ** 2) * np.ones((1, 64))
    rows = {p[0] for p in candidates(line, 1.0, 6, 8)}
    assert 32 in rows, rows
