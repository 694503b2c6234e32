"""``deconoising train``: options to configurations, one model or one per channel, resume, torchrun."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ._batch import expand_inputs
from ._cli_channels import (
    CLI_NDIM_HINTS,
    CLIError,
    channel_count,
    drop_single_channel,
    per_channel_args,
    train_per_channel,
)
from ._cli_sigma import sigma_values, train_learning_sigma, wants_auto
from ._console import run_training
from .bioimageio import load_any_model
from .core.channels import check_resume, check_single_resume
from .core.config import TrainConfig
from .core.lazy_io import open_lazy
from .core.optics import optics_psf, parse_optics

__all__ = ["DEFAULT_PATCH_3D", "cmd_train"]

_IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr", ".png", ".jpg", ".jpeg")


def _load_inputs(paths: Sequence[str], axes: str | None, three_d: bool = False) -> tuple[list, str | None]:
    """The training images, opened lazily (dask arrays): patches are read as they are drawn.

    Checks what only a file's name makes clear in a message (the core knows "image k"):
    a 2D file for ``--3d``, a file with channels among several.
    """
    arrays, found = [], []
    for p in paths:
        lazy = open_lazy(p)
        # one channel on a C axis (the usual 5D OME-Zarr) is one model's data: C is dropped, lazily
        array, file_axes = drop_single_channel(lazy.dask(), axes or lazy.axes)
        if three_d and array.ndim < 3:
            others = "leave it out of the inputs, or " if len(paths) > 1 else ""
            raise CLIError(f"--3d needs a Z axis (volumes), but {p} is 2D {tuple(array.shape)}: {others}"
                           "train a 2D model (without --3d)")
        arrays.append(array)
        found.append(file_axes)
    if axes is not None:  # --axes names every file's axes, without C where every file has one channel
        return arrays, found[0] if len(set(found)) == 1 else axes
    if len(paths) > 1:
        # else their axes disagree and the core would read the channels as slices of one model
        for p, a, array in zip(paths, found, arrays):
            if "C" in (a or ""):
                raise CLIError(_channels_among_several(p, a, array.shape[a.index("C")]))
    if axes is None and len(set(found)) == 1 and found[0] and set(found[0]) <= set("STZCYX"):
        axes = found[0]  # else None: the core guesses per array shape
    return arrays, axes


def _warn_psf_sampling(psf_path: str, image_path: Path) -> None:
    """Warn when a PSF file was measured or computed at another pixel size than the image's."""
    from .core.io import ImageFileError
    from .core.units import lengths_nm, sampling_mismatch

    try:
        psf, image = open_lazy(psf_path), open_lazy(image_path)
    except ImageFileError:
        return  # reading the PSF reports its own error
    differ = sampling_mismatch(lengths_nm(psf.axes, psf.scale, psf.units),
                               lengths_nm(image.axes, image.scale, image.units))
    if differ:
        print(f"deconoising: warning: {psf_path} was made at another pixel size than {image_path} ({differ}): "
              "a PSF is a kernel in pixels, so its width does not fit this image; measure or compute it at the "
              "image's pixel size", file=sys.stderr)


def _channels_among_several(path: str, axes: str, n: int) -> str:
    """Why the file ``path``, with ``n`` channels on its axis C, cannot be trained with other files."""
    if axes.endswith("XC"):  # a TIFF's samples per pixel
        return f"{path} is an RGB image ({n} samples per pixel), not a fluorescence image: leave it out of the inputs"
    return (f"{path} has {n} channels (axis C): an image with channels is trained on its own, one model per "
            "channel; give it as the only input")


def _config_from_args(args: argparse.Namespace, label: str = "") -> tuple[TrainConfig, np.ndarray | None]:
    """One channel's configuration and measured PSF from its options (one PSF option each)."""
    from .core.psf import PSFError, load_psf

    ndim = 3 if args.three_d else 2
    axes = "Z Y X" if ndim == 3 else "Y X"
    for flag, values in (("--psf-sigma", args.psf_sigma), ("--patch-size", args.patch_size)):
        if values is not None and len(values) not in (1, ndim):
            hint = "" if ndim == 3 or len(values) != 3 else " (3 values need --3d)"
            raise CLIError(f"{flag} takes one value or {ndim} ({axes}), got {len(values)}{hint}")
    psf_array, optics = None, None
    if args.psf_optics is not None:
        psf_kind, sigma, optics = "measured", 0.0, parse_optics(args.psf_optics)
    elif args.no_psf:
        psf_kind, sigma = "none", 0.0
    elif args.psf is not None:
        psf_kind, sigma = "measured", 0.0
        try:
            psf_array = load_psf(args.psf, ndim=ndim)
        except PSFError as e:  # with channels: which channel's file
            raise PSFError(f"{label}{e}") from None
    else:
        psf_kind = "gaussian"
        sigma = sigma_values(args.psf_sigma)
    if args.patch_size is None:
        patch = DEFAULT_PATCH_3D if ndim == 3 else TrainConfig.patch_size
    else:
        patch = tuple(args.patch_size) if len(args.patch_size) > 1 else args.patch_size[0]
    cfg = TrainConfig(
        psf=psf_kind, psf_sigma=sigma, positivity=args.positivity, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, micro_batches=args.micro_batches,
        patch_size=patch, val_fraction=args.val_fraction, lr=args.lr, head_lr_scale=args.head_lr_scale,
        weight_average=args.weight_average, wiener_eps=args.wiener_eps,
        depth=args.depth, channels=args.channels, seed=args.seed, device=args.device, precision=args.precision,
        ndim=ndim, optics=optics, n2v2=args.n2v2, cuda_graph=args.cuda_graph, decoder=args.decoder,
    )
    if optics is not None:
        psf_array = optics_psf(optics, ndim=cfg.ndim)
        print(f"{label}PSF from optics: {optics.describe(cfg.ndim)}, {psf_array.shape} pixels", file=sys.stderr)
    return cfg, psf_array


# A 100^3 patch (the 2D default cubed) is 16x the voxels of the 16x64x64, and most
# stacks are thinner than 100 planes anyway.
DEFAULT_PATCH_3D = (16, 64, 64)


def _warn_kept_architecture(args: argparse.Namespace, kept: TrainConfig) -> None:
    """Say so when options ask for another network or PSF than the resumed model's (it keeps its own)."""
    default = TrainConfig()
    for flag, name in (("--depth", "depth"), ("--channels", "channels"), ("--decoder", "decoder")):
        asked = getattr(args, name)
        if asked != getattr(default, name) and asked != getattr(kept, name):
            print(f"deconoising: warning: {flag} {asked} is ignored: a resumed model keeps its network "
                  f"({name} {getattr(kept, name)})", file=sys.stderr)
    if args.n2v2 and not kept.n2v2:
        print("deconoising: warning: --n2v2 is ignored: a resumed model keeps its network (not N2V2)", file=sys.stderr)
    for flag, given in (("--psf-sigma", args.psf_sigma), ("--psf", args.psf), ("--no-psf", args.no_psf)):
        if given:
            print(f"deconoising: warning: {flag} is ignored: a resumed model keeps its PSF", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int:
    from .core.distributed import from_environment, shutdown

    if args.resume and args.psf_optics:
        raise CLIError("--psf-optics with --resume: a resumed model keeps its own PSF")
    out = Path(args.model)
    if not out.parent.exists():
        raise CLIError(f"output folder does not exist: {out.parent}")
    if out.is_dir():
        raise CLIError(f"--model {out} is a folder; name the model file, e.g. {out / 'model.pt'}")
    if out.suffix.lower() in _IMAGE_SUFFIXES:
        raise CLIError(f"--model {out}: a model file ends in .pt, not {out.suffix} (an image's suffix)")
    paths = expand_inputs(args.inputs)
    if out.exists() and any(p.exists() and out.resolve() == p.resolve() for p in paths):
        raise CLIError(f"refusing to overwrite the input image {out} with the model")
    images, axes = _load_inputs([str(p) for p in paths], args.axes, args.three_d)
    for psf_path in args.psf or []:
        _warn_psf_sampling(psf_path, paths[0])
    channels = channel_count(images, axes)
    built = [_config_from_args(a, f"channel {k + 1}/{channels}: " if channels else "")
             for k, a in enumerate(per_channel_args(args, channels))]
    auto = not args.no_psf and not args.psf and any(wants_auto(v) for v in (args.psf_sigma or []))
    if auto and (args.resume or channels or os.environ.get("WORLD_SIZE", "1") != "1"):
        raise CLIError("--psf-sigma auto trains one single-channel model in one process: it cannot be combined "
                       "with --resume (a resumed model keeps its PSF), a channel axis (C) or torchrun")
    resume = load_any_model(args.resume) if args.resume else None
    if resume is not None:
        _warn_kept_architecture(args, getattr(resume, "models", [resume])[0].config)
    if channels:
        if os.environ.get("WORLD_SIZE", "1") != "1":
            raise CLIError("one model per channel (a C axis) trains in one process; run it without torchrun")
        if resume is not None:  # before the image is read into memory
            check_resume(resume, channels, built[0][0].ndim, hints=CLI_NDIM_HINTS)
        # One model per channel holds each channel in memory while it trains.
        model = train_per_channel(np.asarray(images[0]), axes, built, resume=resume)
        model.save(out)
        print(f"saved model to {out}:\n{model.summary()}", file=sys.stderr)
        return 0
    cfg, psf_array = built[0]
    if resume is not None:  # before the images are read
        resume = check_single_resume(resume, cfg.ndim, hints=CLI_NDIM_HINTS)
    if auto:
        model = train_learning_sigma(images, cfg, axes)
        model.save(out)
        print(f"saved model to {out}: {model.summary()}", file=sys.stderr)
        return 0
    ddp = from_environment(args.device)  # under torchrun: join the other processes
    log = sys.stderr
    try:
        if ddp is not None:
            if cfg.batch_size // cfg.micro_batches < ddp.world:
                raise CLIError(f"--batch-size {cfg.batch_size} is too small to share among {ddp.world} processes"
                               + (f" and {cfg.micro_batches} micro-batches" if cfg.micro_batches > 1 else ""))
            cfg = cfg.replace(device=ddp.device(cfg.device))
            if not ddp.is_main:
                log = open(os.devnull, "w")  # noqa: SIM115 - one report, from rank 0
            print(f"DDP: {ddp.world} processes ({torch.distributed.get_backend()}), {cfg.batch_size} patches "
                  f"per step in total", file=log)
        model, _ = run_training(images, cfg, axes=axes, psf=psf_array, resume=resume, out=log, ddp=ddp)
        if ddp is None or ddp.is_main:
            model.save(out)
            print(f"saved model to {out}: {model.summary()}", file=log)
    finally:
        if ddp is not None:
            shutdown()
    return 0
