"""What the train and apply widgets share: form, layer pickers, prediction, compare, closing."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from enum import EnumMeta
from typing import Any

from magicgui.widgets import ComboBox, Container, Label, PushButton
from magicgui.widgets.bases import CategoricalWidget
from napari.layers import Image, Layer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from ._compare import compare_psnr, is_comparing, toggle_compare
from ._form import Form
from ._layers import PROVENANCE_KEY, grey_image_choices
from ._lifetime import JobWidget
from ._notify import info
from ._prediction import PredictionFlow

__all__ = ["DeconoisingWidget", "button_row", "preferred_image", "refresh_keeping_choices"]


def button_row(*widgets: QWidget) -> QWidget:
    """Widgets side by side, without margins."""
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        lay.addWidget(w)
    return row


def _is_raw(layer: Layer) -> bool:
    """An image a picker may follow: not RGB and not one of this plugin's results."""
    return isinstance(layer, Image) and not layer.rgb and PROVENANCE_KEY not in (layer.metadata or {})


def preferred_image(viewer) -> Image | None:
    """The image a picker should show: the top-most visible raw image, else the top-most raw one.

    None when there is no raw image (see :func:`_is_raw`).
    """
    raw = [layer for layer in reversed(viewer.layers) if _is_raw(layer)]
    return next((layer for layer in raw if layer.visible), raw[0] if raw else None)


def refresh_keeping_choices(widgets: Iterable[CategoricalWidget], refresh: Callable[[], None],
                            fallback: dict[CategoricalWidget, Callable[[], Any]] | None = None) -> None:
    """Run ``refresh`` (which resets the pickers' choices), keeping what each picker shows.

    magicgui drops and re-adds a choice whose label changed, so renaming a layer moved
    every picker that showed it to another layer (and cleared a multi-selection): Start
    would then train on an image the user had not picked. Here each widget's value is
    put back where its choices still hold it, with its ``changed`` signal blocked, so
    nothing downstream (the guessed axes) notices. Choices can depend on another picker
    (the extra channel layers leave out the Image), so when a value could not be put
    back the choices are refreshed once more with the others restored. A picker whose
    value did go (its layer was removed) takes ``fallback[widget]()`` when that is one
    of its choices, and emits ``changed`` once, at the end. Each picker then lists its
    choices in their own order (the viewer's layer order), as magicgui does not.
    """
    widgets = list(widgets)
    saved = [(w, w.value) for w in widgets]
    with ExitStack() as stack:
        for w in widgets:
            stack.enter_context(w.changed.blocked())
        refresh()
        if not all([_restore(w, old, None) for w, old in saved]):
            refresh()
        moved = [w for w, old in saved if not _restore(w, old, (fallback or {}).get(w))]
        for w in widgets:
            _in_choice_order(w)
    for w in moved:
        w.changed.emit(w.value)


def _same(a: Any, b: Any) -> bool:
    # Layers by identity: two layers can be equal in name but not the same.
    return a is b or (not isinstance(a, Layer) and not isinstance(b, Layer) and a == b)


def _in_choice_order(widget: CategoricalWidget) -> None:
    """List ``widget``'s choices in the order its choices function gives (the caller blocks ``changed``).

    magicgui keeps an item where it is and appends a new label at the end, so a renamed or
    moved layer sat out of the viewer's order; emptied first, the list is rebuilt in order.
    """
    source = widget.options.get("choices")
    if not callable(source) or isinstance(source, EnumMeta):
        return  # fixed choices keep their order
    wanted = [c[1] if isinstance(c, tuple) and len(c) == 2 else c for c in source(widget)]  # (label, value)
    shown = [c for c in widget.choices if c is not None]  # a nullable picker's empty choice stays first
    wanted = [c for c in wanted if c is not None]
    if len(shown) != len(wanted) or not all(_same(a, b) for a, b in zip(shown, wanted)):
        value = widget.value
        widget.choices = ()
        widget.reset_choices()
        _restore(widget, value, None)


def _restore(widget: CategoricalWidget, old: Any, fallback: Callable[[], Any] | None) -> bool:
    """Set ``old`` (or what of it is left) back on ``widget``; whether it was all still there."""
    choices = widget.choices

    def present(value: Any) -> bool:
        return any(_same(value, c) for c in choices)

    if isinstance(old, (list, tuple)):  # a multi-selection
        left = [v for v in old if present(v)]
        widget.value = left
        return len(left) == len(old)
    if present(old):
        widget.value = old
        return True
    if fallback is not None:
        value = fallback()
        if present(value):
            widget.value = value
    return False


class _TextLabel(QLabel):
    """A QLabel with a ``value`` property like magicgui's Label."""

    @property
    def value(self) -> str:
        return self.text()

    @value.setter
    def value(self, text: str) -> None:
        self.setText(text)
        self.updateGeometry()


class DeconoisingWidget(JobWidget):
    """Base dock widget: a viewer, a form, progress, prediction, and the compare section.

    napari calls :meth:`reset_choices` on every layer insert, removal, move and rename
    for a dock widget that has one (``Window.add_dock_widget``); the layer pickers
    refresh there.
    """

    def __init__(self, napari_viewer, form: Form) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.form = form
        self.last_results: tuple[Layer | None, Layer | None, Layer | None] | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(4, 4, 4, 4)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.prediction = PredictionFlow(self, finished=self._update_buttons)
        # compare section
        viewer = napari_viewer
        self.truth_combo = ComboBox(
            label="Ground truth",
            choices=lambda _w: grey_image_choices(viewer),
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
        self.pick_preferred_image()

    # -- layer pickers -------------------------------------------------------------
    def reset_choices(self, event: Any = None) -> None:
        """Refresh the layer and model pickers, each keeping its choice (also across a rename);
        follow a newly inserted raw image."""
        pickers = [w for w in self.form.widgets.values() if isinstance(w, CategoricalWidget)]
        fallback = {self.form.image: lambda: preferred_image(self.viewer)} if "image" in self.form.widgets else {}
        try:
            refresh_keeping_choices([*pickers, self.truth_combo], self._reset_all_choices, fallback)
        except RuntimeError:  # widget already deleted (napari keeps the connection)
            return
        if getattr(event, "type", None) == "inserted":
            self._follow_new_layer(event.value)

    def _reset_all_choices(self) -> None:
        self.form.reset_choices()
        self.compare_box.reset_choices()

    def pick_preferred_image(self) -> None:
        """Show the top-most visible raw image in the Image picker (a widget opened after the
        layers would otherwise show the first layer, which may be a hidden ground truth)."""
        layer = preferred_image(self.viewer)
        if layer is not None and "image" in self.form.widgets:
            self.form.image.value = layer

    def _follow_new_layer(self, layer: Layer) -> None:
        """Pick a newly added visible raw image unless the user picked a visible one."""
        if not _is_raw(layer) or not layer.visible:
            return
        current = self.form.image.value
        if current is None or not current.visible:
            self.form.image.value = layer

    # -- jobs ------------------------------------------------------------------------
    def results_added(self, raw: Layer, denoised: Layer, deconvolved: Layer) -> None:
        """The latest results, for compare and PSNR."""
        self.last_results = (raw, denoised, deconvolved)
        if self.truth_combo.value is not None:
            self.update_psnr()

    def _update_buttons(self) -> None:
        """Enable the buttons that fit the current state (subclasses)."""

    # -- compare ---------------------------------------------------------------------
    def toggle_compare(self, *_args) -> bool:
        """Side by side view of the latest results, or back to the previous layout."""
        if not is_comparing(self.viewer) and self.last_results is None:
            info("Nothing to compare yet: run a model first.")
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
