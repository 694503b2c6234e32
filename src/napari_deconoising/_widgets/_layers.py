"""Reading image layers for the core and adding result layers next to them."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels, Layer

from .. import __version__
from ..core import ChannelModels, DataError, DecoNoisingModel
from ..core.data import default_axes

__all__ = [
    "check_layer",
    "full_resolution",
    "image_choices",
    "grey_image_choices",
    "layer_shape",
    "layer_array",
    "guess_axes",
    "unique_name",
    "add_result_layers",
    "contrast",
    "PROVENANCE_KEY",
]

PROVENANCE_KEY = "napari-deconoising"


def check_layer(layer: Layer | None) -> None:
    """Raise :class:`DataError` unless ``layer`` holds single-channel intensities."""
    if layer is None:
        raise DataError("no image layer selected; open or add an image first")
    if isinstance(layer, Labels):
        raise DataError(
            f"layer '{layer.name}' is a labels layer (a segmentation); choose an intensity image"
        )
    if not isinstance(layer, Image):
        raise DataError(
            f"layer '{layer.name}' is a {type(layer).__name__} layer; choose an image layer"
        )
    if layer.rgb:
        raise DataError(
            f"layer '{layer.name}' is an RGB image; DecoNoising needs raw single-channel "
            "fluorescence data (split the channels first: right-click the layer > Split RGB)"
        )


def image_choices(viewer) -> list[tuple[str, Layer]]:
    """Image layers, and labels layers (refused with a message if chosen)."""
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, (Image, Labels))]


def grey_image_choices(viewer) -> list[tuple[str, Layer]]:
    """Single-channel image layers (ground truth, measured PSF)."""
    return [
        (layer.name, layer)
        for layer in viewer.layers
        if isinstance(layer, Image) and not layer.rgb
    ]


def full_resolution(layer: Layer):
    """The layer's data, or its finest level if it is multiscale (array-like, not copied)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_array(layer: Image, copy: bool = True) -> np.ndarray:
    """The layer's full-resolution data as a NumPy array (a copy by default, so the
    worker thread never shares memory the user can edit)."""
    data = full_resolution(layer)
    return np.array(data, copy=True) if copy else np.asarray(data)


def layer_shape(layer: Layer) -> tuple[int, ...]:
    """Shape of the layer's full-resolution data."""
    return tuple(int(n) for n in full_resolution(layer).shape)


def guess_axes(layer: Layer | None) -> str:
    """An axes string for the layer (``YX``, ``SYX``, ``ZYX``, ``SZYX``...); '' if unknown.

    The layer's own axis labels when they are axis letters (a reader that knows them, e.g.
    OME-Zarr's ``z, y, x``); else a 3D layer whose first axis is scaled unlike Y and X (a
    Z spacing) is a Z-stack; else a guess from the shape.
    """
    if not isinstance(layer, Image) or layer.rgb:
        return ""
    shape = layer_shape(layer)
    labels = "".join(str(a).upper() for a in (getattr(layer, "axis_labels", None) or ()))
    if (len(labels) == len(shape) >= 2 and set(labels) <= set("TCZYX") and len(set(labels)) == len(labels)
            and labels.endswith("YX")):
        return labels
    scale = tuple(float(v) for v in layer.scale)
    if len(shape) == 3 and scale[0] != scale[1] and scale[1] == scale[2]:
        return "ZYX"
    try:
        return default_axes(shape)
    except DataError:
        # 3D data ending in 3 or 4 is a stack of tiny images or RGB-like; still a stack
        if len(shape) == 3:
            return "SYX"
        return ("STZC"[: len(shape) - 2] if len(shape) <= 6 else "") + "YX"


def unique_name(viewer, name: str) -> str:
    """``name``, or ``name [2]``, ``name [3]``... whichever no layer has yet."""
    existing = {layer.name for layer in viewer.layers}
    if name not in existing:
        return name
    k = 2
    while f"{name} [{k}]" in existing:
        k += 1
    return f"{name} [{k}]"


def contrast(data: np.ndarray) -> tuple[float, float]:
    """Contrast limits from the 0.1 and 99.9 percentiles of (a subsample of) ``data``."""
    flat = np.asarray(data).ravel()
    step = max(1, flat.size // 1_000_000)
    lo, hi = np.percentile(flat[::step], [0.1, 99.9])
    lo, hi = float(lo), float(hi)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        lo, hi = float(np.nanmin(flat)), float(np.nanmax(flat))
        if hi <= lo:
            hi = lo + 1.0
    return lo, hi


def _model_facts(model: DecoNoisingModel | ChannelModels) -> dict:
    if isinstance(model, ChannelModels):
        return {"model_summary": model.summary(), "channels": [_model_facts(m) for m in model.models]}
    return {
        "model_summary": model.summary(),
        "config": model.config.to_dict(),
        "psf_shape": None if model.psf is None else list(model.psf.shape),
        "normalisation": {"mean": float(model.mean), "std": float(model.std)},
        "epochs_trained": len(model.history),
    }


def provenance(
    model: DecoNoisingModel | ChannelModels, source: Layer, role: str, model_name: str | None, axes: str, **extra
) -> dict:
    """What produced a result layer, stored in ``layer.metadata`` (per channel for a
    model per channel)."""
    return {
        "role": role,
        "source_layer": source.name,
        # names change and repeat; the compare command finds the source by this id
        "source_id": str(source.unique_id),
        "axes": axes,
        "model_name": model_name,
        **_model_facts(model),
        "software": f"napari-deconoising {__version__}",
        **extra,
    }


def add_result_layers(
    viewer,
    source: Image,
    denoised: np.ndarray,
    deconvolved: np.ndarray,
    model: DecoNoisingModel | ChannelModels,
    model_name: str | None,
    axes: str,
    **extra,
) -> tuple[Image, Image]:
    """Add ``<name> denoised`` and ``<name> deconvolved`` next to ``source``.

    The new layers take the source's scale, translate and colormap, get contrast
    limits from their own data, and never replace an existing layer.
    """
    out = []
    for role, data in (("denoised", denoised), ("deconvolved", deconvolved)):
        meta = dict(source.metadata) if isinstance(source.metadata, dict) else {}
        meta.pop(PROVENANCE_KEY, None)
        meta[PROVENANCE_KEY] = provenance(model, source, role, model_name, axes, **extra)
        layer = viewer.add_image(
            data,
            name=unique_name(viewer, f"{source.name} {role}"),
            scale=source.scale,
            translate=source.translate,
            colormap=source.colormap,
            contrast_limits=contrast(data),
            blending=source.blending,
            metadata=meta,
        )
        out.append(layer)
    return out[0], out[1]
