"""The Apply dock widget: run a trained model on any image layer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, LineEdit, PushButton, SpinBox
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QFileDialog

from ..core import DataError, DecoNoisingModel, available_devices
from ._base import DeconoisingWidget, format_seconds
from ._layers import add_result_layers, check_layer, guess_axes, layer_array
from ._registry import REGISTRY, read_model_file
from ._train import _row, predict_job
from ._worker import Job, notify_error

__all__ = ["ApplyWidget", "intensity_mismatch"]


def intensity_mismatch(model: DecoNoisingModel, data: np.ndarray) -> str | None:
    """A warning if ``data``'s intensities look unlike the model's training data."""
    flat = np.asarray(data).ravel()
    sample = flat[:: max(1, flat.size // 200_000)].astype(np.float64)
    mean, std = float(sample.mean()), float(sample.std())
    if model.std <= 0:
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


class ApplyWidget(DeconoisingWidget):
    """Denoise and deconvolve an image layer with a trained model."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer)
        self.worker: Job | None = None
        self._run: dict = {}
        self._run_counter = 0
        self.model_combo = ComboBox(
            label="Model",
            choices=self._model_choices,
            nullable=True,
            tooltip="A model trained in this session or loaded from a file",
        )
        self.load_button = PushButton(text="Load model file…")
        self.model_info = LineEdit(label="", value="", enabled=False)
        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.axes = LineEdit(label="Axes")
        self.tile_size = SpinBox(
            label="Tile size",
            value=0,
            min=0,
            max=16384,
            step=32,
            tooltip="Side of the square tiles the image is processed in; "
            "0 = automatic (from free memory). Results do not depend on it.",
        )
        self.device = ComboBox(label="Device", choices=["auto", *available_devices()], value="auto")
        self.form = Container(
            widgets=[
                self.model_combo,
                self.model_info,
                self.image,
                self.axes,
                self.tile_size,
                self.device,
            ]
        )
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.load_button.changed.connect(self._load_dialog)
        self.model_combo.changed.connect(self._on_model_changed)
        self.image.changed.connect(self._on_image_changed)
        for combo in (self.model_combo, self.image):
            self._register_combo(combo)
        self._image_pickers.append(self.image)
        REGISTRY.changed.connect(self._on_registry_changed)

        lay = self._layout
        lay.addWidget(self.form.native)
        lay.addWidget(self.load_button.native)
        lay.addWidget(_row(self.run_button.native, self.cancel_button.native))
        lay.addWidget(self.progress)
        lay.addWidget(self.status.native)
        lay.addWidget(self.compare_box.native)
        lay.addStretch(1)
        self._on_image_changed(self.image.value)
        self._known_models: set[str] = set()
        self._on_registry_changed()
        self._on_model_changed(self.model_combo.value)

    def _model_choices(self, _widget=None) -> list[str]:
        return list(reversed(REGISTRY.names()))  # newest first

    def _on_registry_changed(self) -> None:
        """Offer the session's models; a newly added model becomes the selected one."""
        try:
            names = REGISTRY.names()
            new = [n for n in names if n not in self._known_models]
            self._known_models = set(names)
            self.model_combo.reset_choices()
            if new:
                self.model_combo.value = new[-1]
        except RuntimeError:  # widget deleted
            pass

    def _on_model_changed(self, name) -> None:
        if name and name in REGISTRY:
            self.model_info.value = REGISTRY.get(name).summary()
            self.model_info.tooltip = self.model_info.value
        else:
            self.model_info.value = "no model: train one or load a file"

    def _on_image_changed(self, layer) -> None:
        axes = guess_axes(layer)
        if axes:
            self.axes.value = axes

    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.running

    def select_model(self, model: DecoNoisingModel, name: str | None = None) -> str:
        """Make ``model`` the selected one (registering it if needed)."""
        existing = REGISTRY.name_of(model)
        name = existing or REGISTRY.add(model, name or "model")
        self.model_combo.reset_choices()
        self.model_combo.value = name
        return name

    def load_model(self, path: str | Path) -> DecoNoisingModel | None:
        """Load a model file into the session and select it."""
        model = read_model_file(path)
        if model is None:
            return None
        self.select_model(model, Path(path).stem)
        REGISTRY.entry(self.model_combo.value).path = str(path)
        return model

    def _load_dialog(self, *_args) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load DecoNoising model", "", "Model files (*.pt)"
        )
        if path:
            self.load_model(path)

    def run(self, *_args) -> bool:
        """Start the prediction in a worker thread; False (with a notification) if refused."""
        if self.busy:
            show_warning("A prediction is already running: cancel it first.")
            return False
        name = self.model_combo.value
        layer = self.image.value
        try:
            if not name or name not in REGISTRY:
                raise DataError("no model selected: train one (Train widget) or load a model file")
            model = REGISTRY.get(name)
            check_layer(layer)
            axes = (self.axes.value or "").strip().upper() or guess_axes(layer)
            if not axes:
                raise DataError("enter the axes of the image (e.g. YX or TYX)")
            if "C" in axes and layer.data.shape[axes.index("C")] > 1:
                raise DataError(
                    f"the model ('{name}') restores one channel; layer '{layer.name}' has "
                    f"{layer.data.shape[axes.index('C')]} channels (axis C): split them first"
                )
            if len(axes) != layer.ndim:
                raise DataError(
                    f"axes {axes!r} has {len(axes)} letters but layer '{layer.name}' has "
                    f"{layer.ndim} dimensions {tuple(layer.data.shape)}"
                )
        except ValueError as exc:
            notify_error(exc, what="prediction")
            return False
        data = layer_array(layer)
        warning = intensity_mismatch(model, data)
        if warning:
            show_warning(warning)
        tile = int(self.tile_size.value) or None
        self._run_counter += 1
        self._run = {
            "layer": layer,
            "model": model,
            "name": name,
            "axes": axes,
            "t0": time.perf_counter(),
            "run_id": f"apply-{id(self):x}-{self._run_counter}",
        }
        self.progress.setRange(0, 0)
        self.status.value = f"Restoring '{layer.name}' with '{name}'…"
        self.worker = Job(
            predict_job,
            model,
            data,
            axes,
            tile,
            str(self.device.value),
            yielded=self._on_progress,
            returned=self._on_predicted,
            errored=self._on_error,
            cancelled=self._on_cancelled,
            finished=self._on_finished,
        )
        self._lifetime.track(self.worker)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.worker.start()
        return True

    def cancel(self, *_args) -> None:
        if self.busy:
            self.worker.quit()
            self.status.value = "Cancelling…"

    def _on_progress(self, value) -> None:
        done, total = value
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        el = time.perf_counter() - self._run["t0"]
        left = el / done * (total - done) if done else 0
        self.status.value = f"Tile {done}/{total} · {format_seconds(left)} left"

    def _on_predicted(self, prediction) -> None:
        run = self._run
        den, dec = add_result_layers(
            self.viewer,
            run["layer"],
            prediction.denoised,
            prediction.deconvolved,
            run["model"],
            run["name"],
            run["axes"],
            run_id=run["run_id"],
            step="applied",
        )
        self.last_results = (run["layer"], den, dec)
        secs = time.perf_counter() - run["t0"]
        self.status.value = f"Done in {format_seconds(secs)}: added '{den.name}' and '{dec.name}'."
        if self.truth_combo.value is not None:
            self.update_psnr()

    def _on_error(self, exc: BaseException) -> None:
        self.status.value = notify_error(exc, what="prediction")

    def _on_cancelled(self) -> None:
        self.status.value = "Cancelled; no layers added."
        show_info("Prediction cancelled.")

    def _on_finished(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if self.last_results else 0)
        self.run_button.enabled = True
        self.cancel_button.enabled = False
