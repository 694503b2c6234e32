"""Finding what to compare (``_widgets/_compare.py``): a result's raw image is found by identity, not by name."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gui]

pytest.importorskip("napari")

from napari_deconoising._widgets import ApplyWidget  # noqa: E402
from napari_deconoising._widgets._compare import (  # noqa: E402
    compare_command,
    find_result_layers,
    find_source_layer,
    is_comparing,
)
from napari_deconoising._widgets._layers import PROVENANCE_KEY  # noqa: E402


@pytest.fixture
def applied(make_napari_viewer, fresh_registry, trained, sample, sync_workers, notifications):
    """A viewer with 'raw' and its results 'raw denoised' / 'raw deconvolved'."""
    viewer = make_napari_viewer()
    raw = viewer.add_image(sample.noisy, name="raw")
    widget = ApplyWidget(viewer)
    widget.select_model(trained, "tiny")
    widget.form.image.value = raw
    assert widget.run() and not notifications["error"], notifications["error"]
    return viewer, raw


def _visible(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if layer.visible]


def test_a_renamed_raw_layer_is_still_the_one_compared(applied, notifications):
    viewer, raw = applied
    den, dec = viewer.layers["raw denoised"], viewer.layers["raw deconvolved"]
    raw.name = "raw renamed"
    impostor = viewer.add_image(np.ones_like(raw.data), name="raw")  # takes the old name
    viewer.layers.selection.active = den
    assert find_result_layers(viewer) == (raw, den, dec)
    viewer.layers.selection.active = raw  # a raw layer selected: its latest result
    assert find_result_layers(viewer) == (raw, den, dec)
    compare_command(viewer)
    assert is_comparing(viewer) and _visible(viewer) == ["raw renamed", "raw denoised", "raw deconvolved"]
    assert not impostor.visible
    compare_command(viewer)
    assert not is_comparing(viewer)


def test_the_name_is_a_fallback_only_when_the_raw_layer_is_gone(applied, notifications):
    viewer, raw = applied
    den = viewer.layers["raw denoised"]
    meta = den.metadata[PROVENANCE_KEY]
    viewer.layers.remove(raw)
    viewer.layers.selection.active = den
    assert find_result_layers(viewer)[0] is None
    compare_command(viewer)  # the results only, and why
    assert _visible(viewer) == ["raw denoised", "raw deconvolved"]
    assert "('raw') is no longer in the viewer" in notifications["info"][-1]
    compare_command(viewer)
    reopened = viewer.add_image(raw.data, name="raw")  # e.g. the same file opened again
    assert find_source_layer(viewer, meta) is reopened
    # a result without the id (made before it was stored) is matched by its name alone
    assert find_source_layer(viewer, {k: v for k, v in meta.items() if k != "source_id"}) is reopened
    assert find_source_layer(viewer, {"source_layer": "nowhere"}) is None
