"""The training-free PSF width from lines and edges (core/psf_edges.py), and its check of a learned sigma."""

import dataclasses

import numpy as np
import pytest

from napari_deconoising.core import make_sample
from napari_deconoising.core.learned_psf import LearnedSigmaTrainer
from napari_deconoising.core.psf_edges import EDGE_TOLERANCE, cross_check, edge_sigma, noise_model


def _learned(sigma, clear=True):
    return {"method": "learned", "clear": clear, "sigma": sigma if clear else 1.0, "learned": sigma,
            "message": f"PSF sigma learned from the data: {sigma:.2f} px"}


def test_a_learned_sigma_wider_than_the_edges_allow_gives_way_to_them():
    out = cross_check(_learned(0.95), {"sigma": 0.78, "n": 90, "spread": 0.06})
    assert out["clear"] and out["method"] == "edges" and out["sigma"] == 0.78
    assert "0.78 px" in out["message"] and "learned 0.95 px" in out["message"]


def test_a_learned_sigma_just_below_the_edges_is_confirmed():
    out = cross_check(_learned(1.48), {"sigma": 1.56, "n": 60, "spread": 0.1})
    assert out["clear"] and out["method"] == "learned" and out["sigma"] == 1.48
    assert "confirmed" in out["message"] and out["edges"]["sigma"] == 1.56


def test_a_learned_sigma_far_below_the_edges_is_not_clear_and_both_are_said():
    e = 1.0 + EDGE_TOLERANCE + 0.05
    out = cross_check(_learned(1.0), {"sigma": e, "n": 40, "spread": 0.1})
    assert not out["clear"] and out["sigma"] == 1.0  # the learned value, said to be a guess
    assert "no clear answer" in out["message"] and f"{e:.2f} px" in out["message"]
    assert "deconoising beads" in out["message"]


def test_without_edges_or_with_an_unclear_estimate_nothing_is_decided():
    plain = cross_check(_learned(1.5), None)
    assert plain["clear"] and plain["sigma"] == 1.5 and plain["edges"] is None and "no sharp lines" in plain["message"]
    unclear = cross_check(_learned(2.9, clear=False), {"sigma": 1.2, "n": 30, "spread": 0.1})
    assert not unclear["clear"] and unclear["sigma"] == 1.0 and "1.20 px" in unclear["message"]
    per_axis = dict(_learned(1.5), learned=[1.2, 1.9], sigma=[1.2, 1.9])
    assert cross_check(per_axis, {"sigma": 1.0, "n": 30, "spread": 0.1})["sigma"] == [1.2, 1.9]


@pytest.mark.parametrize("sigma", [0.7])
def test_thin_filaments_give_their_blur_and_never_read_narrower(sigma):
    image = make_sample((160, 160), sigma=sigma, seed=1).noisy
    found = edge_sigma([image])
    assert found is not None and found["n"] >= 5
    # Measured within 0.15 px on filaments; the pixel grid adds about 1/12 px**2 in quadrature.
    assert sigma - 0.1 <= found["sigma"] <= np.sqrt(sigma**2 + 1 / 12) + 0.15


def test_noise_alone_has_no_lines_or_edges():
    rng = np.random.default_rng(0)
    assert edge_sigma([rng.poisson(50.0, (128, 128)).astype(np.float32)]) is None
    assert edge_sigma([np.zeros((8, 8), np.float32)]) is None  # too small to hold a window


def test_the_noise_model_reads_a_poisson_gain():
    rng = np.random.default_rng(1)
    ramp = np.linspace(20, 400, 256)[None, :].repeat(256, 0)
    gain, offset = noise_model(rng.poisson(ramp).astype(np.float64))
    assert gain == pytest.approx(1.0, abs=0.15) and offset < 20


def test_a_2d_estimate_is_checked_and_a_3d_one_is_not(sample, sample3d, tiny_config):
    learner = LearnedSigmaTrainer(sample.noisy, tiny_config)
    for _ in learner.run():
        pass
    assert "edges" in learner.estimate() and "edges" not in learner.estimate(check_edges=False)
    learner3 = LearnedSigmaTrainer(sample3d.noisy, tiny_config.replace(ndim=3, patch_size=(8, 32, 32)), axes="ZYX")
    for _ in learner3.run():
        pass
    assert "edges" not in learner3.estimate()


def test_the_model_summary_says_how_its_sigma_was_chosen(trained):
    edge = {"sigma": 0.78, "n": 90, "spread": 0.06}
    cases = [(cross_check(_learned(0.95), edge), "(from the data's edges)"),
             (cross_check(_learned(0.7), edge), "(estimated from the data)"),
             (cross_check(_learned(0.5), edge), "(learned from the data, not confirmed by its edges)"),
             (cross_check(_learned(2.9, clear=False), edge), "(default: no clear estimate from the data)")]
    for est, words in cases:
        assert words in dataclasses.replace(trained, psf_estimate=est).summary()
