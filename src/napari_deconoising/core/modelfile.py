"""The model file: one ``.pt`` file that is safe to load from a stranger.

Only tensors, numbers, strings, lists and dicts are stored, and loading uses
``torch.load(..., weights_only=True)``, which refuses anything that would run code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from os import PathLike
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, TrainConfig
from .model import DecoNoisingModel

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ModelFileError", "save_model", "load_model"]

FORMAT_NAME = "napari-deconoising-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file cannot be read: missing, corrupt, foreign, unsafe or too new."""


def save_model(model: DecoNoisingModel, path: str | PathLike) -> None:
    """Write ``model`` to ``path`` atomically.

    The file is first written next to its destination and then renamed over it, so a
    crash or a full disk never leaves a half-written model (an existing file at
    ``path`` stays intact until the new one is complete).
    """
    from .. import __version__

    path = Path(path)
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "software_version": str(__version__),
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict.items()},
        "normalisation": {"mean": float(model.mean), "std": float(model.std)},
        "psf": None if model.psf is None else torch.from_numpy(np.ascontiguousarray(model.psf, np.float32)),
        "history": [{k: _plain(v) for k, v in h.items()} for h in model.history],
    }
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def load_model(path: str | PathLike) -> DecoNoisingModel:
    """Read a model written by :func:`save_model`.

    Raises
    ------
    ModelFileError
        With a message saying what is wrong: no such file, not a model file (corrupt,
        truncated or another program's), unsafe content, or a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelFileError(
            f"{path} contains objects that are not plain data (possibly code); refusing to load it. "
            f"({str(e).splitlines()[0][:200]})"
        ) from None
    except Exception as e:  # torch/zipfile/struct raise many types for junk files
        raise ModelFileError(f"{path} is not a readable model file (corrupt or truncated?): {e}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not a napari-deconoising model file")
    version = payload.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path} has no valid format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer napari-deconoising (model format {version}, this "
            f"version reads up to {FORMAT_VERSION}); please upgrade"
        )
    try:
        config = TrainConfig.from_dict(payload["config"])
        norm = payload["normalisation"]
        psf = payload["psf"]
        model = DecoNoisingModel(
            config=config,
            state_dict=dict(payload["state_dict"]),
            mean=float(norm["mean"]),
            std=float(norm["std"]),
            psf=None if psf is None else psf.numpy().astype(np.float32),
            history=list(payload.get("history", [])),
        )
        model.build_network()  # checks that the weights fit the architecture
    except (ConfigError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise ModelFileError(f"{path} is damaged: {e}") from None
    return model
