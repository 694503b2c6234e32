"""The "Export to bioimage.io…" button and dialog of the Apply widget."""

from __future__ import annotations

import zipfile

import pytest

pytestmark = [pytest.mark.gui]

pytest.importorskip("napari")

from napari_deconoising._widgets import ApplyWidget  # noqa: E402


@pytest.fixture
def apply(make_napari_viewer, fresh_registry, trained, sample):
    viewer = make_napari_viewer()
    viewer.add_image(sample.noisy, name="noisy")
    widget = ApplyWidget(viewer)
    widget.select_model(trained, "tiny")
    return widget


@pytest.mark.slow
def test_export_from_the_dialog_then_load_the_package(apply, tmp_path, sync_workers, notifications, fresh_registry,
                                                      needs_bioimageio):
    dialog = apply.open_export_dialog()
    assert dialog.form.name.value == "DecoNoising tiny"
    dialog.form.authors.value = "Ada Lovelace, Alan Turing"
    dialog.form.sample.value = apply.viewer.layers["noisy"]
    dialog.form.path.value = tmp_path / "tiny"  # .zip is added
    assert dialog.export()
    out = tmp_path / "tiny.zip"
    assert out.is_file(), notifications
    assert any("model test passed" in m for m in notifications["info"])
    assert not notifications["error"]
    with zipfile.ZipFile(out) as z:
        assert "cover.png" in z.namelist()
    assert apply.load_model(out) is not None
    assert "tiny [2]" in fresh_registry


def test_export_dialog_refuses_incomplete_forms(apply, tmp_path, sync_workers, notifications):
    dialog = apply.open_export_dialog()
    assert not dialog.export()  # no path
    assert "where to save" in notifications["error"][-1]
    dialog.form.path.value = tmp_path / "x.zip"
    assert not dialog.export()  # no author
    assert "at least one author" in notifications["error"][-1]
    assert list(tmp_path.iterdir()) == []


def test_export_without_a_model_says_so(make_napari_viewer, fresh_registry, notifications):
    widget = ApplyWidget(make_napari_viewer())
    assert widget.open_export_dialog() is None
    assert "no model selected" in notifications["error"][-1]


def test_export_failure_is_a_notification(apply, tmp_path, sync_workers, notifications, monkeypatch):
    from napari_deconoising import bioimageio
    from napari_deconoising.bioimageio import BioimageioExportError

    def failing(*args, **kwargs):
        raise BioimageioExportError("bioimage.io's model test failed; no package written: because")

    monkeypatch.setattr(bioimageio, "export_bioimageio", failing)
    dialog = apply.open_export_dialog()
    dialog.form.authors.value = "A B"
    dialog.form.path.value = tmp_path / "x.zip"
    assert dialog.export()
    assert "model test failed" in notifications["error"][-1]
    assert "model test failed" in dialog.status.value
    assert dialog.export_button.enabled
