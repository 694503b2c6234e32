"""Reader: dropping a DecoNoising model onto napari loads it into the session.

Model files (``.pt``) and bioimage.io packages exported by this plugin (``.zip`` or
``rdf.yaml``) are accepted. The model is added to the session's model list and
selected in the Apply widget (which is opened if needed). No layer is created.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["get_reader"]


def get_reader(path):
    """npe2 reader contribution: a reader for files that are DecoNoising models."""
    if isinstance(path, list):
        return None
    from .bioimageio import ForeignModelError, is_bioimageio_source, load_any_model

    if not (str(path).lower().endswith(".pt") or is_bioimageio_source(path)):
        return None
    from .core import ModelFileError

    try:
        model = load_any_model(path)
    except ForeignModelError as exc:
        # A bioimage.io model, but not ours: say how to run it, then let other readers try.
        from ._widgets._notify import warning

        warning(str(exc))
        return None
    except ModelFileError as exc:
        if str(path).lower().endswith(".pt"):
            # The reason, before napari's own "the plugin gave an error" (no other reader claims .pt).
            from ._widgets._notify import describe_error, warning

            warning(describe_error(exc))
        return None  # some other program's .pt file or zip: let other readers try
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
    stem = _model_name(path)
    if viewer is not None:
        try:
            _, widget = viewer.window.add_plugin_dock_widget("napari-deconoising", "Apply model")
        except Exception:  # no Qt window (headless) or plugin not registered
            widget = None
        if isinstance(widget, ApplyWidget):
            name = widget.select_model(model, stem)
    if name is None:
        name = REGISTRY.name_of(model) or REGISTRY.add(model, stem, path=path)
    REGISTRY.entry(name).path = str(path)
    info(f"Loaded model '{name}': {model.summary()}")
    return [(None,)]


def _model_name(path) -> str:
    """The file's stem; for an unpacked package's ``rdf.yaml``, its folder's name."""
    p = Path(path)
    return p.parent.name if p.suffix.lower() in (".yaml", ".yml") else p.stem
