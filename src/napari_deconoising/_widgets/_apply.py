"""The Apply dock widget: run a trained model on any image layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, LineEdit, PushButton, SpinBox
from qtpy.QtWidgets import QFileDialog

from ..core import ChannelModels, DataError, DecoNoisingModel
from ..core.channels import split_channels
from ..core.data import check_axes
from ._base import DeconoisingWidget, button_row
from ._form import Field, Form, axes_field, device_field, image_field
from ._large import is_large, large_outputs, sample_region
from ._layers import full_resolution, layer_array, layer_shape
from ._notify import Refused, notify_error, warning
from ._prediction import PredictRequest
from ._registry import REGISTRY, read_model_file

__all__ = ["ApplyWidget", "apply_fields", "intensity_mismatch"]


def intensity_mismatch(model: DecoNoisingModel, data: np.ndarray) -> str | None:
    """A warning if ``data``'s intensities look unlike the model's training data."""
    flat = np.asarray(data).ravel()
    sample = flat[:: max(1, flat.size // 200_000)].astype(np.float64)
    mean, std = float(sample.mean()), float(sample.std())
    if model.std <= 0 or std == 0:  # a constant image is refused with its own message
        return None
    shift = abs(mean - model.mean) / model.std
    ratio = std / model.std if model.std else np.inf
    if shift > 5 or ratio > 10 or ratio < 0.1:
        return (
            f"This image's intensities (mean {mean:.4g}, std {std:.4g}) differ strongly from the "
            f"model's training data (mean {model.mean:.4g}, std {model.std:.4g}); results may be "
            "poor. Was the model trained on this kind of image (same camera, gain, bit depth)?"
        )
    return None


def _check_channels(model: ChannelModels, name: str, layer: str, axes: str, shape: tuple[int, ...]) -> None:
    """Refuse a layer whose C axis does not match a model per channel."""
    n = len(model.models)
    if "C" not in axes or len(axes) != len(shape):
        # Suggest C only where the layer has an axis of n entries; else it is not a layer for this model.
        where = [k for k, size in enumerate(shape[:-2]) if size == n]
        hint = (f"give layer '{layer}' axes with C for its axis of {n} (e.g. "
                f"{''.join('C' if k == where[0] else a for k, a in enumerate(_spare(len(shape))))})" if where
                else f"layer '{layer}' {shape} has no axis of {n} channels: choose a layer with {n} channels")
        raise DataError(f"the model ('{name}') has one network per channel ({n}); {hint}")
    if shape[axes.index("C")] != n:
        raise DataError(f"layer '{layer}' has {shape[axes.index('C')]} channel(s) (axis C) but the model "
                        f"('{name}') has {n}")


def _spare(nd: int) -> str:
    """Axis letters for an ``nd``-dimensional layer, Y and X last (the C goes in place of one)."""
    return "TZYX"[-nd:] if nd <= 4 else "S" * (nd - 4) + "TZYX"


def _model_choices(_viewer: Any) -> list[str]:
    return list(reversed(REGISTRY.names()))  # newest first


def apply_fields() -> tuple[Field, ...]:
    """The Apply form, top to bottom."""
    return (
        Field(
            "model",
            ComboBox,
            "Model",
            {"nullable": True, "tooltip": "A model trained in this session or loaded from a file"},
            choices=_model_choices,
        ),
        Field("model_info", LineEdit, "", {"value": "", "enabled": False}),
        image_field("Image or stack to restore (single channel)"),
        axes_field(),
        Field(
            "tile_size",
            SpinBox,
            "Tile size",
            {
                "value": 0,
                "min": 0,
                "max": 16384,
                "step": 32,
                "tooltip": "Side of the square tiles the image is processed in; "
                "0 = automatic (from free memory). Results do not depend on it.",
            },
        ),
        device_field(),
        Field(
            "store",
            LineEdit,
            "Large-image folder",
            {
                "value": "",
                "tooltip": "Large or dask/zarr-backed images are predicted tile by tile into OME-Zarr "
                "images in this folder (empty: a new temporary folder), shown as they fill in.",
            },
        ),
    )


class ApplyWidget(DeconoisingWidget):
    """Denoise and deconvolve an image layer with a trained model."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, Form(apply_fields(), napari_viewer))
        self._run_counter = 0
        self.load_button = PushButton(text="Load model file…")
        self.export_button = PushButton(text="Export to bioimage.io…")
        self.export_button.tooltip = "Save the selected model as a bioimage.io Model Zoo package (.zip)"
        self.export_dialog = None
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.load_button.changed.connect(self._load_dialog)
        self.export_button.changed.connect(self.open_export_dialog)
        self.form.model.changed.connect(self._on_model_changed)
        REGISTRY.changed.connect(self._on_registry_changed)

        lay = self._layout
        lay.addWidget(self.form.sections["main"].native)
        lay.addWidget(button_row(self.load_button.native, self.export_button.native))
        lay.addWidget(button_row(self.run_button.native, self.cancel_button.native))
        lay.addWidget(self.progress)
        lay.addWidget(self.status.native)
        lay.addWidget(self.compare_box.native)
        lay.addStretch(1)
        self._known_models: set[str] = set()
        self._on_registry_changed()
        self._on_model_changed(self.form.model.value)

    def _on_registry_changed(self) -> None:
        """Offer the session's models; a newly added model becomes the selected one."""
        try:
            names = REGISTRY.names()
            new = [n for n in names if n not in self._known_models]
            self._known_models = set(names)
            self.form.model.reset_choices()
            if new:
                self.form.model.value = new[-1]
        except RuntimeError:  # widget deleted
            pass

    def _on_model_changed(self, name) -> None:
        box = self.form.model_info
        if name and name in REGISTRY:
            box.value = REGISTRY.get(name).summary()
            box.tooltip = box.value
        else:
            box.value = "no model: train one or load a file"

    @property
    def busy(self) -> bool:
        return self.prediction.running

    def _update_buttons(self) -> None:
        self.run_button.enabled = not self.busy
        self.cancel_button.enabled = self.busy

    def select_model(self, model: DecoNoisingModel, name: str | None = None) -> str:
        """Make ``model`` the selected one (registering it if needed)."""
        existing = REGISTRY.name_of(model)
        name = existing or REGISTRY.add(model, name or "model")
        self.form.model.reset_choices()
        self.form.model.value = name
        return name

    def load_model(self, path: str | Path) -> DecoNoisingModel | None:
        """Load a model file into the session and select it."""
        model = read_model_file(path)
        if model is None:
            return None
        self.select_model(model, Path(path).stem)
        REGISTRY.entry(self.form.model.value).path = str(path)
        return model

    def _load_dialog(self, *_args) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load DecoNoising model", "",
            "Model files (*.pt *.zip rdf.yaml *.rdf.yaml);;bioimage.io packages (*.zip rdf.yaml);;All files (*)"
        )
        if path:
            self.load_model(path)

    def open_export_dialog(self, *_args):
        """Show the bioimage.io export form for the selected model (None if no model)."""
        from ._export import ExportDialog

        name = self.form.model.value
        if not name or name not in REGISTRY:
            notify_error(Refused("no model selected: train one or load a model file first"),
                         what="the bioimage.io export")
            return None
        self.export_dialog = ExportDialog(self.viewer, REGISTRY.get(name), name, track=self.track, parent=self)
        self.export_dialog.show()
        return self.export_dialog

    def run(self, *_args) -> bool:
        """Start the prediction in a worker thread; False (with a notification) if refused."""
        if self.busy:
            warning("A prediction is already running: cancel it first.")
            return False
        name = self.form.model.value
        try:
            if not name or name not in REGISTRY:
                raise Refused("no model selected: train one (Train widget) or load a model file")
            model = REGISTRY.get(name)
            layer, axes = self.form.image_and_axes()
            shape = layer_shape(layer)
            per_channel = isinstance(model, ChannelModels)
            if per_channel:
                _check_channels(model, name, layer.name, axes, shape)
            elif "C" in axes and len(axes) == len(shape) and shape[axes.index("C")] > 1:
                raise DataError(
                    f"the model ('{name}') restores one channel; layer '{layer.name}' has "
                    f"{shape[axes.index('C')]} channels (axis C): split them first"
                )
            if len(axes) != len(shape):
                raise DataError(
                    f"axes {axes!r} has {len(axes)} letters but layer '{layer.name}' has "
                    f"{len(shape)} dimensions {shape}"
                )
            check_axes(axes, tuple(shape))  # refused here, not by the worker after it started
            if model.ndim == 3 and "Z" not in axes:
                raise DataError(f"the model ('{name}') is a 3D model and layer '{layer.name}' has no Z axis "
                                f"(axes {axes}): choose a Z-stack, or give its Z in Axes")
        except ValueError as exc:
            self.status.value = notify_error(exc, what="prediction")
            return False
        large, plan = None, None
        try:
            if per_channel and is_large(layer):
                raise DataError("a model with one network per channel runs on layers that fit in memory; "
                                "this layer is too large (split the channels and use one model per channel)")
            if is_large(layer):  # never copied: tiles are read as they are predicted
                data = None
                large, plan = large_outputs(model, layer, axes, int(self.form.tile_size.value) or None,
                                            str(self.form.device.value), self.form.store.value.strip() or None)
                pairs = [(model, sample_region(full_resolution(layer), plan.axes))]
            else:
                data = layer_array(layer)
                pairs = zip(model.models, split_channels(data, axes)[0]) if per_channel else [(model, data)]
        except (ValueError, OSError) as exc:
            self.status.value = notify_error(exc, what="prediction")
            return False
        for k, (one, channel) in enumerate(pairs):
            mismatch = intensity_mismatch(one, channel)
            if mismatch:
                warning(f"Channel {k + 1}: {mismatch}" if per_channel else mismatch)
        self._run_counter += 1
        self.prediction.start(
            PredictRequest(
                layer=layer,
                data=data,
                large=large,
                plan=plan,
                model=model,
                model_name=name,
                axes=axes,
                run_id=f"apply-{id(self):x}-{self._run_counter}",
                step="applied",
                tile_size=int(self.form.tile_size.value) or None,
                device=str(self.form.device.value),
            )
        )
        self._update_buttons()
        return True

    def cancel(self, *_args) -> None:
        if self.prediction.cancel():
            self.status.value = "Cancelling…"
