"""Units of a pixel size: the names files use for them, and conversion to micrometres.

Our name for a unit is OME-NGFF's (the UDUNITS-2 name, e.g. ``"micrometer"``), as an
OME-Zarr image stores it. TIFF metadata spell them differently: ImageJ writes ``um``,
``micron`` or an escaped ``\\u00B5m``, OME-XML the symbol ``µm``. Units this module does
not know are kept as the file spelt them (they are carried from input to output as they
are) but cannot be converted.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["normalize_unit", "micrometres_per", "time_symbol", "lengths_nm", "sampling_mismatch"]

# NGFF length units used in microscopy -> micrometres per unit.
_LENGTHS = {"angstrom": 1e-4, "picometer": 1e-6, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3,
            "centimeter": 1e4, "meter": 1e6, "inch": 25400.0}
_TIMES = {"nanosecond", "microsecond", "millisecond", "second", "minute", "hour"}
# Symbols are case-sensitive ("Mm" is not "mm"); ImageJ escapes non-ASCII letters as \uXXXX.
_SYMBOLS = {
    "A": "angstrom", "Å": "angstrom", "\\u00C5": "angstrom", "pm": "picometer", "nm": "nanometer",
    "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "\\u00B5m": "micrometer",
    "\\u00b5m": "micrometer", "mm": "millimeter", "cm": "centimeter", "m": "meter", "in": "inch",
    "ns": "nanosecond", "us": "microsecond", "µs": "microsecond", "μs": "microsecond", "\\u00B5s": "microsecond",
    "\\u00b5s": "microsecond", "ms": "millisecond", "s": "second", "sec": "second", "min": "minute", "h": "hour",
}
# Our time units as ImageJ's ``tunit`` spells them (ASCII: its description is), and as OME-XML does.
_IMAGEJ_TIMES = {"nanosecond": "ns", "microsecond": "us", "millisecond": "ms", "second": "sec", "minute": "min",
                 "hour": "hour"}
_OME_TIMES = {"nanosecond": "ns", "microsecond": "µs", "millisecond": "ms", "second": "s", "minute": "min",
              "hour": "h"}
_WORDS = {"micron": "micrometer", "microns": "micrometer", **{n.replace("meter", "metre"): n for n in _LENGTHS}}
# What ImageJ and OME write for "no physical unit".
_NO_UNIT = {"", "pixel", "pixels", "px", "reference frame"}


def normalize_unit(unit: object) -> str | None:
    """Our (NGFF) name for a unit as a file spells it; ``None`` for none or "pixel".

    Examples
    --------
    >>> normalize_unit("um"), normalize_unit("µm"), normalize_unit("pixel")
    ('micrometer', 'micrometer', None)
    """
    if not isinstance(unit, str) or unit.strip().lower() in _NO_UNIT:
        return None
    symbol = unit.strip()
    if symbol in _SYMBOLS:
        return _SYMBOLS[symbol]
    word = symbol.lower()
    if word in _LENGTHS or word in _TIMES:
        return word
    return _WORDS.get(word, symbol)


def micrometres_per(unit: str | None) -> float | None:
    """How many micrometres one ``unit`` is; ``None`` for an unknown or missing unit."""
    return _LENGTHS.get(normalize_unit(unit) or "")


def time_symbol(unit: str, ome: bool = False) -> str | None:
    """How ImageJ (or, with ``ome``, OME-XML) writes the time ``unit`` (our name or a file's spelling).

    ImageJ takes any word, so a unit it has no symbol for is written as it is; OME-XML
    only knows its own symbols, so there it is ``None``.
    """
    name = normalize_unit(unit)
    return (_OME_TIMES if ome else _IMAGEJ_TIMES).get(name or "", None if ome else unit)


def lengths_nm(axes: str, scale: Sequence[float] | None, units: Sequence[str | None] | None) -> dict[str, float]:
    """The pixel size in nm of each axis of ``axes`` (Z, Y, X) whose unit is a known length."""
    if scale is None or units is None:
        return {}
    out = {}
    for a, s, u in zip(axes, scale, units):
        factor = micrometres_per(u)
        if a in "ZYX" and factor is not None:
            out[a] = 1000.0 * float(s) * factor
    return out


def sampling_mismatch(psf_nm: dict[str, float], image_nm: dict[str, float], tolerance: float = 0.05) -> str | None:
    """How a PSF's sampling differs from the image's (``"Y 65 nm against 100 nm, ..."``), or None.

    Both are :func:`lengths_nm`; only the axes both know are compared. A PSF is a kernel in
    pixels: measured or computed at another pixel size, its width in pixels is wrong for the image.
    """
    diff = [f"{a} {psf_nm[a]:.4g} nm against {image_nm[a]:.4g} nm" for a in "ZYX"
            if a in psf_nm and a in image_nm and abs(psf_nm[a] - image_nm[a]) > tolerance * image_nm[a]]
    return ", ".join(diff) or None
