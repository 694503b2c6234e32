"""OME-Zarr layouts written by other tools: bioformats2raw containers, translations."""

from __future__ import annotations

import numpy as np
import pytest

from napari_deconoising.core.data import DataWarning
from napari_deconoising.core.io import read_image
from napari_deconoising.core.lazy_io import open_lazy
from napari_deconoising.core.ome import open_zarr_level0


def write_b2r(path, images, series_attr=True):
    """A bioformats2raw (layout 3) container as bioformats2raw writes it: zarr format 2, one NGFF 0.4
    image per series in groups 0, 1, ..., and the OME-XML in ``OME/``."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    for k, image in enumerate(images):
        write_image(image, root.create_group(str(k)), axes="tczyx", fmt=FormatV04(), scaler=None)
    ome = root.create_group("OME")
    if series_attr:
        ome.attrs["series"] = [str(k) for k in range(len(images))]
    (path / "OME" / "METADATA.ome.xml").write_text('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
                                                  + '<Image ID="Image:0"/>' * len(images) + "</OME>")


def _image(seed, z=3):
    return np.random.default_rng(seed).random((1, 1, z, 24, 32)).astype(np.float32)


@pytest.mark.parametrize("series_attr", [True, False])
def test_a_bioformats2raw_container_opens_as_series_0(tmp_path, series_attr, recwarn):
    one = _image(0)
    write_b2r(tmp_path / "b2r.zarr", [one], series_attr)
    array, axes, _, _, key = open_zarr_level0(tmp_path / "b2r.zarr")
    assert (axes, key.split("/")[0], array.shape) == ("TCZYX", "0", one.shape)  # level 0 of series 0
    data, axes = read_image(tmp_path / "b2r.zarr")
    np.testing.assert_array_equal(data, one)
    lazy = open_lazy(tmp_path / "b2r.zarr")
    np.testing.assert_array_equal(np.asarray(lazy.dask()), one)
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]  # one series: nothing to say


def test_several_series_read_series_0_with_a_warning_and_a_path_picks_another(tmp_path):
    one, two = _image(1), _image(2, z=5)
    write_b2r(tmp_path / "b2r.zarr", [one, two], series_attr=False)
    with pytest.warns(DataWarning, match=r"holds 2 images .*series 0 \(name .*b2r\.zarr/1 to read the next\)"):
        data, _ = read_image(tmp_path / "b2r.zarr")
    np.testing.assert_array_equal(data, one)
    data, axes = read_image(tmp_path / "b2r.zarr" / "1")  # a series named directly: no warning
    assert axes == "TCZYX"
    np.testing.assert_array_equal(data, two)
    lazy = open_lazy(tmp_path / "b2r.zarr" / "1")
    np.testing.assert_array_equal(lazy.ref.open()[...], two)


def test_an_empty_container_fails_in_one_line(tmp_path):
    from napari_deconoising.core.io import ImageFileError

    write_b2r(tmp_path / "b2r.zarr", [])
    with pytest.raises(ImageFileError, match="bioformats2raw container without images") as e:
        read_image(tmp_path / "b2r.zarr")
    assert "\n" not in str(e.value)


def test_the_origin_is_read_from_dataset_and_multiscale_transformations(tmp_path):
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    from napari_deconoising.core.ome import open_ome_zarr

    image = _image(3)
    root = zarr.open_group(str(tmp_path / "t.zarr"), mode="w", zarr_format=2)
    level0 = [{"type": "scale", "scale": [1, 1, 0.5, 0.2, 0.2]},
              {"type": "translation", "translation": [0, 0, 1.0, 10.0, 20.0]}]
    write_image(image, root, axes="tczyx", fmt=FormatV04(), scaler=None, scale_factors=(),
                coordinate_transformations=[level0])
    got = open_ome_zarr(tmp_path / "t.zarr")
    assert got.scale == (1, 1, 0.5, 0.2, 0.2) and got.translation == (0, 0, 1.0, 10.0, 20.0)
    # NGFF applies the multiscale's transformations after the dataset's: world = (i * s + t) * S + T
    attrs = root.attrs.asdict()
    attrs["multiscales"][0]["coordinateTransformations"] = [{"type": "scale", "scale": [1, 1, 2, 2, 2]},
                                                            {"type": "translation", "translation": [5, 0, 0, 0, 1]}]
    root.attrs.put(attrs)
    got = open_ome_zarr(tmp_path / "t.zarr")
    assert got.scale == (1, 1, 1.0, 0.4, 0.4) and got.translation == (5, 0, 2.0, 20.0, 41.0)


def test_the_origin_is_written_as_ngff_reads_it(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from napari_deconoising.core.io import write_image
    from napari_deconoising.core.ome import create_ome_zarr, open_ome_zarr

    create_ome_zarr(tmp_path / "o.zarr", (2, 8, 9), "ZYX", scale=(2.0, 0.1, 0.1), translation=(4.0, 1.5, -3.0),
                    units=("micrometer",) * 3)
    node = next(iter(Reader(parse_url(str(tmp_path / "o.zarr")))()))
    transforms = node.metadata["coordinateTransformations"][0]
    assert transforms == [{"type": "scale", "scale": [2.0, 0.1, 0.1]},
                          {"type": "translation", "translation": [4.0, 1.5, -3.0]}]
    assert open_ome_zarr(tmp_path / "o.zarr").translation == (4.0, 1.5, -3.0)
    write_image(tmp_path / "none.zarr", np.zeros((8, 9), np.float32), "YX")  # no origin: none written
    assert open_ome_zarr(tmp_path / "none.zarr").translation is None


def test_a_level_named_by_its_path_reads_the_image_metadata(tmp_path):
    """img.ome.zarr/s0 (or /s1, b2r.zarr/0/0) is a bare array: its axes, pixel size, units and origin
    are the image's, in the group above it; any other array keeps what it says itself."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    from napari_deconoising.core.ome import open_ome_zarr

    image = _image(4, z=4)
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
            *({"name": a, "type": "space", "unit": "micrometer"} for a in "zyx")]
    levels = [[{"type": "scale", "scale": [1, 1, 0.5, 0.2 * f, 0.2 * f]},
               {"type": "translation", "translation": [0, 0, 1.0, 10.0, 20.0]}] for f in (1, 2)]
    root = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=2)
    write_image(image, root, axes=axes, fmt=FormatV04(), scaler=None, scale_factors=(2,),
                coordinate_transformations=levels)
    paths = [d["path"] for d in root.attrs["multiscales"][0]["datasets"]]
    whole = open_ome_zarr(tmp_path / "img.ome.zarr")
    for path, f in zip(paths, (1, 2)):
        got = open_ome_zarr(tmp_path / "img.ome.zarr" / path)
        assert (got.axes, got.key, got.units) == ("TCZYX", "", (None, None) + ("micrometer",) * 3)
        assert got.scale == pytest.approx((1, 1, 0.5, 0.2 * f, 0.2 * f))
        assert got.translation == (0, 0, 1.0, 10.0, 20.0)
    level0 = open_ome_zarr(tmp_path / "img.ome.zarr" / paths[0])
    assert (level0.scale, level0.translation, level0.units) == (whole.scale, whole.translation, whole.units)
    data, axes_read = read_image(tmp_path / "img.ome.zarr" / paths[1])
    assert axes_read == "TCZYX" and data.shape == (1, 1, 4, 12, 16)
    lazy = open_lazy(tmp_path / "img.ome.zarr" / paths[0])
    assert lazy.axes == "TCZYX" and lazy.scale == level0.scale
    # an array of the group that is not one of its levels, and an array outside any group: as before
    root.create_array("extra", shape=(1, 1, 2, 4, 4), dtype="f4")
    zarr.open_array(str(tmp_path / "bare.zarr"), mode="w", shape=(1, 1, 2, 4, 4), dtype="f4", zarr_format=2)
    for bare in (tmp_path / "img.ome.zarr" / "extra", tmp_path / "bare.zarr"):
        assert open_ome_zarr(bare)[1:] == ("", None, None, "", None)


def test_a_level_of_a_bioformats2raw_series_reads_the_series_metadata(tmp_path, monkeypatch):
    one = _image(5)
    write_b2r(tmp_path / "b2r.zarr", [one])
    key = open_zarr_level0(tmp_path / "b2r.zarr")[4]  # "0/<level 0>" ("0/0" from bioformats2raw)
    series, level = key.split("/")
    assert open_zarr_level0(tmp_path / "b2r.zarr" / series / level)[1] == "TCZYX"
    monkeypatch.chdir(tmp_path / "b2r.zarr" / series)  # the level typed from inside the series' group
    array, axes, *_ = open_zarr_level0(level)
    assert axes == "TCZYX" and array.shape == one.shape
