"""What the command line takes as inputs, and what it says of files that do not fit."""

import numpy as np
import pytest
import tifffile

from napari_deconoising.cli import main
from napari_deconoising.core import make_sample

TINY = ["--depth", "2", "--channels", "8", "--patch-size", "32", "--batch-size", "2", "--epochs", "1",
        "--steps-per-epoch", "1", "--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    s = make_sample((48, 48), sigma=1.5, seed=6)
    tifffile.imwrite(d / "plain.tif", s.noisy)
    tifffile.imwrite(d / "rgb.tif", np.zeros((48, 48, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(d / "cyx.tif", np.stack([s.noisy, s.noisy]), metadata={"axes": "CYX"})
    tifffile.imwrite(d / "vol.tif", np.stack([s.noisy] * 8), metadata={"axes": "ZYX"})
    return d


def _error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deconoising: error: ") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("files, extra, msg", [
    (["plain.tif", "rgb.tif"], [], "{d}/rgb.tif is an RGB image (3 samples per pixel)"),
    (["plain.tif", "cyx.tif"], [], "{d}/cyx.tif has 2 channels (axis C): an image with channels is trained on "
                                   "its own"),
    (["vol.tif", "plain.tif"], ["--3d"], "--3d needs a Z axis (volumes), but {d}/plain.tif is 2D (48, 48): "
                                         "leave it out of the inputs, or train a 2D model"),
    (["plain.tif"], ["--3d"], "but {d}/plain.tif is 2D (48, 48): train a 2D model (without --3d)"),
])
def test_a_file_that_cannot_train_with_the_others_is_named(d, tmp_path, capsys, files, extra, msg):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes((d / name).read_bytes())
    err = _error(["train", str(folder), "--model", str(tmp_path / "m.pt"), *TINY, *extra], capsys)
    assert msg.format(d=folder) in err
    assert not (tmp_path / "m.pt").exists()


def test_a_one_channel_model_on_channels_says_how_to_get_a_model_per_channel(d, trained, tmp_path, capsys):
    trained.save(tmp_path / "m.pt")
    err = _error(["predict", str(tmp_path / "m.pt"), str(d / "cyx.tif"), "--denoised", str(tmp_path / "o.tif")],
                 capsys)
    assert "this model has one channel and the image has 2 (axis C)" in err
    assert "train a model with one network per channel on the image with its C axis" in err
    err = _error(["predict", str(tmp_path / "m.pt"), str(d / "rgb.tif"), "--denoised", str(tmp_path / "o.tif")],
                 capsys)
    assert "the image is RGB (3 samples per pixel" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_ome_outputs_keep_their_double_suffix(d, trained, tmp_path, capsys):
    """cells.ome.tif -> cells_denoised.ome.tif (OME-TIFF, as the name promises), x.ome.zarr -> x_denoised.ome.zarr."""
    from napari_deconoising.core.io import read_image, write_image

    trained.save(tmp_path / "m.pt")
    image = read_image(d / "plain.tif")[0]
    tifffile.imwrite(tmp_path / "cells.ome.tif", image, ome=True, metadata={"axes": "YX"})
    write_image(tmp_path / "x.ome.zarr", image, "YX")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "m.pt"), str(tmp_path / "cells.ome.tif"), str(tmp_path / "x.ome.zarr"),
                 "--output-dir", str(out), "--device", "cpu", "--precision", "fp32"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cells_deconvolved.ome.tif", "cells_denoised.ome.tif",
                                                     "x_deconvolved.ome.zarr", "x_denoised.ome.zarr"]
    with tifffile.TiffFile(out / "cells_denoised.ome.tif") as tif:
        assert tif.is_ome
    capsys.readouterr()
    # --format names the suffix: the two inputs would now write the same file
    tifffile.imwrite(tmp_path / "cells.tif", image)
    err = _error(["predict", str(tmp_path / "m.pt"), str(tmp_path / "cells.ome.tif"), str(tmp_path / "cells.tif"),
                  "--output-dir", str(tmp_path / "o2"), "--format", ".tif"], capsys)
    assert f"two inputs would both write {tmp_path / 'o2' / 'cells_denoised.tif'}" in err
    # an output named like another input is still refused
    tifffile.imwrite(tmp_path / "cells_denoised.ome.tif", image, ome=True)
    err = _error(["predict", str(tmp_path / "m.pt"), str(tmp_path / "cells.ome.tif"),
                  str(tmp_path / "cells_denoised.ome.tif"), "--output-dir", str(tmp_path)], capsys)
    assert "refusing to overwrite the input image" in err


def _b2r(path, image):
    """A bioformats2raw container (layout 3) with one NGFF 0.4 image in group 0."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    write_image(image, root.create_group("0"), axes="yx", fmt=FormatV04(), scaler=None)


def test_a_zarr_image_inside_a_container_is_an_input(d, trained, tmp_path, capsys, monkeypatch):
    """b2r.zarr/0 (and any zarr store without the .zarr suffix) is an image, not a folder of images."""
    from napari_deconoising._batch import expand_inputs
    from napari_deconoising.core.io import read_image

    pytest.importorskip("ome_zarr")
    trained.save(tmp_path / "m.pt")
    image = read_image(d / "plain.tif")[0]
    _b2r(tmp_path / "b2r.zarr", image)
    assert expand_inputs([str(tmp_path / "b2r.zarr" / "0")]) == [tmp_path / "b2r.zarr" / "0"]
    assert expand_inputs([str(tmp_path / "b2r.zarr" / "0" / "0")]) == [tmp_path / "b2r.zarr" / "0" / "0"]  # an array
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "m.pt", "b2r.zarr/0", "--output-dir", str(tmp_path / "out"),
                 "--no-deconvolved", "--device", "cpu", "--precision", "fp32"]) == 0, capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b2r_0_denoised.zarr"]
    assert read_image(tmp_path / "out" / "b2r_0_denoised.zarr")[0].shape == image.shape


def test_a_series_typed_from_inside_its_container_is_an_input(d, trained, tmp_path, capsys, monkeypatch):
    """'0' with the current folder inside b2r.zarr: the folder's zarr metadata makes it an image."""
    from napari_deconoising.core.io import read_image

    pytest.importorskip("ome_zarr")
    trained.save(tmp_path / "m.pt")
    image = read_image(d / "plain.tif")[0]
    _b2r(tmp_path / "b2r.zarr", image)
    monkeypatch.chdir(tmp_path / "b2r.zarr")
    assert main(["predict", str(tmp_path / "m.pt"), "0", "--output-dir", str(tmp_path / "out"),
                 "--no-deconvolved", "--device", "cpu", "--precision", "fp32"]) == 0, capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b2r_0_denoised.zarr"]
    assert read_image(tmp_path / "out" / "b2r_0_denoised.zarr")[0].shape == image.shape
