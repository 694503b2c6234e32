"""Open a bioimage.io package exported by this project as a :class:`DecoNoisingModel` (or a
:class:`ChannelModels` for a package with a model per channel).

Nothing from the package is executed: ``rdf.yaml`` is read with ``yaml.safe_load``, the
architecture must be ours (by name, nothing is imported from the package), and the
weights load with ``torch.load(..., weights_only=True)``. ``bioimageio`` is not needed.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from ..core.channels import ChannelModels, load_model
from ..core.model import DecoNoisingModel
from ..core.modelfile import CHANNELS_FORMAT_VERSION, FORMAT_NAME
from .architecture import ARCHITECTURE, CHANNEL_ARCHITECTURE, CONFIG_KEY, PSF_KEY
from .errors import BioimageioModelError, ForeignModelError

__all__ = ["is_bioimageio_source", "load_bioimageio_model", "load_any_model"]

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
FOREIGN = "not a napari-deconoising model; run it with bioimageio.core instead"


def is_bioimageio_source(path: str | PathLike) -> bool:
    """True for a path that names a bioimage.io package: a ``.zip`` or an ``rdf.yaml``."""
    name = Path(path).name.lower()
    return name.endswith(".zip") or name in RDF_NAMES or name.endswith((".rdf.yaml", ".bioimageio.yaml"))


def load_any_model(path: str | PathLike) -> DecoNoisingModel | ChannelModels:
    """Open a model file (``.pt``, one model or one per channel) or a bioimage.io package
    exported by this project."""
    if is_bioimageio_source(path):
        return load_bioimageio_model(path)
    return load_model(path)


class _Package:
    """Files of a package: a zip, or a folder holding ``rdf.yaml``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.suffix.lower() == ".zip":
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise BioimageioModelError(f"{path} is not a readable zip file: {e}") from None
            names = set(self.zip.namelist())
            found = [n for n in RDF_NAMES if n in names]
            if not found:
                raise BioimageioModelError(f"{path} is not a bioimage.io package (no rdf.yaml in it)")
            self.rdf_name = found[0]
        else:
            self.rdf_name = path.name
            self.root = path.parent

    def read(self, name: str) -> bytes:
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or "://" in name:
            raise BioimageioModelError(f"{self.path}: refusing to read {name!r} from outside the package")
        try:
            if self.zip is not None:
                return self.zip.read(str(rel))
            return (self.root / rel).read_bytes()
        except (KeyError, OSError) as e:
            raise BioimageioModelError(f"{self.path}: file {name!r} of the package is missing ({e})") from None

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def load_bioimageio_model(path: str | PathLike) -> DecoNoisingModel | ChannelModels:
    """Read a bioimage.io package written by :func:`~napari_deconoising.bioimageio.export_bioimageio`:
    a :class:`DecoNoisingModel`, or a :class:`ChannelModels` for a model per channel.

    Parameters
    ----------
    path : path-like
        The package zip, or the ``rdf.yaml`` of an unpacked package.

    Raises
    ------
    BioimageioModelError
        Missing or broken package, a newer format, or a foreign model (a bioimage.io
        model that this project did not export: run it with bioimageio.core instead).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BioimageioModelError(f"model file not found: {path}")
    pkg = _Package(path)
    try:
        try:
            rdf = yaml.safe_load(pkg.read(pkg.rdf_name))
        except yaml.YAMLError as e:
            raise BioimageioModelError(f"{path}: rdf.yaml is not valid YAML: {e}") from None
        payload, weights = _our_parts(rdf, path)
        raw = pkg.read(weights["source"])
        expected = weights.get("sha256")
        if expected and hashlib.sha256(raw).hexdigest() != expected:
            raise BioimageioModelError(f"{path}: the weights do not match their checksum (damaged package)")
        try:
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise BioimageioModelError(f"{path}: the weights contain objects that are not plain data "
                                       "(possibly code); refusing to load them") from None
        except Exception as e:  # torch raises many types for junk
            raise BioimageioModelError(f"{path}: the weights are not readable: {e}") from None
        return _model(payload, state, path)
    finally:
        pkg.close()


def _our_parts(rdf: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our payload and the state-dict weights entry, or a clear refusal."""
    if not isinstance(rdf, dict) or rdf.get("type") != "model":
        raise BioimageioModelError(f"{path} does not describe a bioimage.io model")
    config = rdf.get("config") or {}
    payload = config.get(CONFIG_KEY) if isinstance(config, dict) else None
    # a stranger's rdf.yaml may hold any YAML where mappings belong: each level is checked
    weights = _mapping(_mapping(rdf.get("weights")).get("pytorch_state_dict"))
    arch = _mapping(weights.get("architecture"))
    if (not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME
            or (arch.get("import_from"), arch.get("callable")) not in (ARCHITECTURE, CHANNEL_ARCHITECTURE)):
        raise ForeignModelError(f"{path} is {FOREIGN}")
    version = payload.get("format_version")
    if not isinstance(version, int):
        raise BioimageioModelError(f"{path} has no valid napari-deconoising format version")
    if version > CHANNELS_FORMAT_VERSION:
        raise BioimageioModelError(f"{path} was written by a newer napari-deconoising (model format "
                                   f"{version}, this version reads up to {CHANNELS_FORMAT_VERSION}); please upgrade")
    if ("channels" in payload) != ((arch.get("import_from"), arch.get("callable")) == CHANNEL_ARCHITECTURE):
        raise BioimageioModelError(f"{path} is damaged: its architecture and its channel list disagree")
    if not isinstance(weights.get("source"), str):
        raise BioimageioModelError(f"{path} has no pytorch_state_dict weights file")
    return payload, weights


def _mapping(value: Any) -> dict:
    """``value`` where it is a mapping, else an empty one (what a missing entry gives)."""
    return value if isinstance(value, dict) else {}


def _model(payload: dict[str, Any], state: Any, path: Path) -> DecoNoisingModel | ChannelModels:
    """The model from rdf.yaml's payload and the weights (whose PSF entries are the models' PSFs)."""
    if not isinstance(state, dict):
        raise BioimageioModelError(f"{path} is damaged: the weights are not a state dict")
    if "channels" not in payload:
        return DecoNoisingModel.from_payload(_with_weights(payload, state, path), source=path)
    channels = payload["channels"]
    if not isinstance(channels, list) or not channels or not all(isinstance(c, dict) for c in channels):
        raise BioimageioModelError(f"{path} is damaged: its channel list is empty or not a list of models")
    per_channel: list[dict[str, torch.Tensor]] = [{} for _ in channels]
    for key, value in state.items():
        _, k, rest = str(key).split(".", 2) if str(key).count(".") >= 2 else ("", "", "")
        if not str(key).startswith("nets.") or not k.isdigit() or int(k) >= len(channels):
            raise BioimageioModelError(f"{path} is damaged: unexpected weight {key!r} for {len(channels)} channels")
        per_channel[int(k)][rest] = value
    return ChannelModels.from_payload(
        {"channels": [_with_weights(c, s, path) for c, s in zip(channels, per_channel)]}, source=path)


def _with_weights(payload: dict[str, Any], state: dict[str, Any], path: Path) -> dict[str, Any]:
    """One model's payload with its weights and its PSF, which the weights carry under ``psf_kernel``."""
    if not isinstance(state.get(PSF_KEY), torch.Tensor):
        raise BioimageioModelError(f"{path} is damaged: no {PSF_KEY} in the weights")
    state = dict(state)
    kernel = state.pop(PSF_KEY)
    return {**payload, "state_dict": state, "psf": None if kernel.numel() == 1 else kernel}
