"""The "Measure PSF from beads" dock widget: average the isolated beads of a bead image.

All the measuring is :func:`napari_deconoising.core.beads.distill_psf`; this reads the
layer (a plane or a Z stack, one channel), runs it in a worker thread and shows the
result as a PSF layer the Train widget can use and a Points layer on the beads used.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from magicgui.widgets import CheckBox, FloatSpinBox, Label, PushButton, SpinBox
from magicgui.widgets.bases import CategoricalWidget
from napari.layers import Layer
from qtpy.QtWidgets import QProgressBar, QVBoxLayout

from ..core import DataError
from ..core.beads import BeadPSF, distill_psf
from ._base import (
    _is_raw,
    _TextLabel,
    button_row,
    preferred_image,
    refresh_keeping_choices,
)
from ._bead_layers import BeadInput, add_bead_layers, bead_input, check_bead_axes, pixel_size_nm
from ._form import Field, Form, axes_field, image_field
from ._layers import check_layer, layer_shape
from ._lifetime import JobWidget
from ._notify import Refused, info, notify_error, warning
from ._worker import Job

__all__ = ["BeadsWidget", "bead_fields"]

_TIPS = {
    "axes": "Axis letters of the layer: YX for one image, ZYX for a stack; C for channels (CYX, CZYX), "
    "S or T for series (the plane shown in the viewer is measured)",
    "channel": "Beads are measured one channel at a time: which one (1 = the first)",
    "three_d": "Measure a 3D PSF from the whole Z stack; off: a 2D PSF from the plane shown in the viewer",
    "box": "Size of the box around each bead, the PSF's size, in pixels (odd); 0: 10 Gaussian sigmas of "
    "the brightest beads",
    "threshold": "How many noise levels a bead must stand above the background to count",
    "bead_nm": "Diameter of the beads in nm, taken out of the Gaussian sigma (needs the layer's pixel size); "
    "0: no correction (fine for beads well below the resolution)",
    "pixel": "From the layer's scale (and units); needed for the bead diameter and for sizes in nm",
}


def bead_fields() -> tuple[Field, ...]:
    """The form, top to bottom."""
    return (
        image_field("Image of sub-resolution beads: one YX plane or a ZYX stack"),
        axes_field(_TIPS["axes"]),
        Field("channel", SpinBox, "Channel", {"value": 1, "min": 1, "max": 1, "visible": False,
                                              "tooltip": _TIPS["channel"]}),
        Field("three_d", CheckBox, "3D (Z stack)", {"value": False, "enabled": False, "tooltip": _TIPS["three_d"]}),
        Field("box", SpinBox, "Box size (px)", {"value": 0, "min": 0, "max": 255, "tooltip": _TIPS["box"]}),
        Field("threshold", FloatSpinBox, "Threshold", {"value": 6.0, "min": 0.5, "max": 1000.0, "step": 0.5,
                                                       "tooltip": _TIPS["threshold"]}),
        Field("bead_nm", FloatSpinBox, "Bead diameter (nm)", {"value": 0.0, "min": 0.0, "max": 10_000.0,
                                                              "step": 10.0, "tooltip": _TIPS["bead_nm"]}),
        Field("pixel", Label, "Pixel size", {"value": "", "tooltip": _TIPS["pixel"]}),
    )


def _measure(inp: BeadInput, box: int | None, threshold: float, diameter: Any) -> Generator[str, None, BeadPSF]:
    """The worker's job: one step, no progress to report (a few seconds at most)."""
    yield "measuring"
    return distill_psf(inp.data, box=box, threshold=threshold, bead_diameter=diameter)


class BeadsWidget(JobWidget):
    """Measure the PSF from an image layer of beads without blocking the viewer.

    napari calls :meth:`reset_choices` on every layer insert, removal, move and rename.
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.form = Form(bead_fields(), napari_viewer)
        self.job: Job | None = None
        self.last_layers: tuple[Layer, Layer] | None = None  # (PSF, beads) of the latest measurement
        self._request: tuple[BeadInput, dict] | None = None

        self.measure_button = PushButton(text="Measure")
        self.measure_button.changed.connect(self.measure)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)  # a busy bar: distill_psf reports no progress
        # a plain QLabel: magicgui's Label does not grow with a wrapped multi-line summary
        self.status = _TextLabel()
        self.status.setWordWrap(True)
        for name in ("image", "axes", "three_d"):
            self.form.widgets[name].changed.connect(self._update_rows)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.form.sections["main"].native)
        lay.addWidget(button_row(self.measure_button.native))
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)
        layer = preferred_image(napari_viewer)
        if layer is not None:
            self.form.image.value = layer
        self._update_rows()

    # -- layer pickers --------------------------------------------------------------
    def reset_choices(self, event: Any = None) -> None:
        """Refresh the layer picker, keeping its choice (also across a rename); follow a newly
        inserted visible raw image when the picker shows none or a hidden one."""
        pickers = [w for w in self.form.widgets.values() if isinstance(w, CategoricalWidget)]
        try:
            refresh_keeping_choices(pickers, self.form.reset_choices,
                                    {self.form.image: lambda: preferred_image(self.viewer)})
        except RuntimeError:  # widget already deleted (napari keeps the connection)
            return
        new = getattr(event, "value", None) if getattr(event, "type", None) == "inserted" else None
        current = self.form.image.value
        if new is not None and _is_raw(new) and new.visible and (current is None or not current.visible):
            self.form.image.value = new

    def _axes(self) -> str:
        return (self.form.axes.value or "").strip().upper()

    @property
    def is_3d(self) -> bool:
        """Whether a 3D PSF is asked for (the switch is on and the axes have a Z)."""
        return bool(self.form.three_d.value) and self.form.three_d.enabled

    def _update_rows(self, *_args: Any) -> None:
        """3D only with a Z axis, the channel row only with a C axis, and the layer's pixel size."""
        f, axes, layer = self.form, self._axes(), self.form.image.value
        f.three_d.enabled = "Z" in axes  # keeps its state, so that choosing a stack again restores it
        shape = layer_shape(layer) if layer is not None else ()
        channels = shape[axes.index("C")] if "C" in axes and len(axes) == len(shape) else 0
        f.channel.visible = channels > 0
        if channels:
            f.channel.max = channels
        try:
            check_layer(layer)
            check_bead_axes(axes, shape, layer.name)
            f.pixel.value = pixel_size_nm(layer, axes, "ZYX" if self.is_3d else "YX")[1]
        except DataError:
            f.pixel.value = "—"

    # -- measuring --------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def request(self) -> tuple[BeadInput, int | None, float, Any, dict]:
        """The measurement the form describes: input, box, threshold, bead diameter in pixels and
        the settings for the layers' metadata (raises DataError, Refused)."""
        f = self.form
        layer = f.image.value
        check_layer(layer)
        axes = self._axes()
        if not axes:
            raise DataError("enter the axes of the layer (e.g. YX or ZYX)")
        inp = bead_input(layer, axes, self.is_3d, int(f.channel.value), self.viewer.dims.point)
        spacing, why = pixel_size_nm(layer, axes, inp.kept)
        nm = float(f.bead_nm.value)
        if nm > 0 and spacing is None:
            raise Refused(f"the bead diameter needs the pixel size, and layer '{layer.name}' has none ({why}): "
                          "set the layer's scale (in µm) or leave the bead diameter at 0")
        diameter = tuple(nm / d for d in spacing) if nm > 0 else 0.0
        box = int(f.box.value) or None
        settings = {"threshold": float(f.threshold.value), "box_asked": box, "bead_diameter_nm": nm,
                    "pixel_size_nm": None if spacing is None else list(spacing)}
        return inp, box, float(f.threshold.value), diameter, settings

    def measure(self, *_args: Any) -> bool:
        """Start the measurement in a worker thread; False (with a notification) if refused."""
        if self.busy:
            warning("A PSF measurement is already running.")
            return False
        self._update_rows()  # the pixel size shown: the layer's scale may have changed since
        try:
            inp, box, threshold, diameter, settings = self.request()
        except ValueError as exc:
            self.status.value = notify_error(exc, what="the PSF measurement")
            return False
        self._request = (inp, settings)
        # a plane cut out of a series or stack is the one shown: say so (a channel is picked in the form)
        cut = any(i is not None and a != "C" for a, i in zip(inp.axes, inp.fixed))
        where = ", the plane shown" if cut else ""
        self.status.value = f"Measuring the PSF on '{inp.layer.name}' ({inp.kept}{where})…"
        self.progress.setRange(0, 0)
        self.measure_button.enabled = False
        self.job = Job(_measure, inp, box, threshold, diameter, returned=self._on_measured,
                       errored=self._on_error, finished=self._on_finished)
        self.track(self.job)
        self.job.start()
        return True

    def _on_measured(self, result: BeadPSF) -> None:
        inp, settings = self._request
        if inp.layer not in self.viewer.layers:  # removed while measuring: nothing to put the beads on
            self.status.value = f"Layer '{inp.layer.name}' was removed while measuring: no result."
            warning(self.status.value)
            return
        psf, beads = add_bead_layers(self.viewer, inp, result, settings)
        self.last_layers = (psf, beads)
        spacing = settings["pixel_size_nm"]
        summary = result.summary(spacing)
        self.status.value = f"'{psf.name}': {summary}"
        info(f"PSF measured from '{inp.layer.name}' ({psf.name}): {summary}\n"
             f"Use it in the Train widget: PSF = Measured PSF: image layer.")

    def _on_error(self, exc: BaseException) -> None:
        self.status.value = notify_error(exc, what="the PSF measurement")

    def _on_finished(self) -> None:
        self._request = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.measure_button.enabled = True
