"""The Train dock widget: pick an image, set the PSF, train in the background."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QWidget
from superqt import QCollapsible

from ..core import (
    DataError,
    DecoNoisingModel,
    TrainConfig,
    Trainer,
    TrainEvent,
    available_devices,
    load_psf,
)
from ._base import DeconoisingWidget, format_seconds
from ._layers import add_result_layers, check_layer, guess_axes, layer_array
from ._plot import LossPlot
from ._registry import REGISTRY, read_model_file
from ._worker import Job, notify_error

__all__ = ["TrainWidget", "TrainControl"]

PSF_GAUSSIAN = "Gaussian (sigma)"
PSF_LAYER = "Measured PSF: image layer"
PSF_FILE = "Measured PSF: TIFF file"
PSF_NONE = "None (plain Noise2Void)"
NEW_MODEL = "(new model)"


class TrainControl:
    """Shared between the GUI and the worker thread: holds the trainer and the stop flag."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.trainer: Trainer | None = None

    def stop(self) -> None:
        self._stop.set()
        trainer = self.trainer
        if trainer is not None:
            trainer.stop()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


def train_job(
    control: TrainControl,
    data: np.ndarray,
    config: TrainConfig,
    axes: str,
    psf: np.ndarray | None,
    resume: DecoNoisingModel | None,
):
    """Worker-thread generator: build the trainer, then forward its events.

    Yields ``("ready", warnings, patch)`` once and then :class:`TrainEvent` objects;
    returns the best model.
    """
    trainer = Trainer(data, config, axes=axes, psf=psf, resume=resume)
    control.trainer = trainer
    if control.stop_requested:
        trainer.stop()
    yield (
        "ready",
        list(trainer.warnings),
        trainer.patch,
        str(trainer.plan.device),
        trainer.plan.precision,
    )
    model = yield from trainer.run()
    return model


def predict_job(
    model: DecoNoisingModel, data: np.ndarray, axes: str, tile_size: int | None, device: str
):
    """Worker-thread generator: tiled prediction, yields (done, total), returns the Prediction."""
    return (yield from model.predict_iter(data, axes, tile_size=tile_size, device=device))


class TrainWidget(DeconoisingWidget):
    """Train a DecoNoising model on an image layer without blocking the viewer."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer)
        self.control: TrainControl | None = None
        self.train_worker: Job | None = None
        self.predict_worker: Job | None = None
        self.model: DecoNoisingModel | None = None
        self.model_name: str | None = None
        self._run: dict[str, Any] = {}
        self._run_counter = 0

        # -- main settings ----------------------------------------------------------
        self.image = ComboBox(
            label="Image",
            choices=self._image_choices,
            tooltip="Noisy image or stack to train on (single channel)",
        )
        self.axes = LineEdit(
            label="Axes",
            tooltip=(
                "Axis letters of the image: YX for one image; "
                "SYX, TYX or ZYX for stacks (trained slice by slice)"
            ),
        )
        self.psf_kind = ComboBox(
            label="PSF", choices=[PSF_GAUSSIAN, PSF_LAYER, PSF_FILE, PSF_NONE], value=PSF_GAUSSIAN
        )
        self.sigma = FloatSpinBox(
            label="PSF sigma (px)",
            value=1.0,
            min=0.0,
            max=50.0,
            step=0.1,
            tooltip="Gaussian PSF standard deviation in pixels: about "
            "0.21 * wavelength / NA / pixel size (see the user guide)",
        )
        self.psf_layer = ComboBox(
            label="PSF layer", choices=self._psf_choices, nullable=True, value=None, visible=False
        )
        self.psf_file = FileEdit(label="PSF file", mode="r", filter="*.tif *.tiff", visible=False)
        self.positivity = FloatSpinBox(
            label="Positivity λ",
            value=1.0,
            min=0.0,
            max=1000.0,
            step=0.1,
            tooltip="Penalty on negative intensities in the deconvolved image; 0 switches it off",
        )
        self.resume = ComboBox(
            label="Start from",
            choices=self._resume_choices,
            value=NEW_MODEL,
            tooltip="Continue training a model from this session or a loaded file",
        )
        self.form = Container(
            widgets=[
                self.image,
                self.axes,
                self.psf_kind,
                self.sigma,
                self.psf_layer,
                self.psf_file,
                self.positivity,
                self.resume,
            ]
        )
        # -- advanced -----------------------------------------------------------------
        d = TrainConfig()
        self.epochs = SpinBox(label="Epochs", value=d.epochs, min=1, max=100_000)
        self.steps_per_epoch = SpinBox(
            label="Steps per epoch", value=d.steps_per_epoch, min=1, max=100_000
        )
        self.batch_size = SpinBox(label="Batch size", value=d.batch_size, min=1, max=4096)
        self.patch_size = SpinBox(label="Patch size", value=d.patch_size, min=8, max=4096, step=8)
        self.micro_batches = SpinBox(
            label="Micro-batches",
            value=d.micro_batches,
            min=1,
            max=4096,
            tooltip="Virtual batch: split each batch into this many "
            "passes (gradient accumulation) to save memory",
        )
        self.lr = LineEdit(label="Learning rate", value=f"{d.lr:g}")
        self.depth = SpinBox(label="U-Net depth", value=d.depth, min=1, max=6)
        self.channels = SpinBox(label="Channels", value=d.channels, min=1, max=1024)
        self.val_fraction = FloatSpinBox(
            label="Validation fraction", value=d.val_fraction, min=0.01, max=0.9, step=0.05
        )
        self.seed = SpinBox(label="Seed", value=d.seed, min=0, max=2**31 - 1)
        self.device = ComboBox(label="Device", choices=["auto", *available_devices()], value="auto")
        self.advanced = Container(
            widgets=[
                self.epochs,
                self.steps_per_epoch,
                self.batch_size,
                self.patch_size,
                self.micro_batches,
                self.lr,
                self.depth,
                self.channels,
                self.val_fraction,
                self.seed,
                self.device,
            ]
        )
        self.advanced_box = QCollapsible("Advanced")
        self.advanced_box.addWidget(self.advanced.native)
        # -- buttons ------------------------------------------------------------------
        self.start_button = PushButton(text="Start training")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.save_button = PushButton(text="Save model…", enabled=False)
        self.load_button = PushButton(text="Load model…")
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.save_button.changed.connect(self._save_dialog)
        self.load_button.changed.connect(self._load_dialog)
        self.plot = LossPlot(self, theme=self._theme())

        for combo in (self.image, self.psf_layer, self.resume):
            self._register_combo(combo)
        self._image_pickers.append(self.image)
        self.image.changed.connect(self._on_image_changed)
        self.psf_kind.changed.connect(self._on_psf_kind)
        REGISTRY.changed.connect(self._on_registry_changed)
        self.viewer.events.theme.connect(self._on_theme)

        lay = self._layout
        lay.addWidget(self.form.native)
        lay.addWidget(self.advanced_box)
        lay.addWidget(_row(self.start_button.native, self.stop_button.native))
        lay.addWidget(self.progress)
        lay.addWidget(self.status.native)
        lay.addWidget(self.plot)
        lay.addWidget(_row(self.save_button.native, self.load_button.native))
        lay.addWidget(self.compare_box.native)
        lay.addStretch(1)
        self._on_image_changed(self.image.value)

    # -- choices -----------------------------------------------------------------------
    def _psf_choices(self, _widget=None):
        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not layer.rgb
        ]

    def _resume_choices(self, _widget=None):
        return [NEW_MODEL, *REGISTRY.names()]

    def _on_registry_changed(self) -> None:
        with contextlib.suppress(RuntimeError):  # widget deleted
            self.resume.reset_choices()

    def _theme(self) -> dict | None:
        try:
            from napari.utils.theme import get_theme

            return get_theme(self.viewer.theme).to_rgb_dict()
        except Exception:  # theme support is cosmetic
            return None

    def _on_theme(self, _event=None) -> None:
        theme = self._theme()
        if theme:
            with contextlib.suppress(RuntimeError):  # widget deleted
                self.plot.apply_theme(theme)

    def _on_image_changed(self, layer) -> None:
        axes = guess_axes(layer)
        if axes:
            self.axes.value = axes

    def _on_psf_kind(self, kind: str) -> None:
        self.sigma.visible = kind == PSF_GAUSSIAN
        self.psf_layer.visible = kind == PSF_LAYER
        self.psf_file.visible = kind == PSF_FILE

    # -- state ----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return any(j is not None and j.running for j in (self.train_worker, self.predict_worker))

    def _update_buttons(self) -> None:
        busy = self.busy
        self.start_button.enabled = not busy
        self.stop_button.enabled = busy
        self.load_button.enabled = not busy
        self.save_button.enabled = self.model is not None

    def config(self) -> TrainConfig:
        """The :class:`TrainConfig` the form describes (raises ConfigError)."""
        from ..core import ConfigError

        kind = self.psf_kind.value
        psf = {
            PSF_GAUSSIAN: "gaussian",
            PSF_LAYER: "measured",
            PSF_FILE: "measured",
            PSF_NONE: "none",
        }[kind]
        try:
            lr = float(self.lr.value)
        except ValueError:
            raise ConfigError(
                f"learning rate {self.lr.value!r} is not a number (e.g. 1e-3)"
            ) from None
        return TrainConfig(
            psf=psf,
            psf_sigma=float(self.sigma.value),
            positivity=float(self.positivity.value),
            epochs=int(self.epochs.value),
            steps_per_epoch=int(self.steps_per_epoch.value),
            batch_size=int(self.batch_size.value),
            micro_batches=int(self.micro_batches.value),
            patch_size=int(self.patch_size.value),
            val_fraction=float(self.val_fraction.value),
            lr=lr,
            depth=int(self.depth.value),
            channels=int(self.channels.value),
            seed=int(self.seed.value),
            device=str(self.device.value),
        )

    def _measured_psf(self) -> np.ndarray | None:
        kind = self.psf_kind.value
        if kind == PSF_LAYER:
            layer = self.psf_layer.value
            if layer is None:
                from ..core import PSFError

                raise PSFError("choose the image layer that holds the measured PSF")
            return layer_array(layer)
        if kind == PSF_FILE:
            path = self.psf_file.value
            if path is None or not str(path) or Path(path).is_dir():
                from ..core import PSFError

                raise PSFError("choose the TIFF file that holds the measured PSF")
            return load_psf(path)
        return None

    # -- training ---------------------------------------------------------------------------
    def start(self, *_args) -> bool:
        """Start training in a worker thread. Returns False (with a notification) if refused."""
        if self.busy:
            show_warning("Training is already running: stop it first (one run at a time).")
            return False
        layer = self.image.value
        try:
            check_layer(layer)
            axes = (self.axes.value or "").strip().upper() or guess_axes(layer)
            if not axes:
                raise DataError("enter the axes of the image (e.g. YX or TYX)")
            config = self.config()
            resume = None
            if self.resume.value not in (None, NEW_MODEL):
                resume = REGISTRY.get(self.resume.value)
            # a resumed model keeps its own PSF
            psf = self._measured_psf() if resume is None else None
        except ValueError as exc:
            notify_error(exc, what="training")
            return False
        if resume is not None and (
            resume.config.depth != config.depth or resume.config.channels != config.channels
        ):
            show_info(
                f"Continuing '{self.resume.value}': its architecture (depth "
                f"{resume.config.depth}, {resume.config.channels} channels) and PSF are kept."
            )

        data = layer_array(layer)
        self._run_counter += 1
        self._run = {
            "layer": layer,
            "axes": axes,
            "data": data,
            "config": config,
            "offset": len(resume.history) if resume is not None else 0,
            "spe": config.steps_per_epoch,
            "t0": time.perf_counter(),
            "resumed": self.resume.value,
            "run_id": f"train-{id(self):x}-{self._run_counter}",
        }
        self.plot.clear()
        if resume is not None:
            self.plot.set_history(resume.history)
        self.progress.setRange(0, config.total_steps)
        self.progress.setValue(0)
        self.status.value = "Preparing data and network…"
        self.control = TrainControl()
        self.train_worker = Job(
            train_job,
            self.control,
            data,
            config,
            axes,
            psf,
            resume,
            yielded=self._on_train_event,
            returned=self._on_trained,
            errored=self._on_train_error,
            finished=self._on_train_finished,
        )
        self._lifetime.track(self.train_worker, self.control)
        self._update_buttons_running()
        self.train_worker.start()
        return True

    def _update_buttons_running(self) -> None:
        self.start_button.enabled = False
        self.stop_button.enabled = True
        self.load_button.enabled = False

    def stop(self, *_args) -> None:
        """Stop training after the current step (the best model so far is kept), or
        cancel the prediction that follows it."""
        if self.train_worker is not None and self.train_worker.running and self.control is not None:
            self.control.stop()
            self.status.value = "Stopping after the current step…"
        elif self.predict_worker is not None and self.predict_worker.running:
            self.predict_worker.quit()
            self.status.value = "Cancelling prediction…"

    def _on_train_event(self, ev: Any) -> None:
        if isinstance(ev, tuple) and ev and ev[0] == "ready":
            _, warnings, patch, device, precision = ev
            for w in warnings:
                show_warning(w)
            self._run["device"] = device
            self.status.value = f"Training on {device} ({precision}), {patch} px patches…"
            return
        if not isinstance(ev, TrainEvent):
            return
        offset = self._run.get("offset", 0)
        spe = self._run.get("spe", 1)
        if ev.kind == "step":
            in_epoch = (ev.step - 1) % spe + 1
            self.plot.add_step(offset + ev.epoch - 1 + in_epoch / spe, ev.train_loss)
        else:
            self.plot.add_epoch(offset + ev.epoch, ev.train_loss, ev.val_loss)
        self.progress.setValue(ev.step)
        val = f" · val {ev.val_loss:.4g}" if ev.val_loss is not None else ""
        self.status.value = (
            f"Epoch {ev.epoch}/{ev.epochs} · step {ev.step}/{ev.total_steps} · "
            f"loss {ev.train_loss:.4g}{val} · {format_seconds(ev.eta_s)} left"
        )
        self._run["last_event"] = ev

    def _on_trained(self, model: DecoNoisingModel) -> None:
        run = self._run
        stopped = self.control is not None and self.control.stop_requested
        self.model = model
        layer = run["layer"]
        self.model_name = REGISTRY.add(model, f"{layer.name} model")
        self.save_button.enabled = True
        self.plot.redraw()
        done = "stopped early" if stopped else "finished"
        secs = time.perf_counter() - run["t0"]
        self.status.value = (
            f"Training {done} after {format_seconds(secs)} ({len(model.history)} "
            f"epochs). Model '{self.model_name}'. Predicting…"
        )
        self.progress.setRange(0, 0)  # busy until the first tile is done
        self.predict_worker = Job(
            predict_job,
            model,
            run["data"],
            run["axes"],
            None,
            run["config"].device,
            yielded=self._on_predict_progress,
            returned=self._on_predicted,
            errored=self._on_predict_error,
            cancelled=self._on_predict_cancelled,
            finished=self._on_predict_finished,
        )
        self._lifetime.track(self.predict_worker)
        self.predict_worker.start()

    def _on_train_error(self, exc: BaseException) -> None:
        self.status.value = notify_error(exc, what="training")

    def _on_train_finished(self) -> None:
        self.control = None
        self._update_buttons()

    # -- prediction of the training layer -----------------------------------------------------
    def _on_predict_progress(self, value) -> None:
        done, total = value
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _on_predicted(self, prediction) -> None:
        run = self._run
        den, dec = add_result_layers(
            self.viewer,
            run["layer"],
            prediction.denoised,
            prediction.deconvolved,
            self.model,
            self.model_name,
            run["axes"],
            run_id=run["run_id"],
            step="trained on this layer",
        )
        self.last_results = (run["layer"], den, dec)
        self.status.value = (
            self.status.value.replace("Predicting…", "") + f"Added '{den.name}' and '{dec.name}'."
        )
        if self.truth_combo.value is not None:
            self.update_psnr()

    def _on_predict_error(self, exc: BaseException) -> None:
        self.status.value = notify_error(exc, what="prediction")

    def _on_predict_cancelled(self) -> None:
        self.status.value = (
            "Prediction cancelled; the model is kept (save it or use the Apply widget)."
        )
        show_info("Prediction cancelled.")

    def _on_predict_finished(self) -> None:
        self._run.pop("data", None)  # free the training copy
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self._update_buttons()

    # -- files ----------------------------------------------------------------------------------
    def save_model(self, path: str | Path) -> bool:
        """Save the current model; notifies and returns False on failure."""
        if self.model is None:
            show_error("No model to save yet: train one first.")
            return False
        try:
            self.model.save(path)
        except (OSError, RuntimeError, ValueError) as exc:
            notify_error(exc, what="saving the model")
            return False
        if self.model_name in REGISTRY:
            REGISTRY.entry(self.model_name).path = str(path)
        show_info(f"Model saved to {path}")
        return True

    def load_model(self, path: str | Path) -> DecoNoisingModel | None:
        """Load a model file to continue training it (it also appears in the Apply widget)."""
        model = read_model_file(path)
        if model is None:
            return None
        name = REGISTRY.add(model, Path(path).stem, path=path)
        self.model, self.model_name = model, name
        self.resume.reset_choices()
        self.resume.value = name
        self.plot.set_history(model.history)
        self.plot.redraw()
        self._update_buttons()
        self.status.value = f"Loaded '{name}': {model.summary()}. Start to continue training it."
        return model

    def _save_dialog(self, *_args) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save DecoNoising model", f"{self.model_name or 'model'}.pt", "Model files (*.pt)"
        )
        if path:
            self.save_model(path)

    def _load_dialog(self, *_args) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load DecoNoising model", "", "Model files (*.pt)"
        )
        if path:
            self.load_model(path)

    def _after_shutdown(self) -> None:
        self.control = None


def _row(*widgets: QWidget) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x)
    return w
