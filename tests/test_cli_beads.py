"""``deconoising beads``: a PSF measured from a bead image, written as a TIFF that train --psf takes."""

import re

import numpy as np
import pytest
import tifffile

from napari_deconoising.cli import main
from napari_deconoising.core import load_model, load_psf, make_sample
from napari_deconoising.core.sample_beads import make_beads

TINY_ARGS = ["--depth", "2", "--channels", "8", "--patch-size", "32", "--batch-size", "4",
             "--epochs", "1", "--steps-per-epoch", "2", "--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def beads2d(tmp_path_factory):
    path = tmp_path_factory.mktemp("beads") / "beads.tif"
    tifffile.imwrite(path, make_beads((256, 256), 1.3, n=20, seed=1)[0])
    return path


@pytest.fixture(scope="module")
def beads3d(tmp_path_factory):
    path = tmp_path_factory.mktemp("beads3d") / "stack.tif"
    image, _ = make_beads((40, 128, 128), (2.2, 1.1, 1.1), n=12, seed=2, photons=20000, min_distance=14)
    tifffile.imwrite(path, image, imagej=True, resolution=(1 / 0.065, 1 / 0.065),
                     metadata={"axes": "ZYX", "spacing": 0.2, "unit": "um"})
    return path


def test_beads_to_psf_to_training(beads2d, tmp_path, capsys):
    psf = tmp_path / "psf.tif"
    assert main(["beads", str(beads2d), "--out", str(psf)]) == 0
    out, err = capsys.readouterr()
    assert "20 beads averaged" in err and "left out: none" in err
    assert f"--psf {psf}" in out and "--psf-sigma 1.3" in out
    kernel = load_psf(psf)
    assert kernel.ndim == 2 and kernel.sum() == pytest.approx(1.0, abs=1e-5)
    noisy = tmp_path / "noisy.tif"
    tifffile.imwrite(noisy, make_sample((64, 64), sigma=1.3, seed=1).noisy)
    model_file = tmp_path / "m.pt"
    assert main(["train", str(noisy), "--model", str(model_file), "--psf", str(psf), *TINY_ARGS]) == 0
    model = load_model(model_file)
    np.testing.assert_allclose(model.psf, kernel, atol=1e-7)
    assert re.search(r"measured PSF \(\d+, \d+\) \(≈ Gaussian sigma 1\.[23]\d x 1\.[23]\d px\)", model.summary())


def test_a_stack_gives_a_3d_psf_with_sizes_in_nm(beads3d, tmp_path, capsys):
    psf = tmp_path / "psf3d.tif"
    assert main(["beads", str(beads3d), "--out", str(psf), "--bead-size", "100"]) == 0
    out, err = capsys.readouterr()
    assert load_psf(psf, ndim=3).ndim == 3
    assert re.search(r"z 2\.[12]\d planes \(4[34]\d nm\)", err)  # about 2.2 planes of 200 nm
    assert "FWHM (measured profile): z" in err and "bead size taken out" in err
    assert "--3d --psf" in out
    from napari_deconoising.core.lazy_io import open_lazy

    written = open_lazy(psf)  # the voxel size travels with the PSF
    assert written.axes == "ZYX" and np.allclose(written.scale, (0.2, 0.065, 0.065), rtol=1e-3)
    # and a 3D model trains with it, on a stack of the same sampling (no pixel-size warning)
    from napari_deconoising.core import make_sample_3d

    vol = tmp_path / "vol.tif"
    tifffile.imwrite(vol, make_sample_3d((8, 48, 48), sigma=(2.2, 1.1, 1.1), seed=0).noisy, imagej=True,
                     resolution=(1 / 0.065, 1 / 0.065), metadata={"axes": "ZYX", "spacing": 0.2, "unit": "um"})
    model_file = tmp_path / "m3d.pt"
    args = [a if a != "32" else "8" for a in TINY_ARGS]  # 8-plane patches: one value for Z, Y and X
    assert main(["train", str(vol), "--3d", "--model", str(model_file), "--psf", str(psf), *args]) == 0
    assert "another pixel size" not in capsys.readouterr().err
    model = load_model(model_file)
    assert model.config.ndim == 3 and model.psf.shape == load_psf(psf, ndim=3).shape


def test_channels_one_at_a_time(beads2d, tmp_path, capsys):
    two = tmp_path / "two.tif"
    image = tifffile.imread(beads2d)
    tifffile.imwrite(two, np.stack([image, image]), imagej=True, metadata={"axes": "CYX"})
    assert main(["beads", str(two), "--out", str(tmp_path / "p.tif")]) == 2
    assert "has 2 channels: choose one with --channel 1..2" in capsys.readouterr().err
    assert main(["beads", str(two), "--out", str(tmp_path / "p.tif"), "--channel", "2", "--pixel-size", "65"]) == 0
    assert "(84 nm)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, msg", [
    (["--bead-size", "100"], "--bead-size needs the pixel size"),
    (["--box", "8"], "odd and at least 3"),
    (["--box", "9", "9", "9"], "--box takes one value or one per axis"),
    (["--channel", "1"], "no C axis"),
    (["--pixel-size", "65", "65", "65"], "--pixel-size takes one value"),
    (["--axes", "SYX"], "does not fit the shape"),
    (["--threshold", "0"], "--threshold must be positive"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(beads2d, tmp_path, capsys, extra, msg):
    psf = tmp_path / "psf.tif"
    assert main(["beads", str(beads2d), "--out", str(psf), *extra]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert not psf.exists()


def test_noise_only_and_the_input_as_output(tmp_path, capsys):
    noise = tmp_path / "noise.tif"
    tifffile.imwrite(noise, np.random.default_rng(0).poisson(100, (128, 128)).astype(np.uint16))
    assert main(["beads", str(noise), "--out", str(tmp_path / "p.tif")]) == 2
    assert "no beads found" in capsys.readouterr().err
    before = noise.read_bytes()
    assert main(["beads", str(noise), "--out", str(noise)]) == 2
    assert "refusing to overwrite the input image" in capsys.readouterr().err and noise.read_bytes() == before


def test_the_zarr_store_holding_the_bead_image_is_never_replaced(beads2d, tmp_path, capsys):
    from napari_deconoising.core.io import read_image, write_image

    image = tifffile.imread(beads2d)
    write_image(tmp_path / "bz.zarr", image, "YX")
    inner = next(p for p in (tmp_path / "bz.zarr").iterdir() if p.is_dir())  # the store's array
    assert main(["beads", str(inner), "--out", str(tmp_path / "bz.zarr")]) == 2
    assert "holds it" in capsys.readouterr().err
    np.testing.assert_array_equal(read_image(tmp_path / "bz.zarr")[0], image)


def test_training_warns_when_the_psf_was_measured_at_another_pixel_size(beads2d, tmp_path, capsys):
    psf = tmp_path / "psf.tif"
    assert main(["beads", str(beads2d), "--out", str(psf), "--pixel-size", "65"]) == 0
    noisy = make_sample((64, 64), sigma=1.3, seed=1).noisy
    for name, um in (("at100.tif", 0.1), ("at65.tif", 0.065)):
        tifffile.imwrite(tmp_path / name, noisy, imagej=True, resolution=(1 / um, 1 / um), metadata={"unit": "um"})
    capsys.readouterr()
    assert main(["train", str(tmp_path / "at100.tif"), "--model", str(tmp_path / "m.pt"), "--psf", str(psf),
                 *TINY_ARGS]) == 0
    err = capsys.readouterr().err
    assert "was made at another pixel size" in err and "Y 65 nm against 100 nm" in err
    assert main(["train", str(tmp_path / "at65.tif"), "--model", str(tmp_path / "m2.pt"), "--psf", str(psf),
                 *TINY_ARGS]) == 0
    assert "another pixel size" not in capsys.readouterr().err


def test_a_5d_ome_zarr_with_one_time_point_and_channel(tmp_path, capsys):
    from napari_deconoising.core.io import write_image

    stack, _ = make_beads((24, 96, 96), (2.0, 1.1, 1.1), n=6, seed=3, photons=20000, min_distance=14)
    write_image(tmp_path / "beads.zarr", stack[None, None], "TCZYX", scale=(1.0, 1.0, 0.2, 0.065, 0.065),
                units=("second", None, "micrometer", "micrometer", "micrometer"))
    assert main(["beads", str(tmp_path / "beads.zarr"), "--out", str(tmp_path / "psf.tif")]) == 0
    assert load_psf(tmp_path / "psf.tif", ndim=3).ndim == 3
    assert "planes (" in capsys.readouterr().err  # the Z step reached nm


def test_a_stack_of_two_planes_is_a_one_line_error(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "thin.tif", make_beads((2, 96, 96), 1.2, n=4, seed=1, margin=0)[0],
                     imagej=True, metadata={"axes": "ZYX"})
    assert main(["beads", str(tmp_path / "thin.tif"), "--out", str(tmp_path / "p.tif")]) == 2
    err = capsys.readouterr().err
    assert "at least 3 planes" in err and err.count("\n") == 1
