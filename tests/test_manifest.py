"""The npe2 manifest is valid, importable, and napari finds the plugin."""

from __future__ import annotations

from importlib.resources import files

import pytest


def test_manifest_is_valid_and_imports():
    npe2 = pytest.importorskip("npe2")
    path = files("napari_deconoising") / "napari.yaml"
    manifest = npe2.PluginManifest.from_file(str(path))
    manifest.validate_imports()  # every python_name resolves
    assert manifest.name == "napari-deconoising"
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {"Train model", "Apply model", "Measure PSF from beads"}
    keys = {s.key for s in manifest.contributions.sample_data}
    assert keys == {"synthetic", "synthetic_3d", "nuclei", "beads"}
    commands = {c.id for c in manifest.contributions.commands}
    assert "napari-deconoising.compare" in commands
    menus = manifest.contributions.menus
    assert any(
        item.command == "napari-deconoising.compare" for items in menus.values() for item in items
    )
    assert manifest.contributions.readers[0].filename_patterns == [
        "*.pt", "*.zip", "rdf.yaml", "*.rdf.yaml", "bioimageio.yaml", "*.bioimageio.yaml"]


def test_entry_point_registers_the_manifest():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager.instance()
    pm.discover()
    assert "napari-deconoising" in pm._manifests


@pytest.mark.gui
def test_widgets_open_from_the_plugin(make_napari_viewer):
    """What `napari -w napari-deconoising` does: dock the plugin's widgets by name."""
    pytest.importorskip("napari")
    from napari_deconoising._widgets import ApplyWidget, BeadsWidget, TrainWidget

    viewer = make_napari_viewer()
    _, train = viewer.window.add_plugin_dock_widget("napari-deconoising", "Train model")
    _, apply = viewer.window.add_plugin_dock_widget("napari-deconoising", "Apply model")
    _, beads = viewer.window.add_plugin_dock_widget("napari-deconoising", "Measure PSF from beads")
    assert isinstance(train, TrainWidget) and isinstance(apply, ApplyWidget) and isinstance(beads, BeadsWidget)
    viewer.open_sample("napari-deconoising", "synthetic")
    assert "synthetic noisy" in viewer.layers
    assert train.form.image.value is viewer.layers["synthetic noisy"]
