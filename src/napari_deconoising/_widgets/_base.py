"""What the train and apply widgets share: layer pickers, compare section, closing."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_info
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from ._compare import compare_psnr, is_comparing, toggle_compare
from ._worker import Job

__all__ = ["DeconoisingWidget", "format_seconds"]


def format_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class _TextLabel(QLabel):
    """A QLabel with a ``value`` property like magicgui's Label."""

    @property
    def value(self) -> str:
        return self.text()

    @value.setter
    def value(self, text: str) -> None:
        self.setText(text)
        self.updateGeometry()


class _Lifetime:
    """Holds the running jobs, so closing can stop them without touching the widget."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Job, Any]] = []  # (job, controller with .stop() or None)

    def track(self, job: Job, controller: Any = None) -> None:
        self.jobs = [(j, c) for j, c in self.jobs if j.running]
        self.jobs.append((job, controller))

    def shutdown(self, wait_s: float = 60.0) -> None:
        for job, ctl in self.jobs:
            if ctl is not None:
                ctl.stop()
            job.detach()
        for job, _ in self.jobs:
            job.wait(wait_s)
        self.jobs.clear()


class _CloseWatcher(QObject):
    """Stops the jobs when the napari window that holds the widget closes."""

    def __init__(self, lifetime: _Lifetime, parent: QObject) -> None:
        super().__init__(parent)
        self._lifetime = lifetime

    def eventFilter(self, obj, event):  # noqa: N802 (Qt API)
        if event.type() == QEvent.Type.Close:
            self._lifetime.shutdown()
        return False


class DeconoisingWidget(QWidget):
    """Base dock widget: a viewer, a magicgui form, progress, and the compare section."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._lifetime = _Lifetime()
        lifetime = self._lifetime
        # The lambda holds the lifetime object, not the widget.
        self.destroyed.connect(lambda *_: lifetime.shutdown())
        self._watched_window = None
        self.last_results: tuple[Layer | None, Layer | None, Layer | None] | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(4, 4, 4, 4)
        self._combos: list[ComboBox] = []
        self._image_pickers: list[ComboBox] = []
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        # compare section
        self.truth_combo = ComboBox(
            label="Ground truth",
            choices=self._truth_choices,
            nullable=True,
            value=None,
            tooltip="Optional noise-free image: PSNR of each result against it",
        )
        self.compare_button = PushButton(text="Compare side by side")
        self.compare_button.tooltip = (
            "Show raw, denoised and deconvolved next to each other "
            "(grid mode); click again to go back"
        )
        self.compare_button.changed.connect(self.toggle_compare)
        # a plain QLabel (not in the form: a wrapped label there does not grow)
        self.psnr_label = _TextLabel()
        self.compare_box = Container(widgets=[self.truth_combo, self.compare_button])
        self.compare_box.native.layout().addWidget(self.psnr_label)
        self._register_combo(self.truth_combo)
        layers = self.viewer.layers
        layers.events.inserted.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layers_changed)
        layers.events.moved.connect(self._on_layers_changed)
        for layer in layers:
            layer.events.name.connect(self._on_layers_changed)

    # -- layer pickers -------------------------------------------------------------
    def _image_choices(self, _widget=None) -> list[tuple[str, Layer]]:
        """Image layers, and labels layers (refused with a message if chosen)."""
        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, (Image, Labels))
        ]

    def _truth_choices(self, _widget=None) -> list[tuple[str, Layer]]:
        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not layer.rgb
        ]

    def _register_combo(self, combo: ComboBox) -> None:
        self._combos.append(combo)

    def _on_layers_changed(self, event=None) -> None:
        inserted = None
        if event is not None and getattr(event, "type", None) == "inserted":
            inserted = event.value
            inserted.events.name.connect(self._on_layers_changed)
        for combo in self._combos:
            try:
                combo.reset_choices()
            except RuntimeError:  # widget already deleted
                return
        if inserted is not None:
            self._follow_new_layer(inserted)

    def _follow_new_layer(self, layer: Layer) -> None:
        """Pick a newly added visible raw image unless the user picked a visible one."""
        from ._layers import PROVENANCE_KEY

        if not isinstance(layer, Image) or layer.rgb or not layer.visible:
            return
        if PROVENANCE_KEY in (layer.metadata or {}):
            return  # our own results
        for combo in self._image_pickers:
            current = combo.value
            if current is None or not current.visible:
                combo.value = layer

    # -- compare ---------------------------------------------------------------------
    def toggle_compare(self, *_args) -> bool:
        """Side by side view of the latest results, or back to the previous layout."""
        if not is_comparing(self.viewer) and self.last_results is None:
            show_info("Nothing to compare yet: run a model first.")
            return False
        shown = toggle_compare(self.viewer, list(self.last_results or ()))
        self.compare_button.text = "Back to previous view" if shown else "Compare side by side"
        if shown:
            self.update_psnr()
        return shown

    def update_psnr(self) -> dict[str, float]:
        truth = self.truth_combo.value
        if truth is None or self.last_results is None:
            self.psnr_label.value = ""
            return {}
        raw, den, dec = self.last_results
        values = compare_psnr(truth, {"raw": raw, "denoised": den, "deconvolved": dec})
        values.pop(truth.name, None)
        if values:
            self.psnr_label.value = f"PSNR vs '{truth.name}':\n" + "\n".join(
                f"  {k}: {v:.2f} dB" for k, v in values.items()
            )
        else:
            self.psnr_label.value = "Ground truth shape differs from the results: no PSNR"
        return values

    # -- closing ---------------------------------------------------------------------
    def showEvent(self, event):  # noqa: N802 (Qt API)
        super().showEvent(event)
        window = self.window()
        if window is not self and window is not self._watched_window:
            window.installEventFilter(_CloseWatcher(self._lifetime, window))
            self._watched_window = window

    def closeEvent(self, event):  # noqa: N802 (Qt API)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop running work and wait for the worker threads to end."""
        self._lifetime.shutdown()
        self._after_shutdown()

    def _after_shutdown(self) -> None:
        pass
