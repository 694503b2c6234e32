"""Estimate the Gaussian PSF width from the noisy data alone (``--psf-sigma auto``).

Why the validation loss can pick sigma: the blind-spot loss compares the prediction at
a masked pixel with that pixel's *noisy* value, whose noise the network never saw, so
its expectation is ``noise variance + MSE(denoised, clean)``. The sigma whose model
denoises best therefore has the lowest validation loss, without any ground truth. A PSF
that is too wide cannot produce the image's sharpest detail; one that is too narrow
leaves room for noise-like output (see the sweep in docs/benchmarks.md). The ranking is
not exact: the loss scores the *blind* prediction, PSNR the prediction from the full
image, and on text with a true sigma of 0.7 px a model trained with 0.34 px had the
lower validation loss but 1.3 dB lower PSNR than one trained with 0.78 px (issue 12).

The search trains one short run per candidate sigma, all with the same seed (the same
initial weights, patches and blind spots, so the scores differ by the PSF only), then
refines around the best candidate and interpolates with a parabola. When the scores
barely depend on sigma, or the best is the widest candidate, the data gives no clear
answer: the result says so and falls back to :data:`DEFAULT_SIGMA`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import TrainConfig
from .train import Trainer

__all__ = ["COARSE_SIGMAS", "DEFAULT_SIGMA", "DEFAULT_STEPS", "SearchProgress", "SigmaSearch", "iter_psf_search",
           "search_psf_sigma", "short_run_config"]

#: What training uses when the data does not single out a sigma (the TrainConfig default).
DEFAULT_SIGMA = 1.0
#: First pass of candidates, in pixels; refined by half a step around the best.
COARSE_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
#: Optimiser steps of each short run.
DEFAULT_STEPS = 150
#: The scores must span at least this fraction of the best score for a clear answer.
MIN_RELATIVE_SPREAD = 2e-3


@dataclass(frozen=True)
class SigmaSearch:
    """Outcome of :func:`search_psf_sigma`.

    Attributes
    ----------
    sigma : float
        The sigma to train with: the estimate, or :data:`DEFAULT_SIGMA` when unclear.
    clear : bool
        False when the data gave no clear answer (then ``sigma`` is the default).
    message : str
        One sentence for the user saying what was chosen and why.
    scores : dict
        Candidate sigma -> best validation loss of its short run.
    estimate : float or None
        The interpolated minimum (also when not clear, for the record); None if no run.
    steps : int
        Optimiser steps of each short run.
    """

    sigma: float
    clear: bool
    message: str
    scores: dict[float, float] = field(default_factory=dict)
    estimate: float | None = None
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the model file (keys are strings there)."""
        return {"method": "validation-loss search", "sigma": self.sigma, "clear": self.clear,
                "message": self.message, "estimate": self.estimate, "steps": self.steps,
                "scores": [[float(s), float(v)] for s, v in sorted(self.scores.items())]}


def short_run_config(config: TrainConfig, sigma: float, steps: int) -> TrainConfig:
    """``config`` with a Gaussian PSF of ``sigma`` and about ``steps`` optimiser steps."""
    per_epoch = max(1, min(steps, config.steps_per_epoch))
    return config.replace(psf="gaussian", psf_sigma=float(sigma), epochs=max(1, math.ceil(steps / per_epoch)),
                          steps_per_epoch=per_epoch)


@dataclass(frozen=True)
class SearchProgress:
    """Sent by :func:`iter_psf_search` after each short run (``total`` may grow by refinement)."""

    done: int
    total: int
    sigma: float
    score: float


def search_psf_sigma(images: np.ndarray | Sequence[np.ndarray], config: TrainConfig | None = None, *,
                     progress: Callable[[SearchProgress], None] | None = None, **kwargs: Any) -> SigmaSearch:
    """Run :func:`iter_psf_search` to the end; ``progress`` sees every :class:`SearchProgress`."""
    gen = iter_psf_search(images, config, **kwargs)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event)


def iter_psf_search(images: np.ndarray | Sequence[np.ndarray], config: TrainConfig | None = None, *,
                    axes: str | None = None, candidates: Sequence[float] = COARSE_SIGMAS,
                    steps: int = DEFAULT_STEPS, refine: bool = True, default: float = DEFAULT_SIGMA,
                    min_spread: float = MIN_RELATIVE_SPREAD,
                    should_stop: Callable[[], bool] | None = None,
                    ) -> Generator[SearchProgress, None, SigmaSearch]:
    """Score candidate PSF sigmas by the validation loss of short training runs.

    Yields a :class:`SearchProgress` after every short run and returns the
    :class:`SigmaSearch`.

    Parameters
    ----------
    images, axes :
        The noisy training data, as for :class:`~napari_deconoising.core.train.Trainer`.
    config : TrainConfig
        Network, patch, batch, seed and device of the short runs; its PSF fields and
        length are replaced.
    candidates : sequence of float
        First-pass sigmas in pixels (at least two, all >= 0).
    steps : int
        Optimiser steps per candidate.
    refine : bool
        Also try half-way points on both sides of the best candidate.
    default : float
        Returned as ``sigma`` when the answer is not clear.
    min_spread : float
        Relative spread of the scores below which the answer counts as unclear.
    should_stop : callable, optional
        Polled during the runs; when it returns True the search ends early with the
        runs done so far (unclear if fewer than three).
    """
    config = config or TrainConfig()
    cands = sorted({float(c) for c in candidates})
    if len(cands) < 2 or cands[0] < 0:
        raise ValueError("candidates must hold at least two sigmas >= 0")
    if steps < 1:
        raise ValueError("steps must be >= 1")
    stopped = should_stop or (lambda: False)
    scores: dict[float, float] = {}
    todo = list(cands)
    total = len(cands) + (2 if refine else 0)
    while todo and not stopped():
        sigma = todo.pop(0)
        if sigma in scores:
            continue
        trainer = Trainer(images, short_run_config(config, sigma, steps), axes=axes)
        for _ in trainer.run():
            if stopped():
                trainer.stop()
        if stopped():
            break
        scores[sigma] = float(trainer.best_val)
        yield SearchProgress(len(scores), total, sigma, scores[sigma])
        if refine and not todo and len(scores) == len(cands):
            best = min(scores, key=scores.get)
            half = min(b - a for a, b in zip(cands, cands[1:])) / 2
            todo = [round(s, 6) for s in (best - half, best + half) if s >= 0]
            total = len(cands) + len(todo)
    return _decide(scores, cands[-1], default, min_spread, steps)


def _decide(scores: dict[float, float], widest: float, default: float, min_spread: float,
            steps: int) -> SigmaSearch:
    def unclear(why: str, estimate: float | None) -> SigmaSearch:
        return SigmaSearch(default, False, f"PSF sigma: the data gave no clear answer ({why}); "
                           f"using the default {default:g} px", scores, estimate, steps)

    finite = {s: v for s, v in scores.items() if math.isfinite(v)}
    if len(finite) < 3:
        return unclear("too few candidate runs finished", None)
    xs = sorted(finite)
    ys = [finite[s] for s in xs]
    i = int(np.argmin(ys))
    estimate = _parabola_min(xs, ys, i)
    spread = (max(ys) - ys[i]) / abs(ys[i]) if ys[i] != 0 else math.inf
    if spread < min_spread:
        return unclear(f"the validation loss changes by only {100 * spread:.2f} % over "
                       f"sigma {xs[0]:g}-{xs[-1]:g} px", estimate)
    if xs[i] >= widest:
        return unclear(f"the best candidate is the widest tried, {xs[i]:g} px", estimate)
    return SigmaSearch(estimate, True, f"PSF sigma estimated from the data: {estimate:.2f} px "
                       f"(lowest validation loss of {len(xs)} short runs)", scores, estimate, steps)


def _parabola_min(xs: list[float], ys: list[float], i: int) -> float:
    """Vertex of the parabola through the best point and its neighbours (clamped to them)."""
    if i == 0 or i == len(xs) - 1:
        return round(xs[i], 3)
    x0, x1, x2 = xs[i - 1], xs[i], xs[i + 1]
    y0, y1, y2 = ys[i - 1], ys[i], ys[i + 1]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom
    if a <= 0:
        return round(x1, 3)
    return round(float(min(max(-b / (2 * a), x0), x2)), 3)
