"""Outputs that would lose data: the input itself, its store, or another output."""

import os

import pytest

from napari_deconoising.core.output_paths import output_clash


@pytest.fixture
def store(tmp_path):
    """An input array inside a zarr store, and a plain input file beside it."""
    (tmp_path / "in.zarr" / "0").mkdir(parents=True)
    (tmp_path / "in.zarr" / "0" / "zarr.json").write_text("{}")
    (tmp_path / "img.tif").write_bytes(b"raw")
    return tmp_path


def test_outputs_beside_the_inputs_are_fine(store, monkeypatch):
    monkeypatch.chdir(store)
    assert output_clash([store / "out.tif", store / "in.zarr_out", "den.zarr", None], [store / "in.zarr" / "0",
                                                                                          "img.tif"]) is None


@pytest.mark.parametrize("output, source, ending", [
    ("img.tif", "img.tif", "img.tif"),
    ("./sub/../img.tif", "img.tif", "img.tif"),
    ("in.zarr", "in.zarr/0", "in.zarr holds it"),
    ("in.zarr/0/d.zarr", "in.zarr/0", "in.zarr/0/d.zarr lies inside it"),
])
def test_an_output_that_is_holds_or_lies_inside_an_input_is_refused(store, monkeypatch, output, source, ending):
    monkeypatch.chdir(store)
    (store / "sub").mkdir()
    for out, src in ((output, source), (store / output, store / source)):  # relative, absolute
        why = output_clash([out], [src])
        assert why.startswith(f"refusing to overwrite the input image {src}") and why.endswith(ending), why


def test_the_same_file_under_another_name_is_the_input(store):
    # what a case-insensitive file system does with IMG.tif for img.tif; a hard link shows it on any
    os.link(store / "img.tif", store / "alias.tif")
    assert output_clash([store / "alias.tif"], [store / "img.tif"]) == (
        f"refusing to overwrite the input image {store / 'img.tif'}")
    assert "two outputs name the same file" in output_clash([store / "img.tif", store / "alias.tif"], [])


def test_an_output_holding_another_output_is_refused(store):
    # writing o.zarr last would delete the deconvolved image written inside it
    why = output_clash([store / "o.zarr", store / "o.zarr" / "d.zarr"], [store / "img.tif"])
    assert why.startswith(f"the output {store / 'o.zarr'} holds the output {store / 'o.zarr' / 'd.zarr'}")
    assert output_clash([store / "o.zarr" / "d.zarr", store / "o.zarr"], []).startswith("the output")
