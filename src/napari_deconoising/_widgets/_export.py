"""The "Export to bioimage.io…" dialog: a small form, then the export in a worker thread.

All the work (test image, weights, README, bioimage.io's model test) is in
:func:`napari_deconoising.bioimageio.export_bioimageio`; this only collects its arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, Label, LineEdit, PushButton
from qtpy.QtGui import QHideEvent, QShowEvent
from qtpy.QtWidgets import QDialog, QVBoxLayout, QWidget

from ..bioimageio.export import package_name
from ..core import ChannelModels, DataError, DecoNoisingModel
from ._base import button_row, refresh_keeping_choices
from ._form import Field, Form
from ._layers import full_resolution, grey_image_choices
from ._notify import Refused, info, notify_error
from ._worker import Job

__all__ = ["ExportDialog", "export_fields", "LICENSES", "split_authors"]

#: Licences offered (SPDX identifiers); bioimage.io recommends CC-BY-4.0.
LICENSES = ["CC-BY-4.0", "CC0-1.0", "MIT", "BSD-3-Clause", "Apache-2.0"]

#: The layer-list events napari refreshes a dock widget's pickers on (``Window.add_dock_widget``);
#: ``reordered`` follows every move.
LAYER_EVENTS = ("inserted", "removed", "reordered", "renamed")


def export_fields(default_name: str, description: str, channels: int = 0) -> tuple[Field, ...]:
    """The form; ``channels`` > 0 for a model per channel, whose sample needs its channel axis first."""
    sample_tip = ("A layer like the training data, for the test image and the cover; empty: a synthetic image"
                  + (f" (2D only). It needs its {channels} channels on the first axis (CYX or CZYX; leading "
                     "axes of a stack before it, e.g. TCYX, take their first plane)" if channels else ""))
    return (
        Field("name", LineEdit, "Name", {"value": default_name, "tooltip": "Shown in the Model Zoo (5+ characters)"}),
        Field("description", LineEdit, "Description", {"value": description}),
        Field("authors", LineEdit, "Authors", {"value": "", "tooltip": "Names separated by commas, or by "
                                                "semicolons for names written 'Surname, Given'"}),
        Field("license", ComboBox, "Licence", {"choices": LICENSES, "value": LICENSES[0]}),
        Field("sample", ComboBox, "Sample image",
              {"nullable": True, "value": None, "tooltip": sample_tip},
              choices=grey_image_choices),
        Field("path", FileEdit, "Save as", {"mode": "w", "filter": "*.zip", "value": ""}),
    )


def _export(model: DecoNoisingModel | ChannelModels, path: Path, kwargs: dict[str, Any]) -> Generator[str, None, Path]:
    from ..bioimageio import export_bioimageio

    yield "exporting"
    return export_bioimageio(model, path, **kwargs)


def split_authors(text: str) -> list[str]:
    """Author names from one line: separated by ``;`` where there is one (so that "Lovelace, Ada;
    Turing, Alan" is two names), else by commas."""
    return [a.strip() for a in text.split(";" if ";" in text else ",") if a.strip()]


def _in_viewer(viewer: Any, layer: Any) -> bool:
    """Whether ``layer`` is (still) one of the viewer's layers; by identity, through napari's proxies."""
    layer = getattr(layer, "__wrapped__", layer)
    return any(getattr(each, "__wrapped__", each) is layer for each in viewer.layers)


class ExportDialog(QDialog):
    """Export ``model`` as a tested bioimage.io package.

    Parameters
    ----------
    viewer : napari.Viewer
        Offers its single-channel image layers as the sample.
    model : DecoNoisingModel or ChannelModels
        What to export: one model, or a model per channel (one package whose input has
        that many channels).
    model_name : str
        The model's name in the session (the default package name).
    track : callable, optional
        Registers the worker with the owning widget, so closing napari waits for it.

    A dialog is not a dock widget, so napari does not keep its "Sample image" picker in
    step with the layers: the dialog follows the layer list itself while it is shown.
    """

    def __init__(self, viewer: Any, model: DecoNoisingModel | ChannelModels, model_name: str,
                 track: Callable[[Job], None] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export to bioimage.io")
        self.viewer, self.model, self._track, self.job = viewer, model, track, None
        self._following = False
        channels = len(model.models) if isinstance(model, ChannelModels) else 0
        # the description is one line in the zoo: a model per channel's summary has one per channel
        summary = "; ".join(model.summary().splitlines())
        self.form = Form(export_fields(package_name(f"DecoNoising {model_name}"), summary, channels), viewer)
        self.export_button = PushButton(text="Export")
        self.export_button.changed.connect(self.export)
        self.status = Label(value="The package is tested with bioimage.io's model test before it is written.")
        self.status.native.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.form.sections["main"].native)
        lay.addWidget(button_row(self.export_button.native))
        lay.addWidget(self.status.native)

    # -- following the layer list while shown ------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        # Layers may have changed while the dialog was hidden; then follow them until it hides.
        self.reset_choices()
        self._follow_layers(True)
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        # Closing (button, Esc, close()) hides the dialog: a hidden one must not keep
        # connections that refresh, or keep alive, a form nobody sees.
        self._follow_layers(False)
        super().hideEvent(event)

    def _follow_layers(self, on: bool) -> None:
        if on == self._following:
            return
        events = self.viewer.layers.events
        for name in LAYER_EVENTS:
            emitter = getattr(events, name)
            if on:
                emitter.connect(self.reset_choices)
            else:
                emitter.disconnect(self.reset_choices)
        self._following = on

    def reset_choices(self, event: Any = None) -> None:
        """Refresh the "Sample image" picker, keeping its layer (also across a rename)."""
        sample = self.form.sample
        before = sample.value
        try:
            refresh_keeping_choices([sample], self.form.reset_choices)
        except RuntimeError:  # the dialog was deleted without hiding (its parent went first)
            self._follow_layers(False)
            return
        if before is not None and sample.value is not before:
            # the picked layer left the viewer: say what the export will use now
            self.status.value = (f"'{before.name}' is no longer in the viewer: the sample image is now "
                                 f"{'a synthetic image' if sample.value is None else repr(sample.value.name)}.")

    # -- export ------------------------------------------------------------------------------
    def arguments(self) -> tuple[Path, dict[str, Any]]:
        """The package path and :func:`export_bioimageio`'s keyword arguments; DataError or Refused if unusable."""
        f = self.form
        raw = str(f.path.value or "").strip()
        if not raw or raw == ".":
            raise Refused("choose where to save the package (a .zip file)")
        path = Path(raw)
        if path.suffix.lower() != ".zip":
            path = path.with_name(path.name + ".zip")
        if path.is_dir():
            raise Refused(f"{path} is a folder: choose a file name ending in .zip")
        authors = split_authors(str(f.authors.value))
        if not authors:
            raise Refused("enter at least one author (names separated by commas)")
        sample, layer = None, f.sample.value
        if layer is not None:
            if not _in_viewer(self.viewer, layer):  # removed while the picker still showed it
                raise Refused(f"the sample image '{layer.name}' is no longer in the viewer: choose another "
                              "layer, or none for a synthetic image")
            data = full_resolution(layer)
            keep = self.model.ndim + isinstance(self.model, ChannelModels)  # spatial axes (+ C, first)
            while data.ndim > keep:  # a stack: its first plane
                data = data[0]
            sample = np.asarray(data)
        return path, {"name": str(f.name.value), "description": str(f.description.value),
                      "authors": authors, "license": str(f.license.value), "sample": sample}

    def export(self, *_args) -> bool:
        """Start the export in a worker thread; False (with a notification) if refused."""
        if self.job is not None and self.job.running:
            return False
        try:
            path, kwargs = self.arguments()
        except (DataError, Refused) as exc:
            notify_error(exc, what="the bioimage.io export")
            return False
        self.export_button.enabled = False
        self.status.value = f"Exporting and testing {path.name}…"
        self.job = Job(_export, self.model, path, kwargs, returned=self._done, errored=self._failed,
                       finished=self._finished)
        if self._track is not None:
            self._track(self.job)
        self.job.start()
        return True

    def _done(self, path: Path) -> None:
        self.status.value = f"Saved {path} (bioimage.io model test passed)."
        info(f"Exported to bioimage.io package {path} (model test passed)")

    def _failed(self, exc: BaseException) -> None:
        self.status.value = notify_error(exc, what="the bioimage.io export")

    def _finished(self) -> None:
        self.export_button.enabled = True
