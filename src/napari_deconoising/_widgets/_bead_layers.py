"""The bead widget's layers: the plane or stack to measure, its pixel size, and the result layers.

Kept apart from the dock widget so that reading a layer and adding the results can be
tested without the form, and the widget module stays small.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Layer, Points

from .. import __version__
from ..core import DataError
from ..core.beads import BeadPSF
from ..core.units import micrometres_per, normalize_unit
from ._layers import PROVENANCE_KEY, full_resolution, layer_shape, unique_name

__all__ = ["BEADS_ROLE", "PSF_ROLE", "BeadInput", "add_bead_layers", "bead_input", "check_bead_axes",
           "pixel_size_nm"]

#: ``metadata[PROVENANCE_KEY]["role"]`` of the layers this widget adds: a later measurement
#: replaces a layer only when it carries this mark (a user's layer of the same name stays).
PSF_ROLE = "PSF from beads"
BEADS_ROLE = "beads used"
# A unitless scale is taken as micrometres (what napari readers write); beyond this it is
# more likely nanometres or an arbitrary factor, so it does not count as a pixel size.
_MAX_UNITLESS_UM = 10.0


@dataclass(frozen=True)
class BeadInput:
    """What is measured: ``data`` (YX or ZYX) cut from ``layer`` at ``fixed`` indices.

    ``fixed`` has one entry per layer axis: the index of an axis that was cut (a channel,
    a time point, the Z plane shown for a 2D measurement), None for the axes kept in ``data``.
    """

    layer: Layer
    axes: str
    kept: str  # "YX" or "ZYX"
    data: np.ndarray
    fixed: tuple[int | None, ...]


def check_bead_axes(axes: str, shape: Sequence[int], name: str) -> None:
    """Raise DataError unless ``axes`` describe ``shape`` with Y and X last."""
    if len(axes) != len(shape):
        raise DataError(f"axes {axes!r} has {len(axes)} letters but layer '{name}' has {len(shape)} "
                        f"dimensions {tuple(shape)}")
    if set(axes) - set("STCZYX") or len(set(axes)) != len(axes) or not axes.endswith("YX"):
        raise DataError(f"axes {axes!r}: give each axis one letter of S, T, C, Z, Y, X, with Y and X last "
                        "(e.g. YX, ZYX, CZYX)")


def bead_input(layer: Image, axes: str, three_d: bool, channel: int, point: Sequence[float]) -> BeadInput:
    """The plane (or with ``three_d`` the stack) of ``layer`` to measure, as a copy.

    Parameters
    ----------
    layer : napari.layers.Image
    axes : str
        The layer's axes (checked with :func:`check_bead_axes`).
    three_d : bool
        Keep Z (the axes must have one).
    channel : int
        With a C axis: which channel, 1 = the first.
    point : sequence of float
        The viewer's position (``viewer.dims.point``, world coordinates): the other axes
        (S, T, and Z for a 2D measurement) are taken where the user is looking.
    """
    shape = layer_shape(layer)
    check_bead_axes(axes, shape, layer.name)
    kept = "ZYX" if three_d else "YX"
    if three_d and "Z" not in axes:
        raise DataError(f"a 3D measurement needs a Z axis; layer '{layer.name}' has axes {axes}")
    if "C" in axes and not 1 <= channel <= shape[axes.index("C")]:
        raise DataError(f"channel {channel}: layer '{layer.name}' has channels 1..{shape[axes.index('C')]}")
    # world -> data coordinates, so the plane is the one shown even with a scale or translate
    here = np.asarray(layer.world_to_data(point), dtype=float)[-len(shape):]
    fixed: list[int | None] = []
    for k, a in enumerate(axes):
        if a in kept:
            fixed.append(None)
        elif a == "C":
            fixed.append(channel - 1)
        else:
            fixed.append(int(np.clip(round(float(here[k])), 0, shape[k] - 1)))
    index = tuple(slice(None) if i is None else i for i in fixed)
    # a copy: the worker thread never shares memory the user can edit (and a dask slice is read here)
    data = np.array(full_resolution(layer)[index], copy=True)
    return BeadInput(layer, axes, kept, data, tuple(fixed))


def pixel_size_nm(layer: Layer, axes: str, kept: str) -> tuple[tuple[float, ...] | None, str]:
    """The pixel size in nm along each axis of ``kept``, from the layer's scale and units.

    A length unit (napari >= 0.6 layers have ``units``) is converted; a layer without one
    whose Y/X scale is not 1 is read as micrometres, the convention of napari's readers.
    Returns ``(None, why)`` when there is no physical pixel size, else ``(sizes, text)``.
    """
    scale = [float(s) for s in layer.scale]
    units = [normalize_unit(str(u)) for u in (getattr(layer, "units", None) or ())]
    units = units if len(units) == len(scale) else [None] * len(scale)
    has_units = any(micrometres_per(u) is not None for u in units)
    sizes = []
    for a in kept:
        k = axes.index(a)
        per_um = micrometres_per(units[k]) if has_units else 1.0
        if per_um is None:
            return None, f"the layer gives no length unit for axis {a}"
        sizes.append(1000.0 * scale[k] * per_um)
    yx = [scale[axes.index(a)] for a in "YX"]
    if not has_units and (yx == [1.0, 1.0] or max(yx) > _MAX_UNITLESS_UM):
        return None, ("not known: the layer's scale is 1 (pixels)" if yx == [1.0, 1.0] else
                      f"not known: the layer's scale {tuple(yx)} has no unit")
    text = " × ".join(f"{s:.4g}" for s in sizes) + " nm" + ("" if has_units else " (scale read as µm)")
    return tuple(sizes), text


def _provenance(role: str, inp: BeadInput, result: BeadPSF, settings: dict) -> dict:
    return {PROVENANCE_KEY: {
        "role": role,
        "source_layer": inp.layer.name,
        "axes": inp.kept,
        "source_index": list(inp.fixed),  # None: a kept axis
        "sigma_px": [float(s) for s in result.sigma],
        "sigma_measured_px": [float(s) for s in result.sigma_measured],
        "n_beads": result.n_beads,
        "box": list(result.box),
        "rejected": dict(result.rejected),
        **settings,
        "software": f"napari-deconoising {__version__}",
    }}


def _ours(viewer, name: str, role: str, kind: type) -> Layer | None:
    """The layer this widget made under ``name`` (or ``name [k]``, when a user's layer had the name)."""
    for layer in viewer.layers:
        meta = (layer.metadata or {}).get(PROVENANCE_KEY)
        if (isinstance(layer, kind) and isinstance(meta, dict) and meta.get("role") == role
                and re.fullmatch(re.escape(name) + r"( \[\d+\])?", layer.name)):
            return layer
    return None


def _place(viewer, old: Layer | None, new: Layer) -> Layer:
    """Add ``new`` (where ``old`` was, which it replaces)."""
    if old is None:
        viewer.layers.append(new)
        return new
    at = viewer.layers.index(old)
    viewer.layers.remove(old)
    viewer.layers.insert(at, new)
    return new


def _beside(inp: BeadInput, psf_shape: tuple[int, ...]) -> list[float]:
    """Where the PSF layer goes: just right of the bead image, at its top (and mid-stack in Z).

    At the world origin, with the source's pixel size, it would cover a corner of the bead image.
    """
    src, shape = inp.layer, layer_shape(inp.layer)
    out = []
    for j, a in enumerate(inp.kept):
        k = inp.axes.index(a)
        step = {"X": shape[k] + 2, "Z": (shape[k] - psf_shape[j]) / 2}.get(a, 0)  # Y: top-aligned
        out.append(float(src.translate[k]) + step * float(src.scale[k]))
    return out


def _units(layer: Layer) -> list | None:
    """The layer's units per axis (napari >= 0.6), None where layers have none."""
    units = getattr(layer, "units", None)
    return None if units is None else [str(u) for u in units]


def _label(inp: BeadInput) -> str:
    parts = [inp.layer.name]
    if "C" in inp.axes:
        parts.append(f"channel {inp.fixed[inp.axes.index('C')] + 1}")
    if "Z" in inp.axes:
        parts.append("3D" if inp.kept == "ZYX" else "2D")
    return ", ".join(parts)


def add_bead_layers(viewer, inp: BeadInput, result: BeadPSF, settings: dict) -> tuple[Image, Points]:
    """Add (or renew) ``PSF from beads (<source>)`` and ``Beads used (<source>)``.

    ``<source>`` is the layer's name, with the channel and 2D/3D where the layer could give
    another PSF (one per channel, a plane or the stack), so that one does not replace another.

    The PSF layer holds ``result.psf`` with the source's pixel size (for the scale bar), beside
    the source; the points sit on the beads that were averaged, in the source's coordinates,
    each drawn as its box. A layer of those names is renewed only when this widget made it;
    a user's layer keeps its name and data, and the result gets a new name.
    """
    src = inp.layer
    label = _label(inp)
    psf_name, beads_name = f"{PSF_ROLE} ({label})", f"Beads used ({label})"
    placed = {"scale": [src.scale[inp.axes.index(a)] for a in inp.kept], "translate": _beside(inp, result.psf.shape)}
    units = _units(src)  # the scale's units (napari >= 0.6): the scale bar and the Train widget's check read them
    if units is not None:
        placed["units"] = [units[inp.axes.index(a)] for a in inp.kept]
    psf_meta = _provenance(PSF_ROLE, inp, result, settings)
    old = _ours(viewer, psf_name, PSF_ROLE, Image)
    if old is not None and old.ndim == result.psf.ndim:  # in place: a Train picker that shows it keeps it
        old.data, old.metadata, old.scale, old.translate = result.psf, psf_meta, placed["scale"], placed["translate"]
        if units is not None:
            old.units = placed["units"]
        old.reset_contrast_limits()
        psf = old
    else:
        psf = _place(viewer, old, Image(result.psf, name=old.name if old else unique_name(viewer, psf_name),
                                        colormap="magma", metadata=psf_meta, **placed))
    # bead centres in the source layer's data coordinates: the cut axes at their index
    points = np.zeros((result.n_beads, len(inp.fixed)))
    for k, i in enumerate(inp.fixed):
        points[:, k] = result.positions[:, inp.kept.index(inp.axes[k])] if i is None else i
    features = {f"sigma_{a.lower()}": result.bead_sigmas[:, j] for j, a in enumerate(inp.kept)}
    old = _ours(viewer, beads_name, BEADS_ROLE, Points)
    beads = _place(viewer, old, Points(
        points, name=old.name if old else unique_name(viewer, beads_name), scale=src.scale,
        translate=src.translate, **({} if units is None else {"units": units}), symbol="square",
        size=float(max(result.box[-2:])), face_color="transparent",
        border_color="yellow", features=features,
        metadata=_provenance(BEADS_ROLE, inp, result, settings)))
    return psf, beads
