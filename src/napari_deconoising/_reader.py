"""Reader: dropping a DecoNoising model file (.pt) onto napari loads it into the session.

The model is added to the session's model list and selected in the Apply widget
(which is opened if needed). No layer is created.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["get_reader"]


def get_reader(path):
    """npe2 reader contribution: a reader for ``.pt`` files that are DecoNoising models."""
    if isinstance(path, list):
        return None
    if not str(path).lower().endswith(".pt"):
        return None
    from .core import ModelFileError, load_model

    try:
        model = load_model(path)
    except ModelFileError:
        return None  # some other program's .pt file: let other readers try
    except Exception:  # torch's unpickler can fail in other ways on foreign files
        return None

    def reader(p):
        return _open_model(model, p)

    return reader


def _open_model(model, path) -> list[tuple]:
    import napari

    from ._widgets import REGISTRY, ApplyWidget
    from ._widgets._notify import info

    viewer = napari.current_viewer()
    name = None
    if viewer is not None:
        try:
            _, widget = viewer.window.add_plugin_dock_widget("napari-deconoising", "Apply model")
        except Exception:  # no Qt window (headless) or plugin not registered
            widget = None
        if isinstance(widget, ApplyWidget):
            name = widget.select_model(model, Path(path).stem)
    if name is None:
        name = REGISTRY.name_of(model) or REGISTRY.add(model, Path(path).stem, path=path)
    REGISTRY.entry(name).path = str(path)
    info(f"Loaded model '{name}': {model.summary()}")
    return [(None,)]
