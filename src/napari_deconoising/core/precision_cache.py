"""Remembering measured precision choices across runs, per machine, network, task and torch version."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .precision import PrecisionChoice

__all__ = ["CACHE_ENV", "ISA_LIMIT_ENVS", "cache_dir", "cache_key", "isa_limits", "DecisionCache"]

# A folder to keep the cache in, or "off" (also "0", "none", "") to measure every time.
CACHE_ENV = "NAPARI_DECONOISING_CACHE"
_FILE = "precision.json"
# Variables that restrict the instructions oneDNN or ATen may use: the same CPU then runs
# at another speed (bf16 emulated, say), so a decision made without them does not apply.
ISA_LIMIT_ENVS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def cache_dir() -> Path | None:
    """Where decisions are kept: ``$NAPARI_DECONOISING_CACHE``, else the user cache folder.

    ``None`` when the environment variable switches the cache off.
    """
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "none", "false") else Path(env).expanduser()
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # napari brings platformdirs; the bare core may not have it
        return Path.home() / ".cache" / "napari-deconoising"
    return Path(user_cache_dir("napari-deconoising", appauthor=False))


def isa_limits() -> dict[str, str]:
    """The instruction-set limits set in this process' environment (:data:`ISA_LIMIT_ENVS`)."""
    return {k: os.environ[k] for k in ISA_LIMIT_ENVS if os.environ.get(k)}


def cache_key(machine: str, device: str, task: str, network: Mapping, torch_version: str,
              limits: Mapping[str, str] | None = None, candidates: Sequence[str] | None = None) -> str:
    """A stable key: anything that changes the timings changes it.

    ``limits``: instruction-set limits (default: this environment's, :func:`isa_limits`).
    ``candidates``: the precisions compared, where they are not the device's usual ones
    (int8): a decision made without a candidate does not answer for a run with it.
    """
    limits = isa_limits() if limits is None else dict(limits)
    key = {"machine": machine, "device": device, "task": task, "network": dict(network), "torch": torch_version}
    if limits:  # only then: keys made without limits stay valid
        key["isa_limits"] = limits
    if candidates:
        key["candidates"] = list(candidates)
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class DecisionCache:
    """A small JSON file of :class:`PrecisionChoice` objects by :func:`cache_key`.

    A missing, unreadable or corrupt file counts as empty, and a failed write is
    ignored: the cache only saves time, it must never stop a run.
    """

    def __init__(self, folder: Path | None | str = "default") -> None:
        self.folder = cache_dir() if folder == "default" else (None if folder is None else Path(folder))

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / _FILE

    def _read(self) -> dict:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> PrecisionChoice | None:
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            return PrecisionChoice.from_json(entry)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def put(self, key: str, choice: PrecisionChoice, note: Mapping | None = None) -> None:
        if self.path is None:
            return
        data = self._read()
        data[key] = {**choice.to_json(), **(dict(note) if note else {})}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a concurrent reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".precision-", suffix=".json")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(data, f, indent=1)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)  # a failed write (a full disk) leaves no temporary file behind
                raise
        except OSError:
            pass
