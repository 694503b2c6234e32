"""TIFF metadata: the axes and pixel size of a file's first series, and how to write them.

Reading. tifffile names the axes (from ImageJ, OME-XML or its own JSON description);
:func:`tiff_axes` turns them into ours (see :mod:`.io`). :func:`tiff_pixel_size` takes the
pixel size from the OME-XML (``PhysicalSizeX/Y/Z`` and their units), or else from the
XResolution/YResolution tags (pixels per ResolutionUnit, or per ImageJ's ``unit`` when the
tag says none) and ImageJ's ``spacing`` for Z. The time between frames (T) is OME's
``TimeIncrement`` or ImageJ's ``finterval`` (in its ``tunit``, seconds by default).

Writing. :func:`tiff_write_options` gives ``tifffile.imwrite`` an ImageJ description
(``unit``, ``spacing``) and the resolution in pixels per unit where ImageJ can hold the
axes: that is what ImageJ itself writes, and what Fiji shows (through Bio-Formats for a
BigTIFF). Other axes get tifffile's JSON description and the resolution in pixels per
centimetre, which any TIFF reader converts. Lengths are written in micrometres because
Bio-Formats reads ImageJ's ``spacing`` as micrometres whatever the unit says. The frame
interval is written as it came, with its unit (``finterval``/``tunit``, ``TimeIncrement``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .units import micrometres_per, normalize_unit, time_symbol

__all__ = ["FROM_TIFF", "TO_TIFF", "tiff_axes", "tiff_pixel_size", "tiff_write_options"]

# tifffile's axis letters -> ours. tifffile's "S" means samples (RGB), ours means stack; planar samples
# of a file that names no axes are a stack after all (see tiff_axes).
FROM_TIFF = {"S": "C", "Q": "S", "I": "S", "T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X"}
# Ours -> tifffile's, for writing: our stack is tifffile's generic "Q".
TO_TIFF = {"S": "Q", "T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X"}

#: Pixel size per axis (``scale``) and the unit of each (``units``, NGFF names); ``(None, None)``
#: when the file gives none.
PixelSize = tuple[tuple[float, ...] | None, tuple[str | None, ...] | None]


def tiff_axes(tif: Any, series: Any) -> str:
    """Our axis letters for a tifffile series of ``tif``; ``""`` when they are ambiguous."""
    letters = series.axes
    if "S" in letters and _planes_without_axes(tif, series):
        # tifffile writes an unlabelled (3 or 4, Y, X) array as planar RGB(A) and reports its planes as
        # samples; nothing in the file says they are colours, so they are planes of a stack like any other.
        letters = letters.replace("S", "Q")
    axes = "".join(FROM_TIFF.get(a, "S") for a in letters)
    return axes if len(set(axes)) == len(axes) else ""  # e.g. two unknown axes both mapped to S


def _planes_without_axes(tif: Any, series: Any) -> bool:
    """Samples stored as separate planes, in a file whose metadata names no axes."""
    import tifffile

    if series.kind not in ("shaped", "uniform", "generic") or tif.is_imagej or tif.is_ome:
        return False
    if series.kind == "shaped" and "axes" in _shaped(tif):
        return False
    return series.keyframe.planarconfig == tifffile.PLANARCONFIG.SEPARATE


def _shaped(tif: Any) -> dict[str, Any]:
    """tifffile's JSON description of the first series, ``{}`` if none."""
    meta = tif.shaped_metadata if tif.is_shaped else None
    return dict(meta[0]) if meta else {}


# -- pixel size, read --------------------------------------------------------------------


def tiff_pixel_size(tif: Any, series: Any, axes: str) -> PixelSize:
    """The pixel size of ``series`` per axis of ``axes`` (our letters), and its units.

    T gets the frame interval; axes without a size (C, S, a T without an interval) get
    1.0 and no unit. ``(None, None)`` when the axes are unknown or the file gives no
    pixel size (a resolution of 1 pixel per nothing, tifffile's default).
    """
    if not axes:
        return None, None
    try:
        sizes = _ome_sizes(tif.ome_metadata) if series.kind == "ome" else _tag_sizes(tif, series)
    except (ValueError, TypeError, SyntaxError):  # broken metadata (XML, numbers): no size, pixels still readable
        return None, None
    scale = tuple(sizes[a][0] if a in sizes else 1.0 for a in axes)
    units = tuple(sizes[a][1] if a in sizes else None for a in axes)
    if all(s == 1.0 for s in scale) and not any(units):
        return None, None
    return scale, units


def _ome_sizes(xml: str | None) -> dict[str, tuple[float, str | None]]:
    from xml.etree import ElementTree

    if not xml:
        return {}
    # Series 0 is the first Image; the namespace changes with the OME schema's version.
    pixels = next((el for el in ElementTree.fromstring(xml).iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    sizes: dict[str, tuple[float, str | None]] = {}
    for a in "XYZ" if pixels is not None else "":
        value = pixels.get(f"PhysicalSize{a}")
        if value and float(value) > 0:  # µm is OME's default unit
            sizes[a] = (float(value), normalize_unit(pixels.get(f"PhysicalSize{a}Unit", "µm")))
    interval = pixels.get("TimeIncrement") if pixels is not None else None
    if interval and float(interval) > 0:  # seconds is OME's default unit
        sizes["T"] = (float(interval), normalize_unit(pixels.get("TimeIncrementUnit", "s")))
    return sizes


def _tag_sizes(tif: Any, series: Any) -> dict[str, tuple[float, str | None]]:
    import tifffile

    page = series.keyframe
    meta = tif.imagej_metadata or _shaped(tif)
    unit = meta.get("unit")
    if page.resolutionunit == tifffile.RESUNIT.NONE:  # pixels per ImageJ's unit, if any
        (x, y), xunit, yunit = page.resolution, normalize_unit(unit), normalize_unit(meta.get("yunit", unit))
    elif page.resolutionunit == tifffile.RESUNIT.INCH:  # a printing resolution (72 dpi), not a size in the sample
        x = y = 0.0
    else:  # centimetre, millimetre, micrometre
        (x, y), xunit = page.get_resolution(tifffile.RESUNIT.MICROMETER), "micrometer"
        yunit = xunit
    sizes: dict[str, tuple[float, str | None]] = {}
    if x > 0 and y > 0:
        sizes.update(X=(1 / x, xunit), Y=(1 / y, yunit))
    spacing = meta.get("spacing")
    if isinstance(spacing, int | float) and spacing > 0:
        sizes["Z"] = (float(spacing), normalize_unit(meta.get("zunit", unit)))
    elif tif.is_imagej and int(meta.get("slices", 1) or 1) > 1 and micrometres_per(normalize_unit(unit)):
        # ImageJ leaves "spacing" out when the Z step is 1 (its default): a stack calibrated in
        # micrometres without it has 1 µm planes, not uncalibrated ones
        sizes["Z"] = (1.0, normalize_unit(meta.get("zunit", unit)))
    interval = meta.get("finterval")
    if isinstance(interval, int | float) and interval > 0:  # ImageJ's time unit is "sec" unless it says
        sizes["T"] = (float(interval), normalize_unit(meta.get("tunit", "sec")))
    return sizes


# -- pixel size, written -----------------------------------------------------------------


def tiff_write_options(axes: str, shape: Sequence[int], dtype: Any, scale: Sequence[float] | None = None,
                       units: Sequence[str | None] | None = None, ome: bool = False) -> dict[str, Any]:
    """Keyword arguments of ``tifffile.imwrite`` that store our ``axes`` and the pixel size.

    Parameters
    ----------
    axes : str
        Our axis letters (``""``: not stored).
    shape, dtype : sequence of int, dtype
        The image's, to know whether ImageJ can hold it.
    scale, units : sequence, optional
        Pixel size per axis and its unit (NGFF names, ``None`` for unknown).
    ome : bool
        Write OME-XML (``PhysicalSizeX/Y/Z`` in µm where the units convert) instead of an
        ImageJ or tifffile description: for ``.ome.tif`` names.

    Returns
    -------
    dict
        ``metadata`` and, with a pixel size or frame interval, ``resolution``,
        ``resolutionunit`` and ``imagej``.
    """
    metadata: dict[str, Any] = {"axes": "".join(TO_TIFF.get(a, "Q") for a in axes)} if axes else {}
    lengths, in_um = _lengths(axes, scale, units) if axes and scale is not None else ({}, False)
    interval, tunit = _interval(axes, scale, units)
    if ome:  # OME's lengths have units; without one that converts, the pixel size is left out
        sizes = {f"PhysicalSize{a}": v for a, v in lengths.items()} if in_um else {}
        sizes = {**sizes, **{f"{k}Unit": "µm" for k in sizes}}
        if interval is not None and (tunit is None or time_symbol(tunit, ome=True)):  # seconds unless it says
            sizes["TimeIncrement"] = interval
            sizes.update({"TimeIncrementUnit": time_symbol(tunit, ome=True)} if tunit else {})
        return {"ome": True, "metadata": {**metadata, **sizes}}
    if not in_um and all(v == 1.0 for v in lengths.values()) and interval is None:
        return {"metadata": metadata}
    if interval is not None:  # ImageJ's key names; tifffile keeps them in its JSON description too
        metadata["finterval"] = interval
        metadata.update({"tunit": time_symbol(tunit)} if tunit else {})
    if "Z" in lengths:
        metadata["spacing"] = lengths["Z"]
    if in_um:
        metadata["unit"] = "um"  # ImageJ's spelling; it shows µm
    x, y = lengths.get("X", 1.0), lengths.get("Y", 1.0)
    if _imagej_holds(axes, shape, dtype):
        return {"imagej": True, "metadata": metadata, "resolution": (1 / x, 1 / y), "resolutionunit": "NONE"}
    if in_um:
        return {"metadata": metadata, "resolution": (1e4 / x, 1e4 / y), "resolutionunit": "CENTIMETER"}
    return {"metadata": metadata, "resolution": (1 / x, 1 / y), "resolutionunit": "NONE"}


def _lengths(axes: str, scale: Sequence[float], units: Sequence[str | None] | None) -> tuple[dict[str, float], bool]:
    """X, Y, Z pixel sizes: in micrometres (and True) when every unit converts, else as given."""
    units = units or (None,) * len(axes)
    found = {a: (float(s), micrometres_per(u)) for a, s, u in zip(axes, scale, units) if a in "XYZ"}
    if found and all(f is not None for _, f in found.values()):
        return {a: s * f for a, (s, f) in found.items()}, True
    return {a: s for a, (s, _) in found.items()}, False


def _interval(axes: str, scale: Sequence[float] | None, units: Sequence[str | None] | None,
              ) -> tuple[float | None, str | None]:
    """The time between frames (T) and its unit; ``(None, None)`` when the file gave none."""
    if "T" not in axes or scale is None:
        return None, None
    k = axes.index("T")
    unit = (units or (None,) * len(axes))[k]
    keep = scale[k] > 0 and (scale[k] != 1.0 or unit)  # 1 without a unit: tifffile's default, no interval
    return (float(scale[k]), unit) if keep else (None, None)


def _imagej_holds(axes: str, shape: Sequence[int], dtype: Any) -> bool:
    """ImageJ stores T, Z, C (in that order) of Y X planes, 8/16-bit or float32, and drops axes of length 1
    (the file would read back with fewer axes than it was written with)."""
    order = "TZCYX"
    return (axes.endswith("YX") and set(axes) <= set(order) and list(axes) == sorted(axes, key=order.index)
            and all(n > 1 for a, n in zip(axes, shape) if a not in "YX")
            and np.dtype(dtype) in (np.uint8, np.uint16, np.float32))
