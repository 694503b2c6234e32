"""Training a model per channel in the Train widget: where the channels come from, and a PSF each.

The channels are either the ``C`` axis of one layer (axes ``CYX``, ``CZYX``, ``TCYX``...) or
several single-channel layers of the same shape (the Image, then the "Extra channel layers"
in the viewer's layer order), for example the layers napari makes when it opens a multichannel file with a
channel axis. Either way the core gets one array with a ``C`` axis and trains one network per
channel (:mod:`napari_deconoising.core.channels`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from magicgui.widgets import FileEdit, LineEdit, Select
from napari.layers import Image, Layer

from ..core import ChannelModels, ConfigError, DataError, DecoNoisingModel, PSFError, load_psf
from ..core.channels import per_channel
from ..core.optics import Optics, OpticsError, gaussian_sigma
from ._form import Field
from ._large import is_large
from ._layers import check_layer, grey_image_choices, layer_array, layer_shape
from ._optics_rows import read_optics
from ._train_job import ChannelStart

__all__ = ["ChannelInput", "channel_fields", "channel_input", "channel_optics", "channel_prefix", "channel_psf_files",
           "channel_psf_layers", "channel_sigma_text", "channel_values", "count_channels", "in_layer_order",
           "stopped_channels_text", "trained_size"]

_TIPS = {
    "extra_layers": "Other single-channel layers of the same shape as the Image, trained as further channels "
    "of one model (one network each). Channel order: the Image, then the selected layers in the order of "
    "the viewer's layer list (bottom to top there)",
    "channel_sigmas": "Gaussian PSF sigma of each channel in pixels, in channel order (e.g. 1.2, 1.8); "
    "one value applies to every channel",
    "channel_sigmas_z": "Gaussian PSF sigma along Z of each channel, in planes (e.g. 2, 2.6); one value "
    "applies to every channel",
    "channel_emissions": "Emission wavelength of each channel in nm, in channel order (e.g. 520, 610); the "
    "other optics apply to every channel",
    "channel_psf_layers": "The measured PSF of each channel: one layer for every channel, or one per channel, "
    "taken in the order of the viewer's layer list (bottom to top there), like the channels",
    "channel_psf_files": "The measured PSF of each channel as TIFF files, in channel order, separated by ', ' "
    "(the order typed here); one file applies to every channel",
}


def channel_fields() -> dict[str, Field]:
    """The per-channel rows of the Train form, by name (hidden until the image has channels)."""

    def row(name: str, label: str) -> Field:
        return Field(name, LineEdit, label, {"visible": False, "tooltip": _TIPS[name]})

    return {
        # its choices (every single-channel image but the Image) are set by the form
        "extra_layers": Field("extra_layers", Select, "Extra channel layers", {"tooltip": _TIPS["extra_layers"]}),
        "channel_sigmas": row("channel_sigmas", "PSF sigma per channel (px)"),
        "channel_sigmas_z": row("channel_sigmas_z", "PSF sigma Z per channel"),
        "channel_emissions": row("channel_emissions", "Emission per channel (nm)"),
        "channel_psf_layers": Field("channel_psf_layers", Select, "PSF layer per channel",
                                    {"visible": False, "tooltip": _TIPS["channel_psf_layers"]},
                                    choices=grey_image_choices),
        "channel_psf_files": Field("channel_psf_files", FileEdit, "PSF file per channel",
                                   {"mode": "rm", "filter": "*.tif *.tiff", "visible": False,
                                    "tooltip": _TIPS["channel_psf_files"]}),
    }


@dataclass(frozen=True)
class ChannelInput:
    """The channels of a training run.

    Attributes
    ----------
    layers : list of Image
        The one layer with a ``C`` axis, or one single-channel layer per channel.
    axes : str
        Axes of :meth:`data`, with a ``C``.
    count : int
        Number of channels.
    """

    layers: list[Image]
    axes: str
    count: int

    @property
    def separate(self) -> bool:
        """True when each channel is a layer of its own."""
        return len(self.layers) > 1

    def names(self) -> list[str]:
        """A name per channel for progress messages: its layer's, or '' for a C axis."""
        return [layer.name for layer in self.layers] if self.separate else [""] * self.count

    def data(self) -> np.ndarray:
        """A private copy of the channels, with the C axis where :attr:`axes` says."""
        if self.separate:
            return np.stack([layer_array(layer, copy=False) for layer in self.layers])
        return layer_array(self.layers[0])


def _c_axis(layer: Layer, axes: str) -> int | None:
    """Index of a usable C axis in ``axes`` (None without one); raises for channels after Y/X."""
    if "C" not in axes:
        return None
    if len(axes) != len(layer_shape(layer)):
        raise DataError(f"axes {axes!r} has {len(axes)} letters but layer '{layer.name}' has "
                        f"{len(layer_shape(layer))} dimensions {layer_shape(layer)}")
    c = axes.index("C")
    if "Y" in axes and "X" in axes and c > min(axes.index("Y"), axes.index("X")):
        # channels after Y/X are a picture's colour samples, not fluorescence channels
        raise DataError(f"axes {axes!r} put the channels after Y and X (RGB-like samples); DecoNoising needs "
                        "fluorescence channels stored channel by channel, e.g. CYX")
    return c


def count_channels(layer: Layer | None, axes: str, extra: Sequence[Layer]) -> int:
    """How many channels the form describes (1 when unsure: :func:`channel_input` says why)."""
    if extra:
        return 1 + len([e for e in extra if e is not layer])
    if not isinstance(layer, Image):
        return 1
    try:
        c = _c_axis(layer, axes.strip().upper())
    except DataError:
        return 1
    return 1 if c is None else layer_shape(layer)[c]


def channel_input(layer: Image, axes: str, extra: Sequence[Layer]) -> ChannelInput | None:
    """The channels to train, or None for one channel (train as before).

    Raises
    ------
    DataError
        Extra layers with an image that has a C axis, of a different shape, repeated, not
        single-channel images; or layers too large to hold in memory.
    """
    axes = axes.upper()
    c = _c_axis(layer, axes)
    if extra:
        if c is not None:
            raise DataError(f"layer '{layer.name}' already has a channel axis (C in {axes!r}): use its channels "
                            "or extra channel layers, not both")
        if any(e is layer for e in extra):
            raise DataError(f"'{layer.name}' is the Image (channel 1): choose other layers as extra channels")
        shape = layer_shape(layer)
        for e in extra:
            check_layer(e)
            if layer_shape(e) != shape:
                raise DataError(f"extra channel layer '{e.name}' has shape {layer_shape(e)} but the Image "
                                f"'{layer.name}' has {shape}: the channels of one model need the same shape")
        found = ChannelInput([layer, *extra], "C" + axes, 1 + len(extra))
    elif c is None or layer_shape(layer)[c] == 1:
        return None
    else:
        found = ChannelInput([layer], axes, layer_shape(layer)[c])
    if any(is_large(one) for one in found.layers):
        raise DataError("a model per channel trains on layers that fit in memory; this image is too large "
                        "(train a model on each channel's layer on its own)")
    return found


def channel_values(text: Any, n: int, what: str) -> list[float]:
    """Numbers typed as ``"1.2, 1.8"``: one for all ``n`` channels, or exactly one per channel."""
    tokens = [t for t in re.split(r"[,;\s]+", str(text or "").strip()) if t]
    if not tokens:
        raise ConfigError(f"enter the {what} of the {n} channels: one value for all, or one per channel "
                          "(e.g. 1.2, 1.8)")
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise ConfigError(f"{what} per channel: {text!r} is not a list of numbers (e.g. 1.2, 1.8)") from None
    return [float(v) for v in per_channel(values, n, what)]


def channel_optics(form: Any, n: int) -> list[Optics]:
    """The form's optics with each channel's emission wavelength (raises OpticsError, ConfigError)."""
    base = read_optics(form)
    waves = channel_values(form.channel_emissions.value, n, "emission wavelength")
    return [dataclasses.replace(base, wavelength_nm=w) for w in waves]


def in_layer_order(viewer: Any, chosen: Sequence[Layer]) -> list[Layer]:
    """The ``chosen`` layers in the viewer's layer order (the order they were opened or added in,
    unless moved), whatever the order of clicking: the channel order of a multiple choice."""
    return [layer for layer in viewer.layers if any(layer is c for c in chosen)]


def channel_psf_layers(form: Any) -> list[np.ndarray]:
    """The measured PSFs picked in the "PSF layer per channel" row, in channel order (raises PSFError)."""
    layers = in_layer_order(form.viewer, form.channel_psf_layers.value or ())
    if not layers:
        raise PSFError("choose the image layers that hold the measured PSFs: one for every channel, or one per "
                       "channel")
    return [layer_array(layer) for layer in layers]


def channel_psf_files(form: Any, n: int, ndim: int) -> list[np.ndarray]:
    """The measured PSFs of the "PSF file per channel" row, in channel order (raises PSFError, DataError)."""
    paths = [p for p in form.channel_psf_files.value or () if str(p).strip()]
    if not paths:
        raise PSFError("choose the TIFF files that hold the measured PSFs: one for every channel, or one per "
                       "channel")
    per_channel(paths, n, "measured PSF")  # the count first: reading files that are not used wastes time
    return [load_psf(p, ndim=ndim) for p in paths]


def channel_sigma_text(form: Any, n: int, ndim: int = 2) -> str:
    """The equivalent Gaussian sigma of each channel's optics, or why they are unusable."""
    try:
        sigmas = [gaussian_sigma(o) for o in channel_optics(form, n)]
    except (OpticsError, ConfigError, DataError) as e:
        return f"— {e}"
    return "; ".join(f"ch {k + 1}: {sy:.2f} px" + (f", z {sz:.2f}" if ndim == 3 else "")
                     for k, (sz, sy, _) in enumerate(sigmas))


# -- what the Train widget says about a run with channels ---------------------------------------


def channel_prefix(channel: ChannelStart | None) -> str:
    """``"Channel 2/3 (nuclei) · "`` in front of a message about one channel's training; '' without."""
    if channel is None:
        return ""
    name = f" ({channel.name})" if channel.name else ""
    return f"Channel {channel.index + 1}/{channel.count}{name} · "


def stopped_channels_text(channel: ChannelStart | None) -> str:
    """Why a run stopped before its last channel has no model."""
    where = f" in channel {channel.index + 1}/{channel.count}" if channel is not None else ""
    return (f"Training stopped{where}: a model per channel needs every channel trained, so no model was kept "
            "(fewer epochs make a shorter run).")


def trained_size(model: DecoNoisingModel | ChannelModels) -> str:
    """``"4 epochs"``, ``"1 epoch"``; for a model per channel ``"2 channels, 4 epochs each"`` or,
    when a stop cut the last channel short, ``"2 channels, 50 and 3 epochs"`` (in channel order)."""
    if isinstance(model, ChannelModels):
        counts = [len(m.history) for m in model.models]
        if len(set(counts)) == 1:
            return f"{len(counts)} channels, {_epochs(counts[0])} each"
        return f"{len(counts)} channels, {', '.join(map(str, counts[:-1]))} and {_epochs(counts[-1])}"
    return _epochs(len(model.history))


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"
