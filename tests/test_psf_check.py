"""A learned sigma checked against the data's lines and edges (core/psf_check.py), in 2D and 3D."""

import dataclasses

import numpy as np
import pytest

from napari_deconoising.core import psf_check
from napari_deconoising.core.learned_psf import LearnedSigmaTrainer
from napari_deconoising.core.psf_check import (
    EDGE_TOLERANCE,
    MAX_IMAGES,
    PIXEL_VARIANCE,
    SLABS,
    cross_check,
    edge_sigma,
    edge_views,
)
from napari_deconoising.core.sample3d import make_sample_3d


def _learned(sigma, clear=True):
    shown = sigma if isinstance(sigma, float) else sigma[-1]
    return {"method": "learned", "clear": clear, "sigma": sigma if clear else 1.0, "learned": sigma,
            "message": f"PSF sigma learned from the data: {shown:.2f} px"}


def _edge(sigma, n=60):
    return {"sigma": sigma, "width": float(np.sqrt(sigma**2 + PIXEL_VARIANCE)), "n": n, "spread": 0.1}


def test_a_learned_sigma_wider_than_the_edges_allow_gives_way_to_them():
    out = cross_check(_learned(0.95), _edge(0.78, 90))
    assert out["clear"] and out["method"] == "edges" and out["sigma"] == 0.78
    assert "0.78 px" in out["message"] and "learned 0.95 px" in out["message"]


def test_a_learned_sigma_just_below_the_edges_is_confirmed():
    out = cross_check(_learned(1.48), _edge(1.56))
    assert out["clear"] and out["method"] == "learned" and out["sigma"] == 1.48
    assert "confirmed" in out["message"] and out["edges"]["sigma"] == 1.56


def test_a_learned_sigma_far_below_the_edges_is_not_clear_and_both_are_said():
    e = 1.0 + EDGE_TOLERANCE + 0.05
    out = cross_check(_learned(1.0), _edge(e, 40))
    assert not out["clear"] and out["sigma"] == 1.0  # the learned value, said to be a guess
    assert "no clear answer" in out["message"] and f"{e:.2f} px" in out["message"]
    assert "deconoising beads" in out["message"]


def test_without_edges_or_with_an_unclear_estimate_nothing_is_decided():
    plain = cross_check(_learned(1.5), None)
    assert plain["clear"] and plain["sigma"] == 1.5 and plain["edges"] is None and "no sharp lines" in plain["message"]
    unclear = cross_check(_learned(2.9, clear=False), _edge(1.2, 30))
    assert not unclear["clear"] and unclear["sigma"] == 1.0 and "1.20 px" in unclear["message"]
    per_axis = dict(_learned(1.5), learned=[1.2, 1.9], sigma=[1.2, 1.9])
    assert cross_check(per_axis, _edge(1.0, 30))["sigma"] == [1.2, 1.9]


def test_in_3d_the_lateral_sigma_is_checked_and_the_axial_one_kept():
    wide = cross_check(_learned([2.6, 1.4, 1.45]), _edge(1.1), ndim=3)
    assert wide["clear"] and wide["method"] == "edges" and wide["sigma"] == [2.6, 1.1, 1.1]
    assert "lateral" in wide["message"] and "axial sigma, 2.60 px, is as learned" in wide["message"]
    same = cross_check(_learned(1.4), _edge(1.1), ndim=3)  # one sigma for all three axes
    assert same["sigma"] == [1.4, 1.1, 1.1]
    ok = cross_check(_learned([2.6, 1.0, 1.05]), _edge(1.1), ndim=3)
    assert ok["clear"] and ok["sigma"] == [2.6, 1.0, 1.05] and "lateral sigma confirmed" in ok["message"]
    low = cross_check(_learned([2.6, 0.7, 0.7]), _edge(1.1), ndim=3)
    assert not low["clear"] and low["sigma"] == [2.6, 0.7, 0.7] and "no clear answer" in low["message"]
    apart = cross_check(_learned([2.6, 0.7, 1.3]), _edge(1.1), ndim=3)  # Y and X disagree: nothing decided
    assert apart["clear"] and apart["sigma"] == [2.6, 0.7, 1.3] and "1.10 px" in apart["message"]


def test_the_pixels_own_width_is_taken_out_of_the_fit(monkeypatch):
    monkeypatch.setattr(psf_check, "fit_edges", lambda views: {"sigma": 0.76, "n": 12, "spread": 0.05})
    found = edge_sigma([np.zeros((64, 64), np.float32)])
    assert found["width"] == 0.76 and found["n"] == 12
    assert found["sigma"] == pytest.approx(np.sqrt(0.76**2 - PIXEL_VARIANCE)) == pytest.approx(0.7030, abs=1e-4)
    monkeypatch.setattr(psf_check, "fit_edges", lambda views: {"sigma": 0.2, "n": 3, "spread": 0.05})
    assert edge_sigma([np.zeros((64, 64), np.float32)])["sigma"] == 0.0  # never the root of a negative


def test_noise_alone_has_no_lines_or_edges():
    rng = np.random.default_rng(0)
    assert edge_sigma([rng.poisson(50.0, (128, 128)).astype(np.float32)]) is None
    assert edge_sigma([np.zeros((8, 8), np.float32)]) is None  # too small to hold a window
    assert edge_sigma([]) is None


def test_views_are_images_or_slabs_of_a_volume_cropped_before_reading():
    rng = np.random.default_rng(2)
    images = [rng.random((40, 600)).astype(np.float32) for _ in range(6)]
    views = edge_views(images)
    assert len(views) == MAX_IMAGES and views[0].shape == (40, 512)
    np.testing.assert_array_equal(views[0], images[0][:, 44:556])
    volume = rng.random((12, 48, 48)).astype(np.float32)
    slabs = edge_views([volume])
    assert len(slabs) == SLABS and all(s.shape == (48, 48) for s in slabs)
    np.testing.assert_allclose(sum(slabs), volume.sum(0), rtol=1e-5)  # 3 planes each, every plane once
    deep = rng.random((80, 48, 48)).astype(np.float32)  # quarters of 20 planes: slabs of 8 around their centres
    np.testing.assert_allclose(edge_views([deep])[1], deep[26:34].sum(0), rtol=1e-5)
    assert len(edge_views([volume[:2]])) == 2  # no more slabs than planes
    da = pytest.importorskip("dask.array")
    lazy = da.from_array(rng.random((8, 1024, 1024)).astype(np.float32), chunks=(1, 256, 256))
    (view, *_) = edge_views([lazy])
    assert isinstance(view, np.ndarray) and view.shape == (512, 512)


def test_3d_filaments_give_their_lateral_sigma(monkeypatch):
    monkeypatch.setattr(psf_check, "MAX_IMAGES", 2)  # two slabs: half the time; all four in the benchmark
    s = make_sample_3d((16, 128, 128), sigma=(2.0, 1.0, 1.0), seed=0)
    found = edge_sigma([s.noisy])
    assert found is not None and found["n"] >= 5
    assert 1.0 - 0.15 <= found["sigma"] <= 1.0 + 0.2


def test_2d_and_3d_estimates_are_checked(sample, sample3d, tiny_config, monkeypatch):
    seen = []

    def fit(views):  # the wiring is under test here, not the fit
        seen.append([v.shape for v in views])
        return {"sigma": 1.1, "n": 7, "spread": 0.1}

    monkeypatch.setattr(psf_check, "fit_edges", fit)
    learner = LearnedSigmaTrainer(sample.noisy, tiny_config)
    for _ in learner.run():
        pass
    assert learner.estimate()["edges"]["n"] == 7 and "edges" not in learner.estimate(check_edges=False)
    assert seen == [[sample.noisy.shape]]
    learner3 = LearnedSigmaTrainer(sample3d.noisy, tiny_config.replace(ndim=3, patch_size=(8, 32, 32)), axes="ZYX")
    for _ in learner3.run():
        pass
    assert learner3.estimate()["edges"]["n"] == 7 and "edges" not in learner3.estimate(check_edges=False)
    assert seen[1] == [sample3d.noisy.shape[1:]] * SLABS  # slabs of the stack, Y by X


def test_the_model_summary_says_how_its_sigma_was_chosen(trained):
    edge = _edge(0.78, 90)
    cases = [(cross_check(_learned(0.95), edge), "(from the data's edges)"),
             (cross_check(_learned(0.7), edge), "(estimated from the data)"),
             (cross_check(_learned(0.5), edge), "(learned from the data, not confirmed by its edges)"),
             (cross_check(_learned(2.9, clear=False), edge), "(default: no clear estimate from the data)"),
             (cross_check(_learned([2.6, 0.95, 0.95]), edge, ndim=3), "(lateral from the data's edges)")]
    for est, words in cases:
        assert words in dataclasses.replace(trained, psf_estimate=est).summary()
