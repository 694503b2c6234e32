"""The command line's channel handling: one ``--psf-sigma``/``--psf`` per channel, one model each."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._console import run_training
from .core.channels import ChannelModels, split_channels
from .core.config import TrainConfig

__all__ = ["CLIError", "channel_count", "per_channel_args", "train_per_channel"]


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


def channel_count(images: Sequence[np.ndarray], axes: str | None) -> int:
    """Channels along the ``C`` axis of the inputs (0 without one)."""
    if axes is None or "C" not in axes.upper():
        return 0
    if len(images) != 1:
        raise CLIError("images with a channel axis (C) are trained one file at a time; give a single input")
    if len(axes) != images[0].ndim:
        raise CLIError(f"--axes {axes} has {len(axes)} letters but the image has {images[0].ndim} dimensions "
                       f"{images[0].shape}")
    if axes.upper().endswith("XC"):
        # channels after X are a TIFF's RGB(A) samples: a colour picture, not fluorescence channels
        raise CLIError("the image has its channels last (RGB samples, axes ...YXC); DecoNoising needs raw "
                       "fluorescence channels, stored channel by channel (e.g. CYX)")
    return int(images[0].shape[axes.upper().index("C")])


def per_channel_args(args: argparse.Namespace, channels: int) -> list[argparse.Namespace]:
    """One copy of ``args`` per channel, each holding one ``--psf-sigma`` and one ``--psf``.

    ``--psf-sigma`` and ``--psf`` are repeatable: given once they apply to every channel,
    else exactly once per channel, in channel order. ``channels`` is 0 for data without a
    ``C`` axis, which takes each option once.
    """
    sigmas = args.psf_sigma or [[1.0]]
    psfs = args.psf or [None]
    n = max(channels, 1)
    for flag, values in (("--psf-sigma", sigmas), ("--psf", psfs)):
        if len(values) not in (1, n):
            have = f"{channels} channels" if channels else "no channel axis (C)"
            raise CLIError(f"{flag} given {len(values)} times but the image has {have}: give it once for "
                           "all channels or once per channel, in channel order")
    out = []
    for k in range(n):
        a = copy.copy(args)
        a.psf_sigma = sigmas[k if len(sigmas) > 1 else 0]
        a.psf = psfs[k if len(psfs) > 1 else 0]
        out.append(a)
    return out


def train_per_channel(image: np.ndarray, axes: str, built: Sequence[tuple[TrainConfig, np.ndarray | None]],
                      train: Callable[..., Any] = run_training) -> ChannelModels:
    """Train one model per channel of ``image`` with its own config and PSF, in the foreground."""
    views, rest = split_channels(image, axes)
    models = []
    for k, (view, (cfg, psf)) in enumerate(zip(views, built)):
        model, _ = train(view, cfg, axes=rest, psf=psf, label=f"channel {k + 1}/{len(views)}: ")
        models.append(model)
    return ChannelModels(models)
