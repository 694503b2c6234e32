"""The model file: one ``.pt`` file that is safe to load from a stranger.

This module knows the file, not the model: it writes a payload of plain data (tensors,
numbers, strings, lists, dicts) inside a versioned envelope, atomically, and reads it
back with ``torch.load(..., weights_only=True)``, which refuses anything that would run
code. What the payload holds, and how it becomes a model, is
:meth:`~napari_deconoising.core.model.DecoNoisingModel.to_payload` /
:meth:`~napari_deconoising.core.model.DecoNoisingModel.from_payload`.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from .io import usual_permissions

__all__ = ["CHANNELS_FORMAT_VERSION", "FORMAT_NAME", "FORMAT_VERSION", "SINGLE_FORMAT_VERSION", "ModelFileError",
           "write_payload", "read_payload"]

FORMAT_NAME = "napari-deconoising-model"
#: One model (one channel): unchanged since the first release.
SINGLE_FORMAT_VERSION = 1
#: One model per channel (``{"channels": [payload, ...]}``); version 1 readers refuse it as too new.
CHANNELS_FORMAT_VERSION = 2
#: The newest version this release reads and writes.
FORMAT_VERSION = CHANNELS_FORMAT_VERSION


class ModelFileError(ValueError):
    """A model file cannot be read: missing, corrupt, foreign, unsafe or too new."""


def write_payload(path: str | PathLike, payload: dict[str, Any], format_version: int = FORMAT_VERSION) -> None:
    """Write ``payload`` to ``path`` atomically, inside the format's envelope.

    The envelope adds ``format``, ``format_version`` and ``software_version``. The file
    is first written next to its destination and then renamed over it, so a crash or a
    full disk never leaves a half-written model (an existing file at ``path`` stays
    intact until the new one is complete).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    payload : dict
        Plain data only: anything else would be refused by :func:`read_payload`.
    format_version : int
        The lowest version that describes ``payload``, so that older readers load
        everything they can (a single model is written as version 1).
    """
    from .. import __version__

    path = Path(path)
    envelope = {"format": FORMAT_NAME, "format_version": format_version, "software_version": str(__version__)}
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder; name the model file, e.g. {path / 'model.pt'}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:  # owns fd from here on: closed whatever happens below
            usual_permissions(tmp)
            torch.save({**envelope, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_payload(path: str | PathLike) -> dict[str, Any]:
    """Read and check a file written by :func:`write_payload`; no code in it ever runs.

    Returns
    -------
    dict
        The whole payload, envelope keys included.

    Raises
    ------
    ModelFileError
        With a message saying what is wrong: no such file, not a model file (corrupt,
        truncated or another program's), unsafe content, or a newer format version.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file")
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if not is_zip:  # torch.save writes a zip archive (checked by its start: a truncated one still is)
        raise ModelFileError(f"{path} is not a readable model file: not a .pt file written by torch.save "
                             "(napari-deconoising saves models as .pt files)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own text advises loading with weights_only=False: not advice to pass on.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise ModelFileError(
            f"{path} contains objects that are not plain data{what}, which could run code when loaded; "
            "refusing to load it"
        ) from None
    except Exception:  # torch/zipfile/struct raise many types for junk files
        raise ModelFileError(f"{path} is not a readable model file (corrupt or truncated?)") from None
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
    return payload
