"""Models known to this napari session: trained here or loaded from files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from psygnal import Signal

from ..core import DecoNoisingModel

__all__ = ["ModelEntry", "ModelRegistry", "REGISTRY"]


@dataclass
class ModelEntry:
    name: str
    model: DecoNoisingModel
    path: str | None = None  # file it was loaded from or last saved to


class ModelRegistry:
    """A small ordered name -> model mapping that widgets watch (``changed`` signal)."""

    changed = Signal()

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}

    def add(self, model: DecoNoisingModel, name: str, path: str | Path | None = None) -> str:
        """Register ``model`` under a unique version of ``name`` and return that name."""
        base, unique, k = name, name, 1
        while unique in self._entries:
            k += 1
            unique = f"{base} [{k}]"
        self._entries[unique] = ModelEntry(unique, model, None if path is None else str(path))
        self.changed.emit()
        return unique

    def get(self, name: str) -> DecoNoisingModel:
        return self._entries[name].model

    def entry(self, name: str) -> ModelEntry:
        return self._entries[name]

    def name_of(self, model: DecoNoisingModel) -> str | None:
        for e in self._entries.values():
            if e.model is model:
                return e.name
        return None

    def names(self) -> list[str]:
        return list(self._entries)

    def remove(self, name: str) -> None:
        if self._entries.pop(name, None) is not None:
            self.changed.emit()

    def clear(self) -> None:
        self._entries.clear()
        self.changed.emit()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


#: The session's models, shared by the train and apply widgets and the reader.
REGISTRY = ModelRegistry()


def read_model_file(path: str | Path) -> DecoNoisingModel | None:
    """Load a model file or bioimage.io package; on failure show a specific error notification and return None."""
    from ..bioimageio import load_any_model
    from ..core import ModelFileError
    from ._notify import notify_error

    try:
        return load_any_model(path)
    except ModelFileError as exc:
        notify_error(exc, what="loading the model")
    except Exception as exc:  # torch's unpickler can fail in other ways on foreign files
        notify_error(
            ModelFileError(f"{path} is not a readable model file: {exc}"), what="loading the model"
        )
    return None
