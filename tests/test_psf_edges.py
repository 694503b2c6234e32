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
