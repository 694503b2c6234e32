"""Raw, denoised and deconvolved side by side (napari grid mode), and back."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Layer
from napari.viewer import Viewer

from ..core import psnr
from ._layers import PROVENANCE_KEY, full_resolution
from ._notify import info, warning

__all__ = [
    "CompareState",
    "toggle_compare",
    "is_comparing",
    "compare_psnr",
    "compare_command",
    "find_result_layers",
    "find_source_layer",
]


@dataclass
class CompareState:
    """What to restore: grid settings and every layer's visibility and order."""

    grid_enabled: bool
    grid_shape: tuple[int, int]
    grid_stride: int
    visible: dict[int, bool]  # id(layer) -> visible
    order: list[int]  # id(layer) in list order
    shown: tuple[int, ...]  # id of the layers this comparison shows


# One saved layout per viewer, dropped with the viewer.
_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _unwrap(viewer):
    """The real viewer behind napari's PublicOnlyProxy (what plugin commands receive),
    so the saved layout and layer identities match between calls."""
    return getattr(viewer, "__wrapped__", viewer)


def is_comparing(viewer) -> bool:
    return _unwrap(viewer) in _STATES


def toggle_compare(viewer, layers: list[Layer]) -> bool:
    """Show ``layers`` side by side in grid mode, or restore the previous layout.

    Returns True if the comparison is now shown, False if the layout was restored.
    """
    viewer = _unwrap(viewer)
    layers = [getattr(layer, "__wrapped__", layer) for layer in layers]
    if viewer in _STATES:
        restore_layout(viewer)
        return False
    layers = [layer for layer in layers if layer is not None and layer in viewer.layers]
    if not layers:
        warning("Nothing to compare yet: train a model or apply one first.")
        return False
    grid = _grid(viewer)
    state = CompareState(
        grid_enabled=bool(grid.enabled),
        grid_shape=tuple(grid.shape),
        grid_stride=int(grid.stride),
        visible={id(layer): bool(layer.visible) for layer in viewer.layers},
        order=[id(layer) for layer in viewer.layers],
        shown=tuple(id(layer) for layer in layers),
    )
    _STATES[viewer] = state
    for layer in viewer.layers:
        layer.visible = False
    for layer in layers:
        layer.visible = True
    # Grid cells follow list order (stride 1: index 0 is the first cell; hidden layers
    # take no cell), so raw | denoised | deconvolved needs them in that order.
    indices = [viewer.layers.index(layer) for layer in layers]
    if indices != sorted(indices):
        for layer in layers:
            viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))
    grid.shape = (1, len(layers))
    grid.stride = 1
    grid.enabled = True
    viewer.reset_view()
    return True


def restore_layout(viewer) -> None:
    """Put back grid settings, visibility and layer order saved by :func:`toggle_compare`."""
    viewer = _unwrap(viewer)
    state: CompareState | None = _STATES.pop(viewer, None)
    if state is None:
        return
    by_id = {id(layer): layer for layer in viewer.layers}
    # original order first, then any layers added while comparing
    wanted = [by_id[i] for i in state.order if i in by_id]
    wanted += [layer for layer in viewer.layers if id(layer) not in state.visible]
    for target, layer in enumerate(wanted):
        current = viewer.layers.index(layer)
        if current != target:
            viewer.layers.move(current, target)
    for layer in viewer.layers:
        if id(layer) in state.visible:
            layer.visible = state.visible[id(layer)]
    grid = _grid(viewer)
    grid.enabled = state.grid_enabled
    grid.shape = state.grid_shape
    grid.stride = state.grid_stride
    viewer.reset_view()


def compare_psnr(truth: Layer | None, layers: dict[str, Layer | None]) -> dict[str, float]:
    """PSNR (dB) of each layer's data against the ground-truth layer, where shapes match."""
    if truth is None:
        return {}
    t = np.asarray(full_resolution(truth))
    out = {}
    for label, layer in layers.items():
        if layer is None:
            continue
        d = np.asarray(full_resolution(layer))
        if d.shape == t.shape:
            out[label] = psnr(t, d)
    return out


def find_source_layer(viewer, meta: dict) -> Layer | None:
    """The layer a result was computed from, given the result's provenance ``meta``.

    By the layer's napari id while that layer is in the viewer: a name is no identity (the
    user renames the raw layer, another layer takes its old name). Only when it is gone (or
    the result predates the id) by the recorded name, and only if exactly one layer has it.
    """
    wanted = meta.get("source_id")
    if wanted is not None:
        same = next((layer for layer in viewer.layers if str(layer.unique_id) == wanted), None)
        if same is not None:
            return same
    named = [layer for layer in viewer.layers if layer.name == meta.get("source_layer")]
    return named[0] if len(named) == 1 else None


def _run_key(meta: dict) -> tuple:
    """Results of one run from one source (a run per channel has a source per channel)."""
    return meta.get("run_id"), meta.get("source_id") or meta.get("source_layer")


def find_result_layers(viewer) -> tuple[Layer | None, Layer, Layer] | None:
    """Raw, denoised and deconvolved layers of the selected (or else latest) result.

    The raw layer is None when the image the result came from cannot be found (see
    :func:`find_source_layer`).
    """
    results = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image) and PROVENANCE_KEY in (layer.metadata or {})
        # a model's outputs, not other layers the plugin makes (a PSF measured from beads)
        and (layer.metadata[PROVENANCE_KEY] or {}).get("role") in ("denoised", "deconvolved")
    ]
    if not results:
        return None
    active = viewer.layers.selection.active
    pick = None
    if any(r is active for r in results):
        pick = active
    elif active is not None:  # a raw image: its latest result
        pick = next((r for r in reversed(results) if find_source_layer(viewer, r.metadata[PROVENANCE_KEY]) is active),
                    None)
    pick = pick or results[-1]
    meta = pick.metadata[PROVENANCE_KEY]
    group = [r for r in results if _run_key(r.metadata[PROVENANCE_KEY]) == _run_key(meta)]
    den = next((r for r in group if r.metadata[PROVENANCE_KEY]["role"] == "denoised"), None)
    dec = next((r for r in group if r.metadata[PROVENANCE_KEY]["role"] == "deconvolved"), None)
    return find_source_layer(viewer, meta), den, dec


def compare_command(viewer: Viewer) -> None:
    """Menu command: compare the selected (or latest) result with its raw image, or go back."""
    viewer = _unwrap(viewer)
    if is_comparing(viewer):
        restore_layout(viewer)
        return
    found = find_result_layers(viewer)
    if found is None:
        info("No DecoNoising results yet: train a model or apply one first.")
        return
    raw, den, dec = found
    if raw is None:  # compare what there is, and say why the raw image is missing
        meta = (den or dec).metadata[PROVENANCE_KEY]
        info(f"The image these results came from ('{meta.get('source_layer')}') is no longer in the viewer: "
             "showing the results only.")
    toggle_compare(viewer, list(found))


def _grid(viewer):
    """``viewer.canvas.grid`` (napari >= 0.9), else the older ``viewer.grid``."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid
