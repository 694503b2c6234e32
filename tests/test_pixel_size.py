"""The pixel size travels from the input file to the outputs: ImageJ and OME-TIFF, TIFF tags, OME-Zarr."""

import json

import numpy as np
import pytest
import tifffile

from napari_deconoising.cli import main
from napari_deconoising.core.lazy_io import create_output, open_lazy
from napari_deconoising.core.units import micrometres_per, normalize_unit

UM3 = ("micrometer",) * 3


@pytest.fixture
def volume():
    return np.random.default_rng(1).poisson(50, (4, 64, 48)).astype(np.float32)


def test_unit_names():
    for spelling in ("um", "µm", "μm", "\\u00B5m", "micron", "micrometre", "micrometer"):
        assert normalize_unit(spelling) == "micrometer", spelling
    assert normalize_unit("nm") == "nanometer" and micrometres_per("nm") == pytest.approx(1e-3)
    assert normalize_unit("pixel") is normalize_unit(" ") is normalize_unit(None) is None
    assert normalize_unit("Mm") == "Mm" and micrometres_per("Mm") is None  # not mm; unknown, kept as it is


def test_imagej_and_ome_tiff_pixel_size_is_read(tmp_path, volume):
    tifffile.imwrite(tmp_path / "ij.tif", volume, imagej=True, resolution=(10, 10),
                     metadata={"axes": "ZYX", "spacing": 0.3, "unit": "um"})
    tifffile.imwrite(tmp_path / "ome.ome.tif", volume, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 0.3})
    tifffile.imwrite(tmp_path / "nm.ome.tif", volume, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 100, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 100,
                               "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 0.3})
    for name in ("ij.tif", "ome.ome.tif"):
        lazy = open_lazy(tmp_path / name)
        assert lazy.axes == "ZYX" and lazy.scale == pytest.approx((0.3, 0.1, 0.1)) and lazy.units == UM3, name
    lazy = open_lazy(tmp_path / "nm.ome.tif")
    assert lazy.scale == pytest.approx((0.3, 100, 100)) and lazy.units == ("micrometer", "nanometer", "nanometer")


def test_resolution_tags_give_the_pixel_size_in_metric_units_only(tmp_path):
    img = np.zeros((16, 20), np.uint16)
    tifffile.imwrite(tmp_path / "cm.tif", img, resolution=(1e4 / 0.5, 1e4 / 0.25), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "dpi.tif", img, resolution=(72, 72), resolutionunit="INCH")  # a printing resolution
    tifffile.imwrite(tmp_path / "plain.tif", img)
    lazy = open_lazy(tmp_path / "cm.tif")
    assert lazy.scale == pytest.approx((0.25, 0.5)) and lazy.units == ("micrometer", "micrometer")
    assert open_lazy(tmp_path / "dpi.tif").scale is None and open_lazy(tmp_path / "plain.tif").scale is None


@pytest.mark.parametrize("axes, shape, imagej", [
    ("ZYX", (3, 10, 12), True),
    ("TZYX", (2, 3, 10, 12), True),
    ("TZYX", (1, 3, 10, 12), False),  # ImageJ would drop T of length 1: the file would read back as ZYX
    ("SZYX", (2, 3, 10, 12), False),  # ImageJ has no stack axis
])
def test_tiff_output_stores_the_pixel_size(tmp_path, axes, shape, imagej):
    scale = (1.0,) * (len(axes) - 3) + (300.0, 100.0, 50.0)
    units = (None,) * (len(axes) - 3) + ("nanometer",) * 3
    with create_output(tmp_path / "o.tif", shape, axes, scale=scale, units=units) as ref:
        ref.open(write=True)[...] = 1.0
    lazy = open_lazy(tmp_path / "o.tif")
    assert lazy.axes == axes and lazy.shape == shape and lazy.ref.kind == "memmap"
    # written in micrometres, which Fiji's readers take for ImageJ's Z spacing
    assert lazy.scale == pytest.approx(scale[:-3] + (0.3, 0.1, 0.05))
    assert lazy.units == (None,) * (len(axes) - 3) + UM3
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        page = tif.pages.first
        assert tif.is_bigtiff and tif.is_imagej == imagej
        if imagej:  # what ImageJ writes: pixels per `unit`, Z spacing in the description
            assert tif.imagej_metadata["unit"] == "um" and tif.imagej_metadata["spacing"] == pytest.approx(0.3)
            assert page.resolutionunit == tifffile.RESUNIT.NONE
            assert page.resolution == pytest.approx((20, 10))
        else:  # pixels per centimetre, which any TIFF reader converts
            assert page.resolutionunit == tifffile.RESUNIT.CENTIMETER
            assert page.get_resolution(tifffile.RESUNIT.MICROMETER) == pytest.approx((20, 10))


def test_tiff_output_without_a_pixel_size_is_as_before(tmp_path):
    with create_output(tmp_path / "o.tif", (2, 10, 12), "TYX", scale=(1.0, 1.0, 1.0)):
        pass
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        assert tif.is_shaped and not tif.is_imagej and tif.pages.first.resolution == (1, 1)
    assert open_lazy(tmp_path / "o.tif").scale is None


def test_ome_zarr_output_has_the_scale_and_the_axis_units(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    scale, units = (2.0, 0.3, 0.1, 0.1), ("second", "micrometer", "micrometer", "micrometer")
    with create_output(tmp_path / "o.zarr", (2, 3, 10, 12), "TZYX", scale=scale, units=units):
        pass
    node = next(iter(Reader(parse_url(str(tmp_path / "o.zarr")))()))
    assert [a.get("unit") for a in node.metadata["axes"]] == list(units)
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == list(scale)
    assert node.metadata["name"] == "o"  # not the temporary folder's name
    lazy = open_lazy(tmp_path / "o.zarr")
    assert lazy.scale == scale and lazy.units == units


def test_cli_predict_keeps_the_pixel_size(tmp_path, trained, volume):
    """The review's case: an ImageJ volume to TIFF and OME-Zarr, then OME-Zarr to TIFF and OME-Zarr."""
    trained.save(tmp_path / "m.pt")
    tifffile.imwrite(tmp_path / "vol_ij.tif", volume, imagej=True, resolution=(10, 10),
                     metadata={"axes": "ZYX", "spacing": 0.3, "unit": "um"})
    run = ["predict", str(tmp_path / "m.pt"), "--device", "cpu", "--precision", "fp32"]
    assert main([*run, str(tmp_path / "vol_ij.tif"), "--denoised", str(tmp_path / "out.tif"),
                 "--deconvolved", str(tmp_path / "out.zarr")]) == 0
    assert main([*run, str(tmp_path / "out.zarr"), "--denoised", str(tmp_path / "again.tif"),
                 "--deconvolved", str(tmp_path / "again.zarr")]) == 0
    for name in ("out.tif", "again.tif"):
        with tifffile.TiffFile(tmp_path / name) as tif:
            assert tif.imagej_metadata["spacing"] == pytest.approx(0.3) and tif.imagej_metadata["unit"] == "um"
            assert tif.pages.first.resolution == pytest.approx((10, 10))
    for name in ("out.zarr", "again.zarr"):
        ms = json.loads((tmp_path / name / ".zattrs").read_text())["multiscales"][0]
        assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx([0.3, 0.1, 0.1])
        assert [a["unit"] for a in ms["axes"]] == list(UM3)


def test_an_ome_tif_output_is_an_ome_tiff(tmp_path, trained, volume):
    """A ``.ome.tif`` name promises OME-XML (Bio-Formats reads it): pixels and pixel size as in a plain TIFF."""
    trained.save(tmp_path / "m.pt")
    tifffile.imwrite(tmp_path / "vol_ij.tif", volume, imagej=True, resolution=(10, 10),
                     metadata={"axes": "ZYX", "spacing": 0.3, "unit": "um"})
    run = ["predict", str(tmp_path / "m.pt"), str(tmp_path / "vol_ij.tif"), "--device", "cpu", "--precision", "fp32"]
    assert main([*run, "--denoised", str(tmp_path / "out.ome.tif")]) == 0
    assert main([*run, "--denoised", str(tmp_path / "out.tif")]) == 0
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        assert tif.is_ome and not tif.is_imagej and tif.series[0].axes == "ZYX"
        pixels = tif.ome_metadata
    assert 'PhysicalSizeX="0.1"' in pixels and 'PhysicalSizeZ="0.3"' in pixels and 'PhysicalSizeXUnit="µm"' in pixels
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.ome.tif"), tifffile.imread(tmp_path / "out.tif"))
    lazy = open_lazy(tmp_path / "out.ome.tif")
    assert lazy.scale == pytest.approx((0.3, 0.1, 0.1)) and lazy.units == UM3


@pytest.mark.parametrize("axes, shape, ij_unit, unit", [
    ("TYX", (3, 64, 48), {"tunit": "min"}, "minute"),
    ("TZYX", (2, 3, 64, 48), {"spacing": 0.3}, "second"),  # ImageJ's time unit is seconds unless it says
])
def test_cli_predict_keeps_the_frame_interval(tmp_path, trained, axes, shape, ij_unit, unit):
    """ImageJ's ``finterval`` (the T spacing) and its ``tunit`` reach the denoised and deconvolved files."""
    trained.save(tmp_path / "m.pt")
    data = np.random.default_rng(2).poisson(50, shape).astype(np.float32)
    tifffile.imwrite(tmp_path / "movie.tif", data, imagej=True, resolution=(10, 10),
                     metadata={"axes": axes, "finterval": 2.5, "unit": "um", **ij_unit})
    assert main(["predict", str(tmp_path / "m.pt"), str(tmp_path / "movie.tif"), "--device", "cpu", "--precision",
                 "fp32", "--denoised", str(tmp_path / "den.tif"), "--deconvolved", str(tmp_path / "dec.tif")]) == 0
    for name in ("den.tif", "dec.tif"):
        with tifffile.TiffFile(tmp_path / name) as tif:
            meta = tif.imagej_metadata
            assert meta["finterval"] == pytest.approx(2.5) and meta["tunit"] == ij_unit.get("tunit", "sec"), meta
            assert meta["unit"] == "um" and tif.pages.first.resolution == pytest.approx((10, 10))
        lazy = open_lazy(tmp_path / name)
        assert lazy.axes == axes and lazy.scale[0] == pytest.approx(2.5) and lazy.units[0] == unit


def test_the_frame_interval_in_ome_tiff_shaped_tiff_and_ome_zarr(tmp_path):
    """OME's ``TimeIncrement``, tifffile's JSON description (a T ImageJ cannot hold) and OME-Zarr's T scale."""
    movie = np.zeros((3, 10, 12), np.float32)
    tifffile.imwrite(tmp_path / "in.ome.tif", movie, ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": 40, "TimeIncrementUnit": "ms"})
    lazy = open_lazy(tmp_path / "in.ome.tif")
    assert lazy.scale == pytest.approx((40, 1, 1)) and lazy.units == ("millisecond", None, None)
    for name, shape in (("o.ome.tif", (3, 10, 12)), ("o.tif", (1, 10, 12)), ("o.zarr", (3, 10, 12))):
        with create_output(tmp_path / name, shape, "TYX", scale=lazy.scale, units=lazy.units):
            pass
        back = open_lazy(tmp_path / name)
        assert back.scale == pytest.approx((40, 1, 1)) and back.units == ("millisecond", None, None), name
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:  # T of length 1: no ImageJ file, the same keys in JSON
        assert not tif.is_imagej and tif.shaped_metadata[0]["finterval"] == 40
        assert tif.shaped_metadata[0]["tunit"] == "ms"


def test_sampling_mismatch_compares_the_axes_both_know():
    from napari_deconoising.core.units import lengths_nm, sampling_mismatch

    psf = lengths_nm("ZYX", (0.2, 0.065, 0.065), ("micrometer",) * 3)
    assert psf == pytest.approx({"Z": 200.0, "Y": 65.0, "X": 65.0})
    assert sampling_mismatch(psf, lengths_nm("YX", (66.0, 66.0), ("nanometer", "nanometer"))) is None  # within 5 %
    assert sampling_mismatch(psf, lengths_nm("TYX", (1.0, 0.1, 0.1), ("second", "um", "um"))) == (
        "Y 65 nm against 100 nm, X 65 nm against 100 nm")
    assert sampling_mismatch(psf, lengths_nm("YX", (1.0, 1.0), None)) is None  # no unit: nothing to compare


def test_an_imagej_stack_without_spacing_has_1_um_planes(tmp_path, volume):
    """ImageJ writes no "spacing" for a Z step of 1 (its default): the stack is still calibrated."""
    tifffile.imwrite(tmp_path / "ij.tif", volume, imagej=True, resolution=(10, 10),
                     metadata={"axes": "ZYX", "unit": "um"})
    assert "spacing" not in tifffile.TiffFile(tmp_path / "ij.tif").imagej_metadata
    lazy = open_lazy(tmp_path / "ij.tif")
    assert lazy.scale == pytest.approx((1.0, 0.1, 0.1)) and lazy.units == UM3
    tifffile.imwrite(tmp_path / "plain.tif", volume, imagej=True, metadata={"axes": "ZYX"})  # no unit: no size
    assert open_lazy(tmp_path / "plain.tif").scale is None
