"""The command line's ``--psf-sigma``: numbers, or ``auto`` to learn sigma with the network."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from ._cli_channels import CLIError
from ._console import run_training
from .core.config import TrainConfig
from .core.predict import Cancelled

__all__ = ["sigma_values", "wants_auto", "train_learning_sigma"]


def sigma_values(values: Sequence[str]) -> float | tuple[float, ...]:
    """``--psf-sigma`` as numbers; ``auto`` is resolved by the caller (it stands for 1.0 here)."""
    if wants_auto(values):
        return 1.0
    try:
        nums = tuple(float(v) for v in values)
    except ValueError:
        raise CLIError(f"--psf-sigma takes numbers or 'auto', got {' '.join(values)}") from None
    return nums if len(nums) > 1 else nums[0]


def wants_auto(values: Sequence[str]) -> bool:
    if any(str(v).lower() == "auto" for v in values):
        if len(values) > 1:
            raise CLIError("--psf-sigma auto takes no further values")
        return True
    return False


def train_learning_sigma(images: list[np.ndarray], cfg: TrainConfig, axes: str | None):
    """``--psf-sigma auto``: learn sigma in a short run, then train with it (or the default) fixed."""
    from .core.learned_psf import INIT_SIGMA, LearnedSigmaTrainer, estimation_config, sigma_text

    learn_cfg = estimation_config(cfg)
    print(f"learning the PSF sigma with the network ({learn_cfg.total_steps} steps, starting at {INIT_SIGMA:g} px), "
          "then training with it fixed", file=sys.stderr)
    trainer = LearnedSigmaTrainer(images, learn_cfg, axes=axes)
    _, trainer = run_training(images, learn_cfg, axes=axes, trainer=trainer)
    if trainer.stopped:  # Ctrl-C: stop, rather than train the full run with a sigma learned part way
        learned = trainer.estimate(check_edges=False)["learned"]  # not the edge fit: up to a minute in 3D
        raise Cancelled(f"interrupted while learning the PSF sigma (at {sigma_text(learned)} px so far): "
                        "no model was saved")
    try:
        estimate = trainer.estimate()
    except KeyboardInterrupt:  # the edge fit runs outside the training loop's own Ctrl-C handling
        raise Cancelled("interrupted while checking the learned PSF sigma against the image's edges: "
                        "no model was saved") from None
    print(f"deconoising: {estimate['message']}", file=sys.stderr)
    model, _ = run_training(images, cfg.replace(psf_sigma=estimate["sigma"]), axes=axes)
    model.psf_estimate = estimate
    return model
