"""Open a bioimage.io package exported by this project as a :class:`DecoNoisingModel`.

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

from ..core.model import DecoNoisingModel, load_model
from ..core.modelfile import FORMAT_NAME, FORMAT_VERSION
from .architecture import ARCHITECTURE, CONFIG_KEY, PSF_KEY
from .errors import BioimageioModelError, ForeignModelError

__all__ = ["is_bioimageio_source", "load_bioimageio_model", "load_any_model"]

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
FOREIGN = "not a napari-deconoising model; run it with bioimageio.core instead"


def is_bioimageio_source(path: str | PathLike) -> bool:
    """True for a path that names a bioimage.io package: a ``.zip`` or an ``rdf.yaml``."""
    name = Path(path).name.lower()
    return name.endswith(".zip") or name in RDF_NAMES or name.endswith((".rdf.yaml", ".bioimageio.yaml"))


def load_any_model(path: str | PathLike) -> DecoNoisingModel:
    """Open a model file (``.pt``) or a bioimage.io package exported by this project."""
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


def load_bioimageio_model(path: str | PathLike) -> DecoNoisingModel:
    """Read a bioimage.io package written by :func:`~napari_deconoising.bioimageio.export_bioimageio`.

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
    weights = (rdf.get("weights") or {}).get("pytorch_state_dict") or {}
    arch = weights.get("architecture") or {}
    if (not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME
            or (arch.get("import_from"), arch.get("callable")) != ARCHITECTURE):
        raise ForeignModelError(f"{path} is {FOREIGN}")
    version = payload.get("format_version")
    if not isinstance(version, int):
        raise BioimageioModelError(f"{path} has no valid napari-deconoising format version")
    if version > FORMAT_VERSION:
        raise BioimageioModelError(f"{path} was written by a newer napari-deconoising (model format "
                                   f"{version}, this version reads up to {FORMAT_VERSION}); please upgrade")
    if not isinstance(weights.get("source"), str):
        raise BioimageioModelError(f"{path} has no pytorch_state_dict weights file")
    return payload, weights


def _model(payload: dict[str, Any], state: Any, path: Path) -> DecoNoisingModel:
    """The model from rdf.yaml's payload and the weights (whose PSF entry is the model's PSF)."""
    if not isinstance(state, dict) or not isinstance(state.get(PSF_KEY), torch.Tensor):
        raise BioimageioModelError(f"{path} is damaged: no {PSF_KEY} in the weights")
    state = dict(state)
    kernel = state.pop(PSF_KEY)
    return DecoNoisingModel.from_payload(
        {**payload, "state_dict": state, "psf": None if kernel.numel() == 1 else kernel}, source=path)
