"""Predicting files of any size: zarr/OME-Zarr/TIFF in, OME-Zarr/BigTIFF out, equal to in-memory."""

import numpy as np
import pytest
import tifffile

from napari_deconoising.core.io import ImageFileError, read_image, write_image
from napari_deconoising.core.predict import tile_halo
from napari_deconoising.core.predict_file import predict_file


@pytest.fixture
def stack(trained):
    return np.random.default_rng(0).normal(trained.mean, trained.std, (2, 60, 50)).astype(np.float32)


def test_zarr_in_zarr_out_equals_in_memory(trained, stack, tmp_path):
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image as ome_write

    # A two-level image written by the ome-zarr library itself (NGFF 0.5 / zarr v3), with a pixel size.
    root = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    ome_write(stack, root, axes="tyx", scale_factors=(2,),
              coordinate_transformations=[[{"type": "scale", "scale": [1.0, 0.5, 0.25]}],
                                          [{"type": "scale", "scale": [1.0, 1.0, 0.5]}]])
    tile = 2 * tile_halo(trained) + 16
    ref = trained.predict(stack, "TYX", device="cpu", tile_size=tile, batch_size=2)
    axes = predict_file(trained, tmp_path / "in.zarr", tmp_path / "den.zarr", tmp_path / "dec.zarr",
                        tile_size=tile, device="cpu", batch_size=2)
    assert axes == "TYX"
    for name, want in (("den.zarr", ref.denoised), ("dec.zarr", ref.deconvolved)):
        node = next(iter(Reader(parse_url(str(tmp_path / name)))()))
        assert [a["name"] for a in node.metadata["axes"]] == ["t", "y", "x"]
        assert node.metadata["coordinateTransformations"][0][0]["scale"] == [1.0, 0.5, 0.25]
        np.testing.assert_allclose(np.asarray(node.data[0]), want, rtol=1e-5, atol=1e-5)


def test_tiff_in_bigtiff_out(trained, stack, tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", stack, metadata={"axes": "TYX"}, photometric="minisblack")
    tile = 2 * tile_halo(trained) + 16
    ref = trained.predict(stack, "TYX", device="cpu", tile_size=tile, batch_size=2)
    predict_file(trained, tmp_path / "in.tif", tmp_path / "den.tif", tile_size=tile, device="cpu", batch_size=2)
    with tifffile.TiffFile(tmp_path / "den.tif") as tif:
        assert tif.is_bigtiff
    data, axes = read_image(tmp_path / "den.tif")
    assert axes == "TYX"
    np.testing.assert_allclose(data, ref.denoised, rtol=1e-5, atol=1e-5)


def test_refuses_to_overwrite_input_and_leaves_nothing_on_error(trained, stack, tmp_path):
    write_image(tmp_path / "in.zarr", stack, "TYX")
    with pytest.raises(ImageFileError, match="overwrite the input"):
        predict_file(trained, tmp_path / "in.zarr", tmp_path / "in.zarr", device="cpu")
    with pytest.raises(ImageFileError, match="order"):
        predict_file(trained, tmp_path / "in.zarr", tmp_path / "o.zarr", axes="YXT", device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr"]
