"""OME-Zarr images: the NGFF ``multiscales`` metadata, read and written with zarr.

We write OME-NGFF 0.4 (zarr format 2), which napari, Fiji/MoBIE, the ``ome-zarr``
library and older readers all open, and we read 0.4 and 0.5 (zarr format 3, metadata
under ``"ome"``). Only level 0 of a multiscale image is used: prediction needs full
resolution, and a one-level image is a valid multiscale image.

Axis letters are ours (see :mod:`.io`); NGFF names them ``t``, ``c``, ``z``, ``y``,
``x``, and our stack axis ``S`` becomes a custom axis ``s`` (NGFF allows one, in the
channel's place).

The pixel size travels as level 0's ``scale`` transformation and each axis' ``unit``
(NGFF names such as ``"micrometer"``, see :mod:`.units`), the image's origin as its
``translation`` (where the image sits in a viewer's world, e.g. a tile of a MoBIE project).

A bioformats2raw container (the default output of bioformats2raw and NGFF-Converter: a
group marked ``bioformats2raw.layout`` holding one image per series in groups ``0``,
``1``, ... and the OME-XML under ``OME/``) opens as its series 0; ``container.zarr/1``
names series 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["NGFF_VERSION", "ngff_axes", "multiscales_metadata", "read_ome_zarr", "ZarrImage", "open_ome_zarr",
           "open_zarr_level0", "create_ome_zarr"]

NGFF_VERSION = "0.4"

_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
# NGFF order: time, then channel or one custom axis, then space.
_RANK = {"T": 0, "C": 1, "S": 1, "Q": 1, "Z": 2, "Y": 3, "X": 4}


def ngff_axes(axes: str, units: Sequence[str | None] | None = None) -> list[dict[str, str]]:
    """NGFF ``axes`` entries for our axis letters, with the unit of each space and time axis in ``units``.

    Raises
    ------
    ValueError
        The letters are not in NGFF's order (time, channel or stack, space) or hold
        both a channel and a stack axis, which NGFF cannot describe.
    """
    ranks = [_RANK[a] for a in axes]
    if ranks != sorted(ranks) or len(set(ranks)) != len(ranks) or not {"Y", "X"} <= set(axes):
        raise ValueError(f"axes {axes!r} cannot be stored as OME-Zarr, which needs the order T, C (or S), Z, Y, X; "
                         "write a TIFF instead or reorder the image")
    out = []
    for a, unit in zip(axes, units or [None] * len(axes)):
        entry = {"name": a.lower()}
        if a in _TYPES:
            entry["type"] = _TYPES[a]
        if unit and entry.get("type") in ("space", "time"):  # NGFF gives units to these alone
            entry["unit"] = unit
        out.append(entry)
    return out


def multiscales_metadata(axes: str, scale: Sequence[float] | None = None, name: str = "",
                         units: Sequence[str | None] | None = None,
                         translation: Sequence[float] | None = None) -> dict[str, Any]:
    """The ``multiscales`` attribute of a one-level OME-Zarr image whose level 0 is array ``"0"``,
    at the origin ``translation`` (per axis, in the units of ``scale``) where one is given."""
    scale = [1.0] * len(axes) if scale is None else [float(s) for s in scale]
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
    if translation is not None and any(translation):  # NGFF: at most one, after the scale
        transforms.append({"type": "translation", "translation": [float(t) for t in translation]})
    return {"multiscales": [{
        "version": NGFF_VERSION,
        "name": name,
        "axes": ngff_axes(axes, units),
        "datasets": [{"path": "0", "coordinateTransformations": transforms}],
    }]}


def _letters(ngff: list[Any]) -> str:
    letters = []
    for ax in ngff:
        name = (ax["name"] if isinstance(ax, dict) else str(ax)).lower()
        kind = ax.get("type") if isinstance(ax, dict) else None
        if kind == "time" or name == "t":
            letters.append("T")
        elif kind == "channel" or name == "c":
            letters.append("C")
        elif name in ("z", "y", "x"):
            letters.append(name.upper())
        else:
            letters.append("S")
    return "".join(letters) if len(set(letters)) == len(letters) else ""


def _multiscales(attrs: dict[str, Any]) -> dict[str, Any] | None:
    if "ome" in attrs and "multiscales" in attrs["ome"]:  # NGFF 0.5
        return attrs["ome"]["multiscales"][0]
    if "multiscales" in attrs:  # NGFF 0.4 and earlier
        return attrs["multiscales"][0]
    return None


def _layout_version(attrs: dict[str, Any]) -> Any:
    """The ``bioformats2raw.layout`` mark of a container's top group (under ``"ome"`` in zarr format 3)."""
    ome = attrs.get("ome")
    return attrs.get("bioformats2raw.layout", ome.get("bioformats2raw.layout") if isinstance(ome, dict) else None)


def _series(node: Any) -> list[str]:
    """The image groups of a bioformats2raw container, in series order.

    The ``OME`` group's ``series`` attribute lists them where present; else they are
    the consecutively numbered groups ``0``, ``1``, ... (the layout's rule).
    """
    try:
        attrs = dict(node["OME"].attrs)
    except KeyError:
        attrs = {}
    listed = attrs.get("series", (attrs.get("ome") or {}).get("series"))
    if listed:
        return [str(s) for s in listed]
    found = []
    while str(len(found)) in node:
        found.append(str(len(found)))
    return found


def _image_group(node: Any, path: str | Path) -> tuple[Any, str]:
    """The group holding the image's ``multiscales`` and its path in the store: ``node`` itself, or
    series 0 of a bioformats2raw container (with a warning when it holds several)."""
    if _multiscales(dict(node.attrs)) is not None or _layout_version(dict(node.attrs)) is None:
        return node, ""
    series = _series(node)
    if not series:
        raise ValueError("a bioformats2raw container without images (no series group '0')")
    if len(series) > 1:
        from .data import DataWarning

        name = str(path).rstrip("/")
        warnings.warn(f"{name} holds {len(series)} images (bioformats2raw series); reading series "
                      f"{series[0]} (name {name}/{series[1]} to read the next)", DataWarning, stacklevel=3)
    return node[series[0]], f"{series[0]}/"


class ZarrImage(NamedTuple):
    """Level 0 of a zarr image, opened without reading pixels (see :func:`open_ome_zarr`)."""

    array: Any
    axes: str
    scale: tuple[float, ...] | None
    units: tuple[str | None, ...] | None
    key: str
    translation: tuple[float, ...] | None = None


def open_ome_zarr(path: str | Path) -> ZarrImage:
    """Open a zarr array (one level of an OME-Zarr image reads the image's metadata for it), or
    level 0 of an OME-Zarr image, without reading pixels.

    Returns
    -------
    ZarrImage
        ``array`` (zarr.Array, read-only); ``axes``, our letters from the OME metadata
        (or the array's dimension names), ``""`` when unknown; ``scale`` and
        ``translation``, level 0's pixel size and origin per axis (the dataset's and the
        multiscale's transformations combined), ``None`` when the metadata gives none (or
        a zero origin); ``units``, each axis' unit (NGFF names, ``None`` where none is
        given), ``None`` when no axis has one; ``key``, the array's path in the store
        (``""`` for a bare array, ``"0/0"`` for series 0 of a bioformats2raw container).

    Warns
    -----
    DataWarning
        A bioformats2raw container holds several images: series 0 is read.
    """
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        found = _level_of(path)
        if found is not None and len(found[0].get("axes", ())) == node.ndim:
            ms, level = found
            scale, translation = _transform(level, ms, node.ndim)
            return ZarrImage(node, _letters(ms["axes"]), scale, _units(ms["axes"]), "", translation)
        names = getattr(node.metadata, "dimension_names", None) or node.attrs.get("_ARRAY_DIMENSIONS")
        return ZarrImage(node, _letters(list(names)) if names else "", None, None, "")
    node, prefix = _image_group(node, path)
    ms = _multiscales(dict(node.attrs))
    if ms is None:
        raise ValueError("a zarr group without OME 'multiscales' metadata (not an OME-Zarr image)")
    level0 = ms["datasets"][0]
    array = node[level0["path"]]
    axes = _letters(ms["axes"]) if "axes" in ms else ""
    scale, translation = _transform(level0, ms, array.ndim)
    return ZarrImage(array, axes, scale, _units(ms.get("axes", [])), prefix + level0["path"], translation)


def _level_of(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(multiscales, dataset)`` of the image whose level the array at ``path`` is (``img.ome.zarr/0``,
    ``b2r.zarr/0/0``, ``img.zarr/s1``: the axes are the image's, not the array's), else ``None``."""
    import zarr

    p = Path(path).absolute()
    try:
        group = zarr.open_group(str(p.parent), mode="r")
    except (OSError, ValueError):  # not inside a zarr group (zarr's not-found errors are both)
        return None
    ms = _multiscales(dict(group.attrs))
    level = next((d for d in (ms or {}).get("datasets", []) if str(d.get("path")).strip("/") == p.name), None)
    return None if level is None else (ms, level)


def _transform(level0: dict[str, Any], ms: dict[str, Any], ndim: int
               ) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """A level's scale and translation: its dataset's, then the multiscale's (NGFF applies both)."""
    scale, shift, found = np.ones(ndim), np.zeros(ndim), set()
    for transforms in (level0.get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for tr in transforms:
            if tr.get("type") == "scale" and len(tr.get("scale", ())) == ndim:
                scale, shift = scale * tr["scale"], shift * tr["scale"]
                found.add("scale")
            elif tr.get("type") == "translation" and len(tr.get("translation", ())) == ndim:
                shift = shift + tr["translation"]
    return (tuple(float(s) for s in scale) if found else None,
            tuple(float(t) for t in shift) if shift.any() else None)


def open_zarr_level0(path: str | Path) -> tuple[Any, str, tuple[float, ...] | None, tuple[str | None, ...] | None,
                                                str]:
    """``(array, axes, scale, units, key)`` of :func:`open_ome_zarr` (without the translation)."""
    return tuple(open_ome_zarr(path))[:5]


def _units(ngff: list[Any]) -> tuple[str | None, ...] | None:
    from .units import normalize_unit

    units = tuple(normalize_unit(ax.get("unit")) if isinstance(ax, dict) else None for ax in ngff)
    return units if any(units) else None


def read_ome_zarr(path: Path) -> tuple[np.ndarray, str]:
    """Read a zarr array or level 0 of an OME-Zarr image into memory (the :data:`.io.FORMATS` reader)."""
    array, axes, *_ = open_zarr_level0(path)
    return np.asarray(array[...]), axes


def create_ome_zarr(path: str | Path, shape: Sequence[int], axes: str, *, dtype: Any = np.float32,
                    chunks: Sequence[int] | None = None, scale: Sequence[float] | None = None,
                    units: Sequence[str | None] | None = None, data: np.ndarray | None = None,
                    translation: Sequence[float] | None = None) -> Any:
    """Create a one-level OME-Zarr image at ``path`` (an empty or new folder) and return level 0.

    Parameters
    ----------
    path : str or Path
        The image folder; everything in it is replaced.
    shape, dtype : sequence of int, dtype
        Level 0's shape and dtype.
    axes : str
        Our axis letters, in NGFF order (see :func:`ngff_axes`).
    chunks : sequence of int, optional
        Chunk shape; one plane of at most 1024 x 1024 by default. Writers that fill the
        image tile by tile pass their tile shape so every tile writes whole chunks.
    scale : sequence of float, optional
        Pixel size per axis, carried over from the input.
    units : sequence of str or None, optional
        The unit of each axis (NGFF names such as ``"micrometer"``), stored on the space
        and time axes.
    data : numpy.ndarray, optional
        Pixels to write at once.
    translation : sequence of float, optional
        The image's origin per axis (in the units of ``scale``), carried over from the input.

    Returns
    -------
    zarr.Array
        Level 0, open for writing.
    """
    import zarr

    if chunks is None:
        chunks = tuple(1 if a not in "YX" else min(n, 1024) for a, n in zip(axes, shape))
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    # A writer's temporary name is ".<name>.zarr.<random>.zarr": the image is named after <name>.
    name = Path(path).name.lstrip(".").split(".")[0]
    root.attrs.update(multiscales_metadata(axes, scale, name=name, units=units, translation=translation))
    array = root.create_array("0", shape=tuple(shape), chunks=tuple(int(c) for c in chunks), dtype=dtype,
                              chunk_key_encoding={"name": "v2", "separator": "/"}, fill_value=0)
    if data is not None:
        array[...] = data
    return array


def write_ome_zarr(path: Path, data: np.ndarray, axes: str | None, *, scale: Sequence[float] | None = None,
                   units: Sequence[str | None] | None = None, translation: Sequence[float] | None = None) -> None:
    """Write an array as a one-level OME-Zarr image (the :data:`.io.FORMATS` writer), with its
    pixel size and origin where ``scale``, ``units`` and ``translation`` give them (see
    :func:`create_ome_zarr`)."""
    from .data import default_axes

    axes = axes or default_axes(data.shape)
    create_ome_zarr(path, data.shape, axes, dtype=data.dtype, data=data, scale=scale, units=units,
                    translation=translation)
