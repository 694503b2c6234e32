"""The Train widget's inputs, as a table of fields, and their reading into a TrainConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, LineEdit, SpinBox

from ..core import ConfigError, PSFError, TrainConfig, load_psf
from ..core.channels import channel_psfs
from ..core.config import DECODERS
from ..core.optics import optics_psf
from ._form import Field, Form, axes_field, device_field, image_field
from ._layers import grey_image_choices, layer_array
from ._notify import notify_error
from ._optics_rows import (
    CONFOCAL_ROWS,
    OPTICS_INPUTS,
    OPTICS_ROWS,
    optics_fields,
    preview_psf,
    read_optics,
    sigma_text,
)
from ._registry import REGISTRY
from ._train_channels import (
    channel_fields,
    channel_optics,
    channel_psf_files,
    channel_psf_layers,
    channel_sigma_text,
    channel_values,
    count_channels,
    in_layer_order,
)

__all__ = ["NEW_MODEL", "PSF_FILE", "PSF_GAUSSIAN", "PSF_LAYER", "PSF_NONE", "PSF_OPTICS", "TrainForm"]

PSF_GAUSSIAN = "Gaussian (sigma)"
PSF_LAYER = "Measured PSF: image layer"
PSF_FILE = "Measured PSF: TIFF file"
PSF_NONE = "None (plain Noise2Void)"
PSF_OPTICS = "From optics (NA, wavelength…)"
NEW_MODEL = "(new model)"

_PSF_CONFIG = {PSF_GAUSSIAN: "gaussian", PSF_LAYER: "measured", PSF_FILE: "measured", PSF_OPTICS: "measured",
               PSF_NONE: "none"}


_TIPS = {
    "axes": "Axis letters of the image: YX for one image; SYX, TYX or ZYX for stacks (trained slice by slice); "
    "C for channels (CYX, CZYX: a network per channel)",
    "sigma": "Gaussian PSF standard deviation in pixels: about 0.21 * wavelength / NA / pixel size "
    "(see the user guide)",
    "sigma_auto": "Learn sigma with the network in a short run (at most 300 steps, starting wide at 3 px), "
    "then train with it fixed; the result is reported and saved with the model. When the data gives no "
    "clear answer, 1.0 px is used",
    "n2v2": "N2V2: blur pooling, no top-level skip connection and median replacement of blind spots, "
    "against checkerboard artefacts (see docs/benchmarks.md for when it helps)",
    "decoder": "lean: Noise2Void's U-Net decoder (as in CAREamics), 6-13 % faster training steps in 2D; "
    "wide: the DecoNoising reference code's (see docs/benchmarks.md for their quality)",
    "positivity": "Penalty on negative intensities in the deconvolved image; 0 switches it off",
    "resume": "Continue training a model from this session or a loaded file",
    "three_d": "Train a 3D network on whole volumes (needs a Z axis); off: slice by slice in 2D",
    "z_patch": "Planes per training patch along Z (3D only); patches are Z x size x size",
    "sigma_z": "Gaussian PSF standard deviation along Z, in planes (3D only)",
    "head_lr_scale": "The PSF head (the network's last layer, which makes the deconvolved image) learns at the "
    "learning rate times this. auto: the head at 1e-3 where wide layers learn slower (3 for the 3D default, "
    "1 in 2D, as measured); 1 keeps one rate",
    "weight_average": "Validate and save a moving average of the weights (updated every step with this decay; "
    "0.99 averages about the last 100 steps); 0 is off",
    "wiener_eps": "The deconvolved image is the network's output through the PSF's Wiener filter with this "
    "regularisation: the same model, trained faster where the PSF is wide. auto: 0.01 in 3D, 0 in 2D (as "
    "measured); 0 is the paper's network",
    "lr": "Adam's learning rate, e.g. 1e-3; auto: 1e-3, scaled down for layers wider than the paper's 2D network "
    "(3.3e-4 for 3D at 64 channels)",
    "micro_batches": "Virtual batch: split each batch into this many passes (gradient accumulation) to save memory",
}


def _auto_or_number(what: str, example: str):
    """A parser for a text row where "auto" (or nothing) is TrainConfig's None."""

    def parse(text: Any) -> float | None:
        if str(text).strip().lower() in ("", "auto"):
            return None  # TrainConfig's default for the network's size and dimensions
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{what} {text!r} is not a number (e.g. {example}) or 'auto'") from None

    return parse


_parse_lr = _auto_or_number("learning rate", "1e-3")


def _resume_choices(_viewer: Any) -> list[str]:
    return [NEW_MODEL, *REGISTRY.names()]


def train_fields() -> tuple[Field, ...]:
    """The Train form, top to bottom; "advanced" rows go in the collapsible section.

    A new training option is one row here (``Field.setting`` when the widget's name is
    the :class:`TrainConfig` field it sets).
    """
    adv, setting, tip, per = "advanced", Field.setting, _TIPS, channel_fields()
    optics = optics_fields()
    at = [f.name for f in optics].index("emission_nm") + 1
    return (
        image_field("Noisy image or stack to train on (with a C axis: a model per channel)"),
        axes_field(tip["axes"]),
        per["extra_layers"],
        Field("psf_kind", ComboBox, "PSF", {"choices": list(_PSF_CONFIG), "value": PSF_GAUSSIAN},
              config="psf", parse=_PSF_CONFIG.__getitem__),
        Field("three_d", CheckBox, "3D", {"value": False, "enabled": False, "tooltip": tip["three_d"]},
              config="ndim", parse=lambda on: 3 if on else 2),
        Field("sigma", FloatSpinBox, "PSF sigma (px)", {"min": 0.0, "max": 50.0, "step": 0.1, "tooltip": tip["sigma"]},
              config="psf_sigma", parse=float),
        per["channel_sigmas"],
        Field("sigma_z", FloatSpinBox, "PSF sigma Z (planes)", {"min": 0.0, "max": 50.0, "step": 0.1, "value": 2.0,
                                                            "visible": False, "tooltip": tip["sigma_z"]}),
        per["channel_sigmas_z"],
        Field("sigma_auto", CheckBox, "Estimate sigma from data", {"value": False, "tooltip": tip["sigma_auto"]}),
        Field("psf_layer", ComboBox, "PSF layer", {"nullable": True, "value": None, "visible": False},
              choices=grey_image_choices),
        per["channel_psf_layers"],
        Field("psf_file", FileEdit, "PSF file", {"mode": "r", "filter": "*.tif *.tiff", "visible": False}),
        per["channel_psf_files"],
        *optics[:at], per["channel_emissions"], *optics[at:],
        setting("positivity", FloatSpinBox, "Positivity λ", min=0.0, max=1000.0, step=0.1, tooltip=tip["positivity"]),
        Field("resume", ComboBox, "Start from", {"value": NEW_MODEL, "tooltip": tip["resume"]},
              choices=_resume_choices),
        setting("epochs", SpinBox, "Epochs", adv, min=1, max=100_000),
        setting("steps_per_epoch", SpinBox, "Steps per epoch", adv, min=1, max=100_000),
        setting("batch_size", SpinBox, "Batch size", adv, min=1, max=4096),
        setting("patch_size", SpinBox, "Patch size", adv, min=8, max=4096, step=8),
        Field("z_patch", SpinBox, "Z patch size", {"min": 1, "max": 4096, "value": 16, "visible": False,
                                                   "tooltip": tip["z_patch"]}, section=adv),
        setting("micro_batches", SpinBox, "Micro-batches", adv, min=1, max=4096, tooltip=tip["micro_batches"]),
        Field("lr", LineEdit, "Learning rate", {"value": "auto", "tooltip": tip["lr"]}, "lr", _parse_lr, section=adv),
        Field("head_lr_scale", LineEdit, "PSF head learning rate ×", {"value": "auto", "tooltip": tip["head_lr_scale"]},
              "head_lr_scale", _auto_or_number("PSF head learning rate factor", "3"), section=adv),
        setting("weight_average", FloatSpinBox, "Weight average (decay)", adv, min=0.0, max=0.999, step=0.001,
                tooltip=tip["weight_average"]),
        Field("wiener_eps", LineEdit, "Phantom preconditioning ε", {"value": "auto", "tooltip": tip["wiener_eps"]},
              "wiener_eps", _auto_or_number("phantom preconditioning", "0.01"), section=adv),
        setting("depth", SpinBox, "U-Net depth", adv, min=1, max=6),
        setting("channels", SpinBox, "Channels", adv, min=1, max=1024),
        setting("n2v2", CheckBox, "N2V2 (fewer checkerboards)", adv, tooltip=tip["n2v2"]),
        setting("decoder", ComboBox, "Decoder", adv, choices=[("default (wide)", None),
                                                              *((k, k) for k in DECODERS)], tooltip=tip["decoder"]),
        setting("val_fraction", FloatSpinBox, "Validation fraction", adv, min=0.01, max=0.9, step=0.05),
        setting("seed", SpinBox, "Seed", adv, min=0, max=2**31 - 1),
        device_field(section=adv),
    )


class TrainForm(Form):
    """The Train widget's inputs: ``config()`` reads them into a :class:`TrainConfig`."""

    def __init__(self, viewer: Any) -> None:
        super().__init__(train_fields(), viewer, defaults=TrainConfig())
        self.viewer = viewer
        for name in ("extra_layers", "channel_psf_layers"):  # about three rows: these lists are rarely long
            self.widgets[name].native.setMaximumHeight(72)
        self.extra_layers.choices = self._extra_choices
        self.image.changed.connect(lambda *_: self.extra_layers.reset_choices())
        for name in OPTICS_INPUTS:
            self.widgets[name].changed.connect(self._update_sigma)
        self.channel_emissions.changed.connect(self._update_sigma)
        self.preview_psf.changed.connect(self._preview)
        for name in ("psf_kind", "modality", "axes", "image", "three_d", "extra_layers"):
            self.widgets[name].changed.connect(self._update_rows)
        self.sigma_auto.changed.connect(self._on_sigma_auto)
        self._update_rows()

    @property
    def is_3d(self) -> bool:
        """Whether the form asks for a 3D model (the switch is on and the axes have a Z)."""
        return bool(self.three_d.value) and self.three_d.enabled

    def config(self) -> TrainConfig:
        """The :class:`TrainConfig` the form describes (raises ConfigError, OpticsError)."""
        values = self.config_values()
        if self.psf_kind.value == PSF_OPTICS and self.resume_name() is None:
            values["optics"] = read_optics(self)  # a resumed model keeps its own PSF
        if self.is_3d:
            p, s = values["patch_size"], values["psf_sigma"]
            values.update(ndim=3, patch_size=(int(self.z_patch.value), p, p),
                          psf_sigma=(float(self.sigma_z.value), s, s))
        else:
            values["ndim"] = 2
        return TrainConfig(**values)

    def extra_layer_list(self) -> list:
        """The extra channel layers in their channel order: the viewer's layer order (the order
        they were opened or added in, unless moved), whatever the order of clicking."""
        return in_layer_order(self.viewer, self.extra_layers.value)

    def channel_count(self) -> int:
        """Channels of the chosen image (its C axis, or the extra layers), 1 when unsure."""
        return count_channels(self.image.value, self._axes_text(), self.extra_layer_list())

    def channel_configs(self, config: TrainConfig, n: int) -> list[TrainConfig]:
        """``config`` for each of ``n`` channels, with the channel's PSF sigma or optics (raises ConfigError)."""
        kind = self.psf_kind.value
        if kind == PSF_GAUSSIAN and not self.estimate_sigma():
            xy = channel_values(self.channel_sigmas.value, n, "PSF sigma")
            if config.ndim == 3:
                z = channel_values(self.channel_sigmas_z.value, n, "Z sigma")
                return [config.replace(psf_sigma=(sz, s, s)) for sz, s in zip(z, xy)]
            return [config.replace(psf_sigma=s) for s in xy]
        if kind == PSF_OPTICS:
            return [config.replace(optics=o) for o in channel_optics(self, n)]
        return [config] * n

    def channel_psfs(self, configs: list[TrainConfig]) -> list[np.ndarray | None]:
        """The measured PSF of each channel, checked for the model (raises PSFError, DataError): from its
        optics, its own layer or file, or one for all (None: a Gaussian or no PSF)."""
        kind, n, ndim = self.psf_kind.value, len(configs), configs[0].ndim
        if kind == PSF_OPTICS:
            return [optics_psf(c.optics, ndim=c.ndim) for c in configs]
        if n > 1 and kind == PSF_LAYER:
            return channel_psfs(channel_psf_layers(self), n, ndim)
        if n > 1 and kind == PSF_FILE:
            return channel_psfs(channel_psf_files(self, n, ndim), n, ndim)
        return channel_psfs(self.measured_psf(), n, ndim)

    def estimate_sigma(self) -> bool:
        """True when the Gaussian sigma is to be estimated from the data before training."""
        return self.psf_kind.value == PSF_GAUSSIAN and bool(self.sigma_auto.value)

    def resume_name(self) -> str | None:
        """The session model to continue training, or None for a new model."""
        name = self.resume.value
        return None if name in (None, NEW_MODEL) else name

    def measured_psf(self) -> np.ndarray | None:
        """The measured PSF chosen in the form (None for a Gaussian or no PSF)."""
        kind = self.psf_kind.value
        if kind == PSF_LAYER:
            layer = self.psf_layer.value
            if layer is None:
                raise PSFError("choose the image layer that holds the measured PSF")
            return layer_array(layer)
        if kind == PSF_FILE:
            path = self.psf_file.value
            if path is None or not str(path) or Path(path).is_dir():
                raise PSFError("choose the TIFF file that holds the measured PSF")
            return load_psf(path, ndim=3 if self.is_3d else 2)
        if kind == PSF_OPTICS:
            return optics_psf(read_optics(self), ndim=3 if self.is_3d else 2)
        return None

    def _axes_text(self) -> str:
        return (self.axes.value or "").strip().upper()

    def _extra_choices(self, _widget: Any = None) -> list:
        # the Image is channel 1: it is not offered again as an extra channel
        return [(name, layer) for name, layer in grey_image_choices(self.viewer) if layer is not self.image.value]

    def _update_rows(self, *_args: Any) -> None:
        """Show the rows that fit the PSF kind, 3D and the number of channels."""
        # 3D needs a Z axis; the switch keeps its state so that choosing a stack again restores it
        self.three_d.enabled = "Z" in self._axes_text()
        kind, is_3d, multi = self.psf_kind.value, self.is_3d, self.channel_count() > 1
        gaussian, optics = kind == PSF_GAUSSIAN, kind == PSF_OPTICS
        self.z_patch.visible = is_3d
        self.sigma_auto.visible = gaussian
        confocal = self.modality.value == "confocal"
        for name in OPTICS_ROWS:
            self.widgets[name].visible = optics and (confocal or name not in CONFOCAL_ROWS)
        # with channels, a value per channel replaces the single value (which fills it at first)
        for one, per, show in (("sigma", "channel_sigmas", gaussian), ("sigma_z", "channel_sigmas_z",
                               gaussian and is_3d), ("emission_nm", "channel_emissions", optics),
                               ("psf_layer", "channel_psf_layers", kind == PSF_LAYER),
                               ("psf_file", "channel_psf_files", kind == PSF_FILE)):
            self.widgets[one].visible = show and not multi
            self.widgets[per].visible = show and multi
            if show and multi:
                self._fill_per_channel(one, per)
        self._update_sigma()

    def _fill_per_channel(self, one: str, per: str) -> None:
        """An empty per-channel row starts with the single value, which then applies to every channel."""
        single, row = self.widgets[one], self.widgets[per]
        if per == "channel_psf_layers":
            if not row.value and single.value is not None and single.value in row.choices:
                row.value = [single.value]
        elif per == "channel_psf_files":
            if not row.value and single.line_edit.value.strip():  # an empty FileEdit reads as Path(".")
                row.value = (single.value,)
        elif not str(row.value).strip():
            row.value = f"{single.value:g}"

    def _on_sigma_auto(self, auto: bool) -> None:
        for name in ("sigma", "sigma_z", "channel_sigmas", "channel_sigmas_z"):
            self.widgets[name].enabled = not auto

    def _update_sigma(self, *_args: Any) -> None:
        ndim, n = 3 if self.is_3d else 2, self.channel_count()
        self.psf_sigma_info.value = channel_sigma_text(self, n, ndim) if n > 1 else sigma_text(self, ndim=ndim)

    def _preview(self, *_args: Any) -> None:
        try:
            n = self.channel_count()
            for optics in channel_optics(self, n) if n > 1 else [None]:  # a preview per channel
                preview_psf(self, self.viewer, ndim=3 if self.is_3d else 2, optics=optics)
        except ValueError as exc:
            notify_error(exc, what="the PSF preview")
        self._update_sigma()
