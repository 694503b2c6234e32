"""The probe: runs the real network in each precision, counts time with the given clock."""

from __future__ import annotations

import itertools

import pytest
import torch

from napari_deconoising.core.device import cpu_has_bf16
from napari_deconoising.core.precision import relative_error
from napari_deconoising.core.probe import measure, prediction_probe, training_probe


def test_relative_error():
    ref = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert relative_error([ref], [ref]) == 0.0
    off = ref + 0.1 * ref.std()
    assert relative_error([off, ref], [ref, ref]) == pytest.approx(0.1)
    # The phantom (second output) counts half: its own error against the truth is far larger.
    assert relative_error([ref, off], [ref, ref]) == pytest.approx(0.05)
    assert relative_error([off, off], [ref, ref]) == pytest.approx(0.1)


def _ticking_clock(step=0.25):
    counter = itertools.count()
    return lambda: next(counter) * step


@pytest.mark.parametrize("task", ["train", "predict"])
def test_measure_fp32_against_itself(task):
    kwargs = dict(depth=2, channels=8, ndim=2)
    if task == "train":
        probe = training_probe(kwargs, None, (32, 32), 4)
    else:
        from napari_deconoising.core.network import DecoNoisingNet

        probe = prediction_probe(lambda: DecoNoisingNet(None, **kwargs).eval(), kwargs, None, (48, 48))
    seconds, errors = measure(probe, torch.device("cpu"), ["fp32"], clock=_ticking_clock())
    assert seconds == {"fp32": 0.25} and errors == {"fp32": 0.0}
    assert probe.network["input"][1:] == [32, 32] if task == "train" else [48, 48]


@pytest.mark.skipif(not cpu_has_bf16(), reason="CPU has no native bf16")
def test_bf16_error_is_small_on_real_network():
    import numpy as np

    from napari_deconoising.core.psf import gaussian_psf

    psf = gaussian_psf(1.5)
    kwargs = dict(depth=2, channels=8, ndim=2)
    probe = training_probe(kwargs, psf, (32, 32), 4)
    _, errors = measure(probe, torch.device("cpu"), ["fp32", "bf16"], clock=_ticking_clock())
    assert 0 < errors["bf16"] < 0.05
    assert np.isfinite(errors["bf16"])


def test_probe_batch_is_capped_and_keyed():
    p = training_probe(dict(depth=3, channels=64, ndim=2), None, (100, 100), 20)
    assert p.network["input"] == [8, 100, 100] and p.network["psf"] is None
    x = p.inputs()
    assert x.shape == (8, 1, 100, 100) and abs(float(x.mean())) < 1e-4


def test_a_graphed_probe_takes_the_whole_batch_under_its_own_key():
    """On a GPU the probe times graphed steps of the full batch: a decision made for eager steps
    (or another batch) must not be reused for them."""
    kwargs = dict(depth=3, channels=64, ndim=2)
    eager = training_probe(kwargs, None, (100, 100), 8)
    graphed = training_probe(kwargs, None, (100, 100), 20, graphed=True)
    assert graphed.network["input"] == [20, 100, 100] and graphed.graphed
    assert eager.network["input"] == [8, 100, 100] and "graphed" not in eager.network
    assert training_probe(kwargs, None, (100, 100), 8, graphed=True).network != eager.network


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_graphed_probe_replays_whole_steps_on_cuda():
    from napari_deconoising.core.psf import gaussian_psf

    probe = training_probe(dict(depth=2, channels=8, ndim=2), gaussian_psf(1.5), (32, 32), 4, graphed=True)
    precisions = ["fp32", "bf16"] if torch.cuda.is_bf16_supported() else ["fp32"]
    calls = []
    clock = _ticking_clock()

    def tick():
        calls.append(1)
        return clock()

    seconds, errors = measure(probe, torch.device("cuda"), precisions, clock=tick)
    # The warm-up pass per precision, then three rounds of 5 replays each, read the clock twice a pass.
    assert len(calls) == 2 * len(precisions) * (1 + 3)
    assert all(s == pytest.approx(0.25 / 5) for s in seconds.values())
    assert errors["fp32"] == 0.0 and all(e < 0.05 for e in errors.values())


def test_a_slow_probe_runs_fewer_rounds():
    """Rounds are cut to the time budget judged from the warm-up, and a warm-up round over the budget is
    the measurement, so a large 3D tile does not cost minutes before the prediction starts; a quick
    probe keeps all its rounds."""
    from napari_deconoising.core.network import DecoNoisingNet

    kwargs = dict(depth=2, channels=8, ndim=2)  # the budget is 10 s
    calls = []

    def counting(step):
        clock = _ticking_clock(step)

        def tick():
            calls.append(1)
            return clock()
        return tick

    for step, rounds in ((0.1, 3), (4.0, 2), (9.0, 1), (30.0, 0)):  # each run reads the clock twice: one step
        calls.clear()
        probe = prediction_probe(lambda: DecoNoisingNet(None, **kwargs).eval(), kwargs, None, (48, 48))
        seconds, _ = measure(probe, torch.device("cpu"), ["fp32"], clock=counting(step))
        assert len(calls) == 2 + 2 * rounds, (step, len(calls))
        assert seconds["fp32"] == pytest.approx(step)
