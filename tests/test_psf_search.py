"""The PSF-width search: its decision rule (pure) and a tiny real search."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_deconoising.core import load_model, train
from napari_deconoising.core.psf_search import (
    DEFAULT_SIGMA,
    SearchProgress,
    _decide,
    _parabola_min,
    iter_psf_search,
    search_psf_sigma,
    short_run_config,
)


@given(vertex=st.floats(0.3, 2.7), curvature=st.floats(0.01, 10), offset=st.floats(-5, 5))
def test_parabola_through_a_quadratic_finds_its_vertex(vertex, curvature, offset):
    xs = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    ys = [curvature * (x - vertex) ** 2 + offset for x in xs]
    i = min(range(len(xs)), key=ys.__getitem__)
    assert _parabola_min(xs, ys, i) == pytest.approx(vertex, abs=2e-3)


def test_parabola_stays_between_the_neighbours_of_the_best_point():
    xs, ys = [0.0, 1.0, 2.0], [1.0, 0.0, 5.0]
    assert 0.0 <= _parabola_min(xs, ys, 1) <= 2.0
    assert _parabola_min(xs, [1.0, 0.0, 1.0], 1) == 1.0
    assert _parabola_min(xs, [0.0, 1.0, 2.0], 0) == 0.0  # best at an edge: the edge


def test_clear_minimum_is_estimated():
    scores = {s: 1.0 + 0.1 * (s - 1.3) ** 2 for s in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)}
    r = _decide(scores, 3.0, DEFAULT_SIGMA, 2e-3, 10)
    assert r.clear and r.sigma == pytest.approx(1.3, abs=1e-3) and "1.30 px" in r.message


def test_flat_scores_fall_back_to_the_default_and_say_so():
    scores = {s: 1.0 + 1e-5 * s for s in (0.0, 1.0, 2.0, 3.0)}
    r = _decide(scores, 3.0, 1.0, 2e-3, 10)
    assert not r.clear and r.sigma == 1.0 and "no clear answer" in r.message and "1 px" in r.message


def test_best_at_the_widest_candidate_is_not_trusted():
    scores = {s: 1.0 - 0.1 * s for s in (0.0, 1.0, 2.0, 3.0)}
    r = _decide(scores, 3.0, 1.0, 2e-3, 10)
    assert not r.clear and r.sigma == 1.0 and "widest" in r.message


def test_too_few_runs_are_unclear():
    r = _decide({0.0: 1.0, 1.0: 0.5}, 3.0, 1.0, 2e-3, 10)
    assert not r.clear and r.estimate is None


def test_short_run_config_replaces_psf_and_length_only(tiny_config):
    c = short_run_config(tiny_config.replace(psf="none"), 1.7, 12)
    assert c.psf == "gaussian" and c.psf_sigma == 1.7
    assert c.total_steps >= 12 and c.steps_per_epoch == tiny_config.steps_per_epoch
    assert (c.depth, c.channels, c.seed) == (tiny_config.depth, tiny_config.channels, tiny_config.seed)


def test_tiny_search_scores_every_candidate(sample, tiny_config):
    events = []
    r = search_psf_sigma(sample.noisy, tiny_config, candidates=(0.0, 1.0, 2.0), steps=2, refine=True,
                         progress=events.append)
    assert all(isinstance(e, SearchProgress) for e in events)
    assert [e.done for e in events] == list(range(1, len(events) + 1))
    assert {0.0, 1.0, 2.0} <= set(r.scores) and len(r.scores) == len(events) >= 4  # refinement added points
    assert all(math.isfinite(v) for v in r.scores.values())
    assert r.sigma == (r.estimate if r.clear else DEFAULT_SIGMA)
    d = r.to_dict()
    assert d["scores"] == [[s, v] for s, v in sorted(r.scores.items())]


def test_stopping_ends_the_search_early(sample, tiny_config):
    calls = []
    gen = iter_psf_search(sample.noisy, tiny_config, candidates=(0.0, 1.0, 2.0), steps=2,
                          should_stop=lambda: len(calls) >= 1)
    for event in gen:  # the first run finishes, then the stop flag ends the search
        calls.append(event)
    assert len(calls) == 1


def test_bad_candidates_are_refused(sample, tiny_config):
    with pytest.raises(ValueError, match="candidates"):
        search_psf_sigma(sample.noisy, tiny_config, candidates=(1.0,))
    with pytest.raises(ValueError, match="steps"):
        search_psf_sigma(sample.noisy, tiny_config, steps=0)


def test_estimate_is_saved_with_the_model_and_in_its_summary(sample, tiny_config, tmp_path):
    model = train(sample.noisy, tiny_config.replace(epochs=1, psf_sigma=1.2))
    assert model.psf_estimate is None and "estimated" not in model.summary()
    r = _decide({s: 1 + (s - 1.2) ** 2 for s in (0.0, 1.0, 2.0, 3.0)}, 3.0, 1.0, 2e-3, 2)
    model.psf_estimate = r.to_dict()
    model.save(tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.psf_estimate == r.to_dict()
    assert "estimated from the data" in loaded.summary()
    loaded.psf_estimate = {**r.to_dict(), "clear": False}
    assert "no clear estimate" in loaded.summary()
