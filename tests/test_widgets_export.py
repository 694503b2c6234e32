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
    assert notifications["error"][-1].startswith("No model selected: train one")


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


@pytest.fixture(scope="module")
def cyx_models(tiny_config):
    import numpy as np

    from napari_deconoising.core import make_sample
    from napari_deconoising.core.channels import train_channels

    a, b = make_sample((96, 96), sigma=1.0, seed=1), make_sample((96, 96), sigma=2.0, seed=2)
    cyx = np.stack([a.noisy, 4 * b.noisy + 50])
    cfg = tiny_config.replace(epochs=1, steps_per_epoch=1, batch_size=2)
    return cyx, train_channels(cyx, [cfg.replace(psf_sigma=1.0), cfg.replace(psf_sigma=2.0)], "CYX")


@pytest.mark.slow
def test_a_model_per_channel_exports_with_its_channels(make_napari_viewer, fresh_registry, cyx_models, tmp_path,
                                                      sync_workers, notifications, needs_bioimageio):
    from napari_deconoising.core import ChannelModels

    cyx, models = cyx_models
    viewer = make_napari_viewer()
    viewer.add_image(cyx, name="cells")
    viewer.add_image(cyx[0], name="one channel")
    widget = ApplyWidget(viewer)
    widget.select_model(models, "two channels")
    dialog = widget.open_export_dialog()
    assert dialog is not None and not notifications["error"]
    assert "\n" not in dialog.form.description.value and "channel 1:" in dialog.form.description.value
    dialog.form.authors.value = "Ada Lovelace"
    # a sample without the channels is refused by the export, as a notification
    dialog.form.sample.value = viewer.layers["one channel"]
    dialog.form.path.value = tmp_path / "bad.zip"
    assert dialog.export()
    assert "needs 2 channels" in notifications["error"][-1] and not (tmp_path / "bad.zip").exists()
    dialog.form.sample.value = viewer.layers["cells"]
    dialog.form.path.value = tmp_path / "two.zip"
    assert dialog.export()
    assert (tmp_path / "two.zip").is_file(), notifications
    assert any("model test passed" in m for m in notifications["info"])
    assert isinstance(widget.load_model(tmp_path / "two.zip"), ChannelModels)


def test_authors_are_split_at_semicolons_where_there_are_any():
    from napari_deconoising._widgets._export import split_authors

    assert split_authors("Ada Lovelace, Alan Turing") == ["Ada Lovelace", "Alan Turing"]
    assert split_authors("Lovelace, Ada; Turing, Alan") == ["Lovelace, Ada", "Turing, Alan"]
    assert split_authors("  ") == [] and split_authors("Ada Lovelace;") == ["Ada Lovelace"]


def _callbacks(viewer) -> int:
    events = viewer.layers.events
    return sum(len(getattr(events, name).callbacks) for name in ("inserted", "removed", "reordered", "renamed"))


def test_the_sample_picker_follows_the_layers_while_the_dialog_is_open(apply):
    """A dialog is no dock widget: napari does not refresh it, so it follows the layers itself."""
    import numpy as np

    viewer = apply.viewer
    before = _callbacks(viewer)
    dialog = apply.open_export_dialog()
    assert _callbacks(viewer) > before
    added = viewer.add_image(np.zeros((96, 96), "float32"), name="added later")
    assert added in dialog.form.sample.choices  # offered without reopening the dialog
    dialog.form.sample.value = added
    added.name = "renamed"
    viewer.layers.move(viewer.layers.index(added), 0)
    assert dialog.form.sample.value is added  # a rename or a move keeps the choice
    viewer.layers.remove(added)
    assert added not in dialog.form.sample.choices and dialog.form.sample.value is None
    assert "'renamed' is no longer in the viewer" in dialog.status.value
    dialog.close()
    assert _callbacks(viewer) == before  # nothing left connected to a closed dialog
    later = viewer.add_image(np.zeros((96, 96), "float32"), name="while closed")
    dialog.show()  # reopened: it catches up, and follows again
    assert later in dialog.form.sample.choices and _callbacks(viewer) > before
    dialog.close()


def test_export_refuses_a_sample_that_left_the_viewer(apply, tmp_path, sync_workers, notifications):
    viewer = apply.viewer
    dialog = apply.open_export_dialog()
    dialog.form.authors.value = "Ada Lovelace"
    dialog.form.path.value = tmp_path / "x.zip"
    dialog.form.sample.value = viewer.layers["noisy"]
    dialog.close()  # no longer following the layers: the picker keeps the removed layer
    viewer.layers.remove("noisy")
    assert not dialog.export()
    assert "the sample image 'noisy' is no longer in the viewer" in notifications["error"][-1].lower()
    assert dialog.job is None and list(tmp_path.iterdir()) == []
