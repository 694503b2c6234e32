"""Dropping a model file on napari loads it into the session and the Apply widget."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.gui]

pytest.importorskip("napari")

from napari_deconoising._widgets import ApplyWidget  # noqa: E402


def test_reader_loads_model_into_apply_widget(
    tmp_path, make_napari_viewer, fresh_registry, trained, notifications
):
    from napari_deconoising._reader import get_reader

    viewer = make_napari_viewer()
    path = tmp_path / "nuclei.pt"
    trained.save(path)
    assert get_reader(str(tmp_path / "other.tif")) is None
    (tmp_path / "foreign.pt").write_bytes(b"junk")
    assert get_reader(str(tmp_path / "foreign.pt")) is None
    # the reason reaches the user (napari's own message only says that the plugin failed)
    assert notifications["warning"] == [f"Cannot load the model: {tmp_path / 'foreign.pt'} is not a readable "
                                        "model file: not a .pt file written by torch.save (napari-deconoising "
                                        "saves models as .pt files)"]
    reader = get_reader(str(path))
    assert reader(str(path)) == [(None,)]
    assert "nuclei" in fresh_registry
    widgets = [d.widget() for d in viewer.window._wrapped_dock_widgets.values()]
    apply = [x for x in widgets if isinstance(x, ApplyWidget)]
    assert apply and apply[0].form.model.value == "nuclei"
    # the same through napari's own file opening (what drag and drop does)
    n_layers = len(viewer.layers)
    viewer.open(str(path), plugin="napari-deconoising")
    assert "nuclei [2]" in fresh_registry and apply[0].form.model.value == "nuclei [2]"
    assert len(viewer.layers) == n_layers

    assert any(m.startswith("Loaded model 'nuclei'") for m in notifications["info"])


def test_reader_opens_our_bioimageio_package_and_explains_foreign_ones(
    tmp_path, make_napari_viewer, fresh_registry, trained, notifications, hand_package
):
    import yaml

    from napari_deconoising._reader import get_reader

    make_napari_viewer()
    hand_package(tmp_path / "unpacked", trained)
    pkg = hand_package.zip(tmp_path / "unpacked", tmp_path / "filaments.zip")
    for path, name in ((pkg, "filaments"), (tmp_path / "unpacked" / "rdf.yaml", "unpacked")):
        reader = get_reader(str(path))
        assert reader is not None and reader(str(path)) == [(None,)]
        assert name in fresh_registry
    foreign = tmp_path / "foreign.zip"
    import zipfile

    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("rdf.yaml", yaml.safe_dump({"type": "model", "weights": {"onnx": {"source": "w.onnx"}}}))
    assert get_reader(str(foreign)) is None
    assert any("run it with bioimageio.core instead" in m for m in notifications["warning"])
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as z:
        z.writestr("a.txt", "not a model")
    n_warnings = len(notifications["warning"])
    assert get_reader(str(tmp_path / "photos.zip")) is None  # not a package at all: silent
    assert len(notifications["warning"]) == n_warnings
