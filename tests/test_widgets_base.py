"""What both dock widgets share: pickers refreshed by napari, following new images."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gui]

pytest.importorskip("napari")

from napari_deconoising._widgets import ApplyWidget, TrainWidget  # noqa: E402
from napari_deconoising._widgets._layers import PROVENANCE_KEY  # noqa: E402


def _names(combo) -> list[str]:
    """The names the picker shows, sorted (their order: :func:`_order`)."""
    return sorted(combo.native.itemText(i) for i in range(combo.native.count()))


@pytest.fixture
def viewer(make_napari_viewer, fresh_registry):
    return make_napari_viewer()


@pytest.mark.parametrize("cls", [TrainWidget, ApplyWidget])
def test_napari_drives_the_pickers(viewer, cls):
    """add_dock_widget connects reset_choices to insert, remove, move and rename."""
    w = cls(viewer)
    viewer.window.add_dock_widget(w)
    a = viewer.add_image(np.zeros((16, 16), np.float32), name="a")
    viewer.add_labels(np.zeros((16, 16), np.int32), name="seg")
    assert _names(w.form.image) == ["a", "seg"]
    assert _names(w.truth_combo) == ["-----", "a"]  # no labels layers for ground truth
    a.name = "renamed"
    assert _names(w.form.image) == ["renamed", "seg"]
    assert "renamed" in _names(w.truth_combo)
    viewer.layers.remove(a)
    assert _names(w.form.image) == ["seg"]
    assert w.truth_combo.value is None


def test_new_raw_images_are_followed(viewer):
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    first = viewer.add_image(np.zeros((16, 16), np.float32), name="first")
    assert w.form.image.value is first
    viewer.add_image(np.zeros((16, 16), np.float32), name="hidden", visible=False)
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="photo", rgb=True)
    meta = {PROVENANCE_KEY: {"role": "denoised"}}
    viewer.add_image(np.zeros((16, 16), np.float32), name="result", metadata=meta)
    assert w.form.image.value is first  # the visible raw image the user has stays picked
    first.visible = False
    second = viewer.add_image(np.zeros((16, 16), np.float32), name="second")
    assert w.form.image.value is second  # the picked one was hidden


def test_a_removed_widget_ignores_later_layer_events(viewer):
    """napari keeps the reset_choices connection after the dock widget is removed."""
    w = ApplyWidget(viewer)
    viewer.window.add_dock_widget(w)
    viewer.window.remove_dock_widget(w)
    w.close()
    w.deleteLater()
    from qtpy.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    with pytest.raises(RuntimeError):
        w.form.image.native.count()  # the Qt side is gone
    w.reset_choices()  # what napari's connection calls: must not raise
    viewer.add_image(np.zeros((16, 16), np.float32), name="after")


@pytest.mark.parametrize("cls", [TrainWidget, ApplyWidget])
def test_renaming_layers_keeps_every_pick(viewer, cls):
    """magicgui re-adds a renamed choice; the pickers still show the same layers, axes untouched."""
    w = cls(viewer)
    viewer.window.add_dock_widget(w)
    a, b, _ = (viewer.add_image(np.zeros((16, 16), np.float32), name=n) for n in "abc")
    w.form.image.value, w.truth_combo.value = b, a
    w.form.axes.value = "YX"
    seen = []
    w.form.image.changed.connect(seen.append)
    b.name, a.name = "b-renamed", "a-renamed"
    assert w.form.image.value is b and w.truth_combo.value is a
    assert w.form.axes.value == "YX" and not seen  # nothing downstream saw a change
    assert "b-renamed" in _names(w.form.image)


def _order(picker) -> list[str]:
    """The names a picker shows, top to bottom (a ComboBox or a Select)."""
    native = picker.native
    return [native.itemText(i) if hasattr(native, "itemText") else native.item(i).text() for i in range(native.count())]


@pytest.mark.parametrize("cls", [TrainWidget, ApplyWidget])
def test_a_renamed_or_moved_layer_keeps_its_place_in_the_pickers(viewer, cls):
    """magicgui appends a renamed choice at the end; the pickers list the layers in the viewer's order."""
    w = cls(viewer)
    viewer.window.add_dock_widget(w)
    a, b, _ = (viewer.add_image(np.zeros((16, 16), np.float32), name=n) for n in "abc")
    w.form.image.value, w.truth_combo.value = b, a
    seen = []
    w.form.image.changed.connect(seen.append)
    w.truth_combo.changed.connect(seen.append)
    a.name = "a2"
    assert _order(w.form.image) == ["a2", "b", "c"] and _order(w.truth_combo) == ["-----", "a2", "b", "c"]
    viewer.layers.move(2, 0)  # c to the bottom of the layer list
    assert _order(w.form.image) == ["c", "a2", "b"]
    assert w.form.image.value is b and w.truth_combo.value is a and not seen  # the picks stay, silently


def test_renaming_keeps_the_psf_layer_and_the_extra_channels(viewer):
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    green, magenta = viewer.add_image(np.zeros((2, 16, 16), np.float32), channel_axis=0, name=["green", "magenta"])
    psf = viewer.add_image(np.ones((5, 5), np.float32), name="psf")
    w.form.image.value = green
    w.form.extra_layers.value = [magenta]
    w.form.psf_kind.value = "Measured PSF: image layer"
    w.form.psf_layer.value = psf
    green.name, psf.name = "green2", "psf2"  # the Image's rename changes what the extra list may hold
    magenta.name = "magenta2"
    assert w.form.image.value is green and w.form.psf_layer.value is psf
    assert list(w.form.extra_layers.value) == [magenta] and w.form.channel_count() == 2
    assert _order(w.form.extra_layers) == ["magenta2", "psf2"]
    assert _order(w.form.image) == ["green2", "magenta2", "psf2"]


def test_a_removed_pick_falls_back_to_a_raw_image_not_a_result(viewer):
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    viewer.add_image(np.zeros((16, 16), np.float32), name="raw denoised",  # first: magicgui's own pick
                     metadata={PROVENANCE_KEY: {"role": "denoised"}})
    raw = viewer.add_image(np.zeros((16, 16), np.float32), name="raw")
    picked = viewer.add_image(np.zeros((16, 16), np.float32), name="picked")
    w.form.image.value = picked
    viewer.layers.remove(picked)
    assert w.form.image.value is raw


@pytest.mark.parametrize("cls", [TrainWidget, ApplyWidget])
def test_a_widget_opened_after_the_layers_shows_the_visible_raw_image(viewer, cls):
    """The samples add a hidden ground truth first: it must not be what Start trains on."""
    viewer.add_image(np.zeros((16, 16), np.float32), name="ground truth", visible=False)
    noisy = viewer.add_image(np.zeros((16, 16), np.float32), name="noisy")
    viewer.add_image(np.zeros((16, 16), np.float32), name="noisy denoised",
                     metadata={PROVENANCE_KEY: {"role": "denoised"}})
    w = cls(viewer)
    assert w.form.image.value is noisy
