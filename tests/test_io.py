"""Image files: suffix dispatch, axis letters, specific errors, atomic writes."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_deconoising.core import ImageFileError, read_image, write_image
from napari_deconoising.core.io import image_format


@settings(max_examples=15, deadline=None)
@given(axes=st.sampled_from(["YX", "SYX", "TYX", "ZYX", "TZYX", "SZYX"]),
       dtype=st.sampled_from([np.float32, np.uint16, np.uint8]))
def test_write_then_read_gives_back_data_and_axes(tmp_path_factory, axes, dtype):
    path = tmp_path_factory.mktemp("io") / "img.tif"
    shape = (2, 3, 5, 7)[-len(axes) + 2:] + (6, 8) if len(axes) > 2 else (6, 8)
    data = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    write_image(path, data, axes)
    got, got_axes = read_image(path)
    np.testing.assert_array_equal(got, data)
    assert got.dtype == data.dtype and got_axes == axes


def test_a_stack_of_three_is_not_written_as_rgb(tmp_path):
    data = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    write_image(tmp_path / "s.tif", data)
    got, axes = read_image(tmp_path / "s.tif")
    np.testing.assert_array_equal(got, data)
    assert "C" not in axes


def test_reads_tifffile_axis_letters_in_ours(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", np.zeros((3, 8, 8), np.float32), metadata={"axes": "TYX"},
                     photometric="minisblack")
    tifffile.imwrite(tmp_path / "rgb.TIFF", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    assert read_image(tmp_path / "t.tif")[1] == "TYX"
    assert read_image(tmp_path / "rgb.TIFF")[1] == "YXC"  # tifffile's S (samples) is our C


# tifffile says it will stop storing 3 or 4 planes as RGB one day; files written so far stay that way.
_PLANAR_RGB = "ignore:.*stored as RGB with separate component planes:DeprecationWarning"


@pytest.mark.filterwarnings(_PLANAR_RGB)
@pytest.mark.parametrize("planes", [2, 3, 4, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_planes_of_a_tiff_without_axes_are_a_stack(tmp_path, planes, dtype):
    """tifffile stores 3 or 4 unlabelled planes as planar RGB(A) (axis S); they are a stack like 2 or 5."""
    from napari_deconoising.core.lazy_io import open_lazy

    data = (np.arange(planes * 8 * 9) % 250).reshape(planes, 8, 9).astype(dtype)
    tifffile.imwrite(tmp_path / "p.tif", data)
    got, axes = read_image(tmp_path / "p.tif")
    np.testing.assert_array_equal(got, data)
    assert axes == "SYX" and open_lazy(tmp_path / "p.tif").axes == "SYX"


@pytest.mark.filterwarnings(_PLANAR_RGB)
def test_channels_and_colours_the_file_names_stay_channels(tmp_path):
    from napari_deconoising.core.lazy_io import open_lazy

    cyx = np.zeros((3, 8, 9), np.float32)
    tifffile.imwrite(tmp_path / "shaped.tif", cyx, metadata={"axes": "CYX"})  # planar samples too
    tifffile.imwrite(tmp_path / "ij.tif", cyx, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "ome.ome.tif", cyx, ome=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8))  # contiguous samples: a colour picture
    for name, want in (("shaped.tif", "CYX"), ("ij.tif", "CYX"), ("ome.ome.tif", "CYX"), ("rgb.tif", "YXC")):
        assert read_image(tmp_path / name)[1] == want == open_lazy(tmp_path / name).axes, name


def test_specific_errors(tmp_path):
    with pytest.raises(ImageFileError, match="not found"):
        read_image(tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    with pytest.raises(ImageFileError, match="cannot read .* as a TIFF"):
        read_image(tmp_path / "junk.tif")
    (tmp_path / "a.png").write_bytes(b"")
    for name in ("a.png", "noext"):
        with pytest.raises(ImageFileError, match="not supported"):
            read_image(tmp_path / name)
        with pytest.raises(ImageFileError, match="not supported"):
            write_image(tmp_path / name, np.zeros((4, 4)))
    with pytest.raises(ImageFileError, match="folder does not exist"):
        write_image(tmp_path / "no" / "x.tif", np.zeros((4, 4)))
    with pytest.raises(ImageFileError, match="axes"):
        write_image(tmp_path / "x.tif", np.zeros((4, 4)), "ZYX")
    assert not (tmp_path / "x.tif").exists()
    assert isinstance(ImageFileError("x"), ValueError)
    assert image_format("A.OME.TIF").name == "TIFF"


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.tif"
    write_image(path, np.ones((4, 4), np.float32))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(OSError, match="disk full"):
        write_image(path, np.zeros((4, 4), np.float32))
    assert path.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["out.tif"]


@pytest.mark.parametrize("name", ["psf.tif", "psf.zarr"])
def test_write_image_stores_a_pixel_size_as_the_tiled_outputs_do(tmp_path, name):
    """What ``deconoising psf`` writes: the voxel size in nm, read back (in µm for TIFF) as from any input."""
    from napari_deconoising.core.lazy_io import open_lazy

    data = np.ones((3, 5, 7), np.float32)
    write_image(tmp_path / name, data, "ZYX", scale=(200.0, 65.0, 65.0), units=("nanometer",) * 3)
    lazy = open_lazy(tmp_path / name)
    factor = 1e-3 if name.endswith(".tif") else 1.0
    assert lazy.axes == "ZYX" and lazy.scale == pytest.approx((200 * factor, 65 * factor, 65 * factor))
    assert lazy.units == (("micrometer",) if factor != 1 else ("nanometer",)) * 3
    np.testing.assert_array_equal(read_image(tmp_path / name)[0], data)
    with pytest.raises(ImageFileError, match=r"pixel size \(scale \(1.0, 1.0\)\) needs axes and one value per axis"):
        write_image(tmp_path / "bad.tif", data, "ZYX", scale=(1.0, 1.0))
    with pytest.raises(ImageFileError, match="needs axes"):
        write_image(tmp_path / "bad.tif", data, scale=(1.0, 1.0, 1.0))
    assert not (tmp_path / "bad.tif").exists()


def test_a_zarr_folder_is_zarr_whatever_its_name(tmp_path, monkeypatch):
    """The folder's zarr metadata decides, not its suffix: "0" typed inside a container."""
    import zarr

    from napari_deconoising.core.ome import create_ome_zarr

    image = np.arange(48, dtype=np.float32).reshape(6, 8)
    create_ome_zarr(tmp_path / "store" / "0", image.shape, "YX", data=image)  # a group in a folder without .zarr
    zarr.open_array(str(tmp_path / "arr"), mode="w", shape=(4, 4), dtype="f4", zarr_format=3)
    (tmp_path / "attrs").mkdir()
    (tmp_path / "attrs" / ".zattrs").write_text("{}")  # attributes alone: zarr, so reading names the problem
    (tmp_path / "plain").mkdir()
    for name in ("store/0", "store/0/0", "arr", "attrs"):
        assert image_format(tmp_path / name).name == "OME-Zarr", name
    with pytest.raises(ImageFileError, match="files without a suffix are not supported"):
        image_format(tmp_path / "plain")
    monkeypatch.chdir(tmp_path / "store")
    assert image_format("0").name == "OME-Zarr"
    data, axes = read_image("0")
    np.testing.assert_array_equal(data, image)
    assert axes == "YX"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageFileError, match="cannot read attrs as a"):
        read_image("attrs")


def test_the_umask_is_read_without_being_changed(tmp_path, monkeypatch):
    # setting it, even for an instant, gives files other threads make meanwhile the wrong mode
    from napari_deconoising.core import io as core_io

    old = os.umask(0o027)
    try:
        def changed(*a):
            raise AssertionError("the umask was set")

        monkeypatch.setattr(os, "umask", changed)
        p = tmp_path / "f"
        p.write_bytes(b"")
        core_io.usual_permissions(p)
        assert stat.S_IMODE(p.stat().st_mode) == 0o640
    finally:
        monkeypatch.undo()
        os.umask(old)
