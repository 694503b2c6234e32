"""The Train dock widget: pick an image, set the PSF, train in the background."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from magicgui.widgets import PushButton
from qtpy.QtWidgets import QFileDialog
from superqt import QCollapsible

from ..core import ChannelModels, DecoNoisingModel, TrainConfig, TrainEvent
from ..core.formatting import format_seconds
from ._base import DeconoisingWidget, button_row
from ._large import is_large, large_outputs
from ._notify import error, info, notify_error, warning
from ._plot import LossPlot
from ._prediction import PredictRequest
from ._registry import REGISTRY, read_model_file
from ._train_channels import channel_prefix, stopped_channels_text, trained_size
from ._train_form import TrainForm
from ._train_job import ChannelStart, NoModel, Ready, TrainControl, TrainRun
from ._train_start import continuing_text, plan_run
from ._worker import Job

__all__ = ["TrainWidget"]


class TrainWidget(DeconoisingWidget):
    """Train a DecoNoising model on an image layer without blocking the viewer."""

    form: TrainForm

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, TrainForm(napari_viewer))
        self.control: TrainControl | None = None
        self.train_worker: Job | None = None
        self.model: DecoNoisingModel | ChannelModels | None = None
        self.model_name: str | None = None
        self.train_run: TrainRun | None = None
        self._run_counter = 0

        self.advanced_box = QCollapsible("Advanced")
        self.advanced_box.addWidget(self.form.sections["advanced"].native)
        self.start_button = PushButton(text="Start training")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.save_button = PushButton(text="Save model…", enabled=False)
        self.load_button = PushButton(text="Load model…")
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.save_button.changed.connect(self._save_dialog)
        self.load_button.changed.connect(self._load_dialog)
        self.plot = LossPlot(self, viewer=napari_viewer)
        REGISTRY.changed.connect(self._on_registry_changed)
        self._update_save()

        lay = self._layout
        lay.addWidget(self.form.sections["main"].native)
        lay.addWidget(self.advanced_box)
        lay.addWidget(button_row(self.start_button.native, self.stop_button.native))
        lay.addWidget(self.progress)
        lay.addWidget(self.status.native)
        lay.addWidget(self.plot)
        lay.addWidget(button_row(self.save_button.native, self.load_button.native))
        lay.addWidget(self.compare_box.native)
        lay.addStretch(1)

    def _on_registry_changed(self) -> None:
        with contextlib.suppress(RuntimeError):  # widget deleted
            self.form.resume.reset_choices()

    # -- state ----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        training = self.train_worker is not None and self.train_worker.running
        return training or self.prediction.running

    def _update_buttons(self) -> None:
        busy = self.busy
        self.start_button.enabled = not busy
        self.stop_button.enabled = busy
        self.load_button.enabled = not busy
        self._update_save()

    def _update_save(self) -> None:
        # A refused or failed run leaves the previous model in place: Save names the model it writes.
        self.save_button.enabled = self.model is not None
        self.save_button.tooltip = ("Train or load a model first" if self.model is None else
                                    f"Save the model '{self.model_name}' ({self.model.summary().splitlines()[0]})")

    def config(self) -> TrainConfig:
        """The :class:`TrainConfig` the form describes (raises ConfigError)."""
        return self.form.config()

    # -- training ---------------------------------------------------------------------------
    def start(self, *_args) -> bool:
        """Start training in a worker thread. Returns False (with a notification) if refused."""
        if self.busy:
            warning("Training is already running: stop it first (one run at a time).")
            return False
        control = TrainControl()
        try:
            plan = plan_run(self.form, control)
        except ValueError as exc:
            self._refused(exc)
            return False
        note = continuing_text(plan)
        if note is not None:
            info(note)
        for text in plan.warnings:
            warning(text)
        self._run_counter += 1
        channels, config = plan.channels, plan.config
        self.train_run = TrainRun(
            layer=plan.layer,
            axes=plan.axes,
            data=plan.data,
            config=config,
            run_id=f"train-{id(self):x}-{self._run_counter}",
            epoch_offset=plan.epochs_before,
            resumed=plan.resumed,
            channel_layers=None if channels is None else channels.layers,
        )
        self.plot.clear()
        # a single model's curve goes on from its history; with a model per channel each channel's
        # curve (its earlier epochs, then the new ones) follows the previous channel's
        if isinstance(plan.resume, DecoNoisingModel):
            self.plot.set_history(plan.resume.history)
        self.progress.setRange(0, config.total_steps * (1 if channels is None else channels.count))
        self.progress.setValue(0)
        self.status.value = "Preparing data and network…"
        self.control = control
        self.train_worker = Job(
            *plan.job,
            yielded=self._on_train_message,
            returned=self._on_trained,
            errored=self._on_train_error,
            finished=self._on_train_finished,
        )
        self.track(self.train_worker, self.control)
        self.start_button.enabled = False
        self.stop_button.enabled = True
        self.load_button.enabled = False
        self.train_worker.start()
        return True

    def stop(self, *_args) -> None:
        """Stop training after the current step (the best model so far is kept), or
        cancel the prediction that follows it."""
        if self.train_worker is not None and self.train_worker.running and self.control is not None:
            self.control.stop()
            self.status.value = "Stopping after the current step…"
        elif self.prediction.cancel():
            self.status.value = "Cancelling prediction…"

    def _on_train_message(self, message: ChannelStart | Ready | TrainEvent | dict) -> None:
        run = self.train_run
        if isinstance(message, ChannelStart):
            run.channel = message
            self.plot.add_history(message.history, offset=self.plot.end)  # a continued model's epochs
            return
        prefix = channel_prefix(run.channel)
        if isinstance(message, dict):  # the PSF sigma learned with the network
            (info if message["clear"] else warning)(prefix + message["message"])
            self.status.value = prefix + message["message"]
            if run.channel is None:
                self.plot.clear()  # the full training with that sigma follows
            return
        if isinstance(message, Ready):
            for text in message.warnings:
                warning(prefix + text)
            if run.channel is not None:  # each channel's (or second run's) curve follows the previous one
                run.epoch_offset = self.plot.end
            run.device = message.device
            self.status.value = prefix + (
                f"Training on {message.device} in {message.precision} ({message.reason}), "
                f"{message.patch} px patches…"
            )
            # The status line moves on to the epochs; the choice stays in the tooltip.
            self.status.tooltip = f"Training: {message.device} {message.precision} ({message.reason})"
            return
        ev = message
        if ev.kind == "step":
            self.plot.add_step(run.plot_x(ev), ev.train_loss)
        else:
            self.plot.add_epoch(run.epoch_offset + ev.epoch, ev.train_loss, ev.val_loss)
        before = 0 if run.channel is None else run.channel.index * run.config.total_steps
        self.progress.setValue(before + ev.step)
        val = f" · val {ev.val_loss:.4g}" if ev.val_loss is not None else ""
        self.status.value = prefix + (
            f"Epoch {ev.epoch}/{ev.epochs} · step {ev.step}/{ev.total_steps} · "
            f"loss {ev.train_loss:.4g}{val} · {format_seconds(ev.eta_s)} left"
        )
        run.last_event = ev

    def _on_trained(self, model: DecoNoisingModel | ChannelModels | NoModel | None) -> None:
        run = self.train_run
        self.plot.redraw()
        if model is None or isinstance(model, NoModel):  # stopped with nothing worth keeping
            self.status.value = (stopped_channels_text(run.channel) if model is None else
                                 f"Training {model.reason}: no model was kept. Start again to train one.")
            warning(self.status.value)
            return
        stopped = self.control is not None and self.control.stop_requested
        self.model = model
        self.model_name = REGISTRY.add(model, f"{run.layer.name} model")
        self._update_save()
        done = "stopped early" if stopped else "finished"
        secs = time.perf_counter() - run.t0
        prefix = f"Training {done} after {format_seconds(secs)} ({trained_size(model)}). Model '{self.model_name}'. "
        for k, one in enumerate(getattr(model, "models", [model])):
            if one.psf_estimate is not None:
                label = f"Channel {k + 1}: " if isinstance(model, ChannelModels) else ""
                prefix += f"{label}{one.psf_estimate['message']}. "
        data, run.data = run.data, None  # the prediction owns the copy from here on
        large = plan = None
        if is_large(run.layer):  # tiles into OME-Zarr in a temporary folder, shown as they finish
            try:
                large, plan = large_outputs(model, run.layer, run.axes, None, run.config.device, None)
            except (ValueError, OSError) as exc:
                self.status.value = prefix + notify_error(exc, what="prediction")
                return
            data = None
        separate = run.channel_layers if len(run.channel_layers or ()) > 1 else None  # a result pair each
        self.prediction.start(PredictRequest(
            layer=run.layer, data=data, large=large, plan=plan, model=model, model_name=self.model_name,
            axes=run.axes, run_id=run.run_id, step="trained on this layer", channel_layers=separate,
            device=run.config.device, status_prefix=prefix, tooltip_prefix=f"{self.status.tooltip}\n",
            cancelled_text="Prediction cancelled; the model is kept (save it or use the Apply widget).",
        ))

    def _on_train_error(self, exc: BaseException) -> None:
        self._refused(exc)

    def _refused(self, exc: BaseException) -> None:
        """Say why training was refused or failed, and which model Save still writes."""
        text = notify_error(exc, what="training")
        if self.model is not None:
            text += f" The model '{self.model_name}' is unchanged: Save model… writes it."
        self.status.value = text

    def _on_train_finished(self) -> None:
        self.control = None
        if self.train_run is not None:
            self.train_run.data = None  # training failed or was refused: free the copy
        self._update_buttons()

    # -- files ----------------------------------------------------------------------------------
    def save_model(self, path: str | Path) -> bool:
        """Save the current model; notifies and returns False on failure."""
        if self.model is None:
            error("No model to save yet: train one first.")
            return False
        try:
            self.model.save(path)
        except (OSError, RuntimeError, ValueError) as exc:
            notify_error(exc, what="saving the model")
            return False
        if self.model_name in REGISTRY:
            REGISTRY.entry(self.model_name).path = str(path)
        info(f"Model saved to {path}")
        return True

    def load_model(self, path: str | Path) -> DecoNoisingModel | ChannelModels | None:
        """Load a model file to continue training it (it also appears in the Apply widget)."""
        model = read_model_file(path)
        if model is None:
            return None
        name = REGISTRY.add(model, Path(path).stem, path=path)
        self.model, self.model_name = model, name
        self.form.resume.reset_choices()
        self.form.resume.value = name
        if isinstance(model, ChannelModels):  # each channel's curve follows the previous one's, as in training
            self.plot.clear()
            for one in model.models:
                self.plot.add_history(one.history, offset=self.plot.end)
            where = f"an image with {len(model.models)} channels"
        else:
            self.plot.set_history(model.history)
            where = "the image"
        self.plot.redraw()
        self._update_buttons()
        self.status.value = f"Loaded '{name}': {model.summary()}. Start to continue training it on {where}."
        return model

    def _save_dialog(self, *_args) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, f"Save DecoNoising model '{self.model_name}'", f"{self.model_name or 'model'}.pt",
            "Model files (*.pt)"
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
