"""Gaussian spot fitting (core/gaussian_fit.py)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_deconoising.core.gaussian_fit import fit_gaussian


def _spot(shape, centre, sigma, amplitude=50.0, offset=7.0):
    out = np.full(shape, offset, dtype=np.float64)
    grids = np.indices(shape, dtype=np.float64)
    g = np.ones(shape)
    for x, c, s in zip(grids, centre, sigma):
        g = g * np.exp(-0.5 * ((x - c) / s) ** 2)
    return out + amplitude * g


@pytest.mark.parametrize("shape, centre, sigma", [
    ((21, 21), (10.3, 9.6), (1.4, 2.1)),
    ((15, 19, 19), (7.2, 9.45, 8.7), (2.5, 1.1, 1.3)),
])
def test_a_noise_free_spot_is_fitted_exactly(shape, centre, sigma):
    spot = fit_gaussian(_spot(shape, centre, sigma), sigma=1.5)
    assert np.allclose(spot.centre, centre, atol=1e-4)
    assert np.allclose(spot.sigma, sigma, atol=1e-4)
    assert spot.amplitude == pytest.approx(50.0, rel=1e-4) and spot.offset == pytest.approx(7.0, abs=1e-3)
    assert spot.residual < 1e-5


def test_without_offset_the_background_is_held_at_zero():
    crop = _spot((17, 17), (8.0, 8.0), (1.5, 1.5), offset=0.0)
    spot = fit_gaussian(crop, centre=(8.0, 8.0), fit_offset=False)
    assert spot.offset == pytest.approx(0.0, abs=1e-9) and np.allclose(spot.sigma, 1.5, atol=1e-4)


def test_noise_gives_a_close_fit_and_a_residual_above_zero():
    rng = np.random.default_rng(0)
    crop = _spot((21, 21), (10.0, 10.4), (1.8, 1.8)) + rng.normal(0, 1.0, (21, 21))
    spot = fit_gaussian(crop)
    assert np.allclose(spot.centre, (10.0, 10.4), atol=0.1) and np.allclose(spot.sigma, 1.8, atol=0.1)
    assert 0.01 < spot.residual < 0.05


def test_one_gaussian_model_for_fits_and_synthetic_beads(monkeypatch):
    """gaussian_spot is the fit's model and the synthetic beads' spot: a change to one is a change to both."""
    from napari_deconoising.core import sample_beads
    from napari_deconoising.core.gaussian_fit import gaussian_spot

    shape, centre, sigma = (9, 11, 13), (4.2, 5.0, 6.7), (2.0, 1.2, 1.5)
    got = gaussian_spot([np.arange(n, dtype=np.float64) for n in shape], centre, sigma)
    np.testing.assert_allclose(got, _spot(shape, centre, sigma, amplitude=1.0, offset=0.0), rtol=1e-12)
    calls = []
    monkeypatch.setattr(sample_beads, "gaussian_spot", lambda *a: calls.append(a) or gaussian_spot(*a))
    sample_beads.make_beads((64, 64), 1.2, n=3, seed=0)
    assert len(calls) == 3
