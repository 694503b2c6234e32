"""Lazy inputs (memory-mapped TIFF, compressed TIFF, zarr, OME-Zarr) and tile-by-tile outputs."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_deconoising.core.io import ImageFileError, read_image, write_image
from napari_deconoising.core.lazy_io import create_output, open_lazy


def test_contiguous_tiff_is_memory_mapped(tmp_path):
    img = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    tifffile.imwrite(tmp_path / "a.tif", img, metadata={"axes": "TYX"}, photometric="minisblack")
    lazy = open_lazy(tmp_path / "a.tif")
    assert lazy.ref.kind == "memmap" and lazy.axes == "TYX" and lazy.shape == img.shape
    arr = lazy.ref.open()
    assert isinstance(arr, np.memmap)
    np.testing.assert_array_equal(arr[1, 5:9, 2:7], img[1, 5:9, 2:7])


def test_compressed_tiff_is_read_by_chunks(tmp_path):
    img = np.random.default_rng(0).integers(0, 999, (2, 40, 50)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", img, compression="zlib", tile=(16, 16))
    lazy = open_lazy(tmp_path / "c.tif")
    assert lazy.ref.kind == "tiff"
    np.testing.assert_array_equal(lazy.ref.open()[1, 3:30, 7:41], img[1, 3:30, 7:41])
    np.testing.assert_array_equal(np.asarray(lazy.dask()), img)


def test_ome_zarr_round_trip_is_read_by_ome_zarr(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    img = np.random.default_rng(0).random((2, 30, 40)).astype(np.float32)
    write_image(tmp_path / "x.zarr", img, "TYX")
    nodes = list(Reader(parse_url(str(tmp_path / "x.zarr")))())
    assert [a["name"] for a in nodes[0].metadata["axes"]] == ["t", "y", "x"]
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), img)
    data, axes = read_image(tmp_path / "x.zarr")
    assert axes == "TYX"
    np.testing.assert_array_equal(data, img)


def test_plain_zarr_array_and_bad_zarr(tmp_path):
    import zarr

    z = zarr.create_array(str(tmp_path / "p.zarr"), shape=(5, 6), dtype="u2", dimension_names=["y", "x"])
    z[...] = 7
    lazy = open_lazy(tmp_path / "p.zarr")
    assert lazy.axes == "YX" and lazy.ref.kind == "zarr"
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(ImageFileError, match="not an OME-Zarr"):
        open_lazy(tmp_path / "g.zarr")
    with pytest.raises(ImageFileError, match="not found"):
        open_lazy(tmp_path / "missing.zarr")


@pytest.mark.parametrize("name", ["out.zarr", "out.tif"])
def test_output_appears_only_when_complete(tmp_path, name):
    (tmp_path / name).mkdir() if name.endswith(".zarr") else (tmp_path / name).write_bytes(b"old")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RuntimeError), create_output(tmp_path / name, (2, 8, 9), "TYX") as ref:
        ref.open(write=True)[0, :4] = 1.0
        raise RuntimeError("crash half way")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary left, old output intact
    with create_output(tmp_path / name, (2, 8, 9), "TYX", chunks=(1, 4, 4)) as ref:
        out = ref.open(write=True)
        out[1, 2:5, 3:9] = 2.5
        del out
    data, axes = read_image(tmp_path / name)
    assert data.dtype == np.float32 and data.shape == (2, 8, 9) and axes == "TYX"
    assert data.sum() == pytest.approx(2.5 * 18)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_ome_zarr_cannot_hold_axes_out_of_order(tmp_path):
    with pytest.raises(ImageFileError, match="order"), create_output(tmp_path / "o.zarr", (8, 9, 2), "YXT"):
        pass
    assert not list(tmp_path.iterdir())


def test_pyramidal_tiff_reads_level_0(tmp_path):
    img = np.random.default_rng(2).random((256, 200)).astype(np.float32)
    with tifffile.TiffWriter(tmp_path / "p.tif") as tw:
        tw.write(img, subifds=1, tile=(64, 64))
        tw.write(img[::2, ::2], subfiletype=1, tile=(64, 64))
    lazy = open_lazy(tmp_path / "p.tif")
    assert lazy.shape == img.shape and lazy.ref.kind == "tiff"
    np.testing.assert_array_equal(lazy.ref.open()[10:90, 5:150], img[10:90, 5:150])


def test_refs_carry_absolute_paths(tmp_path, monkeypatch):
    """Dask workers open the refs in their own working folder: relative names would miss."""
    monkeypatch.chdir(tmp_path)
    tifffile.imwrite("in.tif", np.zeros((8, 8), np.float32))
    assert open_lazy("in.tif").ref.path == str(tmp_path / "in.tif")
    for name in ("out.zarr", "out.tif"):
        with create_output(name, (8, 8), "YX") as ref:
            assert Path(ref.path).is_absolute() and Path(ref.path).parent == tmp_path
