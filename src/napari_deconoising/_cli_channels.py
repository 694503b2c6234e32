"""The command line's channel handling: one ``--psf-sigma``/``--psf``/``--psf-optics`` per channel, one
model each, and continuing such a model."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._console import run_training
from .core.channels import ChannelModels, check_resume, split_channels
from .core.config import TrainConfig

__all__ = ["CLI_NDIM_HINTS", "CLIError", "channel_count", "drop_single_channel", "per_channel_args",
           "train_per_channel"]

#: How to train in the resumed model's dimensions (3 or 2) with ``deconoising train``'s options,
#: for the core's resume checks (whose own wording is the Python API's).
CLI_NDIM_HINTS = {3: "add --3d", 2: "without --3d"}


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


def drop_single_channel(image: Any, axes: str | None) -> tuple[Any, str | None]:
    """``image`` and ``axes`` without the ``C`` axis when it holds one channel; else both as given.

    The usual 5D OME-Zarr layout (TCZYX) has a C axis even for a single channel: that is
    one model's data, not one model per channel. Indexing keeps a dask or zarr ``image``
    lazy (nothing is read).
    """
    if not axes or "C" not in axes.upper() or len(axes) != len(image.shape):
        return image, axes
    c = axes.upper().index("C")
    if image.shape[c] != 1:
        return image, axes
    return image[(slice(None),) * c + (0,)], axes[:c] + axes[c + 1:]


def channel_count(images: Sequence[np.ndarray], axes: str | None) -> int:
    """Channels along the ``C`` axis of the inputs (0 without one, or with one channel only).

    A C axis of one entry is no channel axis (one model, see :func:`drop_single_channel`).
    """
    if axes is None or "C" not in axes.upper():
        return 0
    c = axes.upper().index("C")
    if all(len(a.shape) == len(axes) and a.shape[c] == 1 for a in images):
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
    """One copy of ``args`` per channel, each holding one ``--psf-sigma``, ``--psf`` and ``--psf-optics``.

    These options are repeatable: given once they apply to every channel, else exactly
    once per channel, in channel order (emission wavelengths differ per channel).
    ``channels`` is 0 for data without a ``C`` axis, which takes each option once.
    """
    given = {"psf_sigma": args.psf_sigma or [[1.0]], "psf": args.psf or [None],
             "psf_optics": args.psf_optics or [None]}
    n = max(channels, 1)
    for name, values in given.items():
        if len(values) not in (1, n):
            have = f"{channels} channels" if channels else "no channel axis (C)"
            raise CLIError(f"--{name.replace('_', '-')} given {len(values)} times but the image has {have}: give "
                           "it once for all channels or once per channel, in channel order")
    out = []
    for k in range(n):
        a = copy.copy(args)
        for name, values in given.items():
            setattr(a, name, values[k if len(values) > 1 else 0])
        out.append(a)
    return out


def train_per_channel(image: np.ndarray, axes: str, built: Sequence[tuple[TrainConfig, np.ndarray | None]],
                      train: Callable[..., Any] = run_training, resume: Any = None) -> ChannelModels:
    """Train one model per channel of ``image`` with its own config and PSF, in the foreground.

    ``resume`` (a loaded model file) continues its channel k on channel k; it is checked
    with :func:`~napari_deconoising.core.channels.check_resume` before any channel trains.
    """
    views, rest = split_channels(image, axes)
    if resume is not None:
        resume = check_resume(resume, len(views), built[0][0].ndim, hints=CLI_NDIM_HINTS)
    starts = [None] * len(views) if resume is None else resume.models
    models = []
    for k, (view, (cfg, psf), start) in enumerate(zip(views, built, starts)):
        model, _ = train(view, cfg, axes=rest, psf=psf, resume=start, label=f"channel {k + 1}/{len(views)}: ")
        models.append(model)
    return ChannelModels(models)
