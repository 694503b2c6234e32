"""The command line's PSF-from-optics options: ``train --psf-optics`` and ``deconoising psf``."""

import re

import numpy as np
import pytest
import tifffile

from napari_deconoising.cli import main
from napari_deconoising.core import load_model, make_sample

pytest.importorskip("psf")

from napari_deconoising.core.optics import gaussian_sigma, optics_psf, parse_optics  # noqa: E402

OPTICS = "na=1.4,wavelength=520,n=1.518,pixel=65,z_step=200,modality=widefield"
TINY_ARGS = ["--depth", "2", "--channels", "8", "--patch-size", "32", "--batch-size", "4",
             "--epochs", "1", "--steps-per-epoch", "2", "--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_optics") / "noisy.tif"
    tifffile.imwrite(path, make_sample((64, 64), sigma=1.2, seed=1).noisy)
    return path


def test_train_with_psf_optics_stores_them(noisy, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["train", str(noisy), "--model", str(out), "--psf-optics", OPTICS, *TINY_ARGS]) == 0
    err = capsys.readouterr().err
    sigma = gaussian_sigma(parse_optics(OPTICS))[1]
    assert f"≈ Gaussian sigma {sigma:.2f} px" in err and "PSF from optics" in err
    model = load_model(out)
    assert model.config.psf == "measured" and model.config.optics == parse_optics(OPTICS)
    np.testing.assert_array_equal(model.psf, optics_psf(parse_optics(OPTICS)))
    assert "widefield PSF NA 1.4" in model.summary()


@pytest.mark.parametrize("extra, msg", [
    (["--psf-optics", "na=1.4,wavelength=520,n=1.518"], "missing pixel"),
    (["--psf-optics", "na=1.6,wavelength=520,n=1.518,pixel=65"], "is impossible"),
    (["--psf-optics", "na=1.4,wavelength=520,n=1.518,pixel=65,colour=green"], "unknown key 'colour'"),
    (["--psf-optics", OPTICS, "--resume", "{d}/m.pt"], "keeps its own PSF"),
])
def test_train_bad_optics_fail_cleanly(noisy, tmp_path, capsys, extra, msg):
    out = tmp_path / "never.pt"
    extra = [a.format(d=tmp_path) for a in extra]
    assert main(["train", str(noisy), "--model", str(out), *extra, *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deconoising: error:") and msg in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_psf_optics_excludes_the_other_psf_options(noisy, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(noisy), "--model", str(tmp_path / "m.pt"), "--psf-optics", OPTICS, "--psf-sigma", "1"])
    assert exc.value.code == 2


@pytest.mark.parametrize("args, shape, axes", [
    ([], (25, 25), "YX"),
    (["--3d"], (11, 25, 25), "ZYX"),
    (["--3d", "--size", "5", "9", "9"], (5, 9, 9), "ZYX"),
])
def test_psf_command_writes_the_psf_and_prints_sigma(tmp_path, capsys, args, shape, axes):
    out = tmp_path / "psf.tif"
    assert main(["psf", OPTICS, "--out", str(out), *args]) == 0
    with tifffile.TiffFile(out) as tif:
        data = tif.asarray()
        assert tif.series[0].axes == axes
        # the voxel size it was computed for, in µm as ImageJ stores it (65 nm pixels, 200 nm planes)
        assert tif.imagej_metadata["unit"] == "um" and tif.pages.first.resolution == pytest.approx((1 / 0.065,) * 2)
        assert tif.imagej_metadata.get("spacing") == (pytest.approx(0.2) if axes == "ZYX" else None)
    assert data.shape == shape and data.sum() == pytest.approx(1.0, abs=1e-5)
    sz, sy, _ = gaussian_sigma(parse_optics(OPTICS))
    assert f"y {sy:.3f} px" in capsys.readouterr().out


@pytest.mark.parametrize("args, msg", [
    ([OPTICS, "--out", "{d}/psf.png"], "not supported"),
    ([OPTICS, "--out", "{d}/missing/psf.tif"], "output folder does not exist"),
    (["na=1.4,wavelength=520,n=1.518,pixel=65", "--out", "{d}/psf.tif", "--3d"], "Z step"),
    ([OPTICS, "--out", "{d}/psf.tif", "--size", "4"], "odd"),
    ([OPTICS + ",excitation=488", "--out", "{d}/psf.tif"], "excitation apply to a confocal microscope only"),
    ([OPTICS.replace("wavelength=520", "wavelength=0.52"), "--out", "{d}/psf.tif"], "wavelength=0.52: expected"),
])
def test_psf_command_bad_input_fails_cleanly(tmp_path, capsys, args, msg):
    assert main(["psf", *[a.format(d=tmp_path) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deconoising: error:") and msg in err and err.count("\n") == 1
    assert not (tmp_path / "psf.tif").exists()


def test_psf_command_warns_when_the_size_cuts_the_psf(tmp_path, capsys):
    assert main(["psf", OPTICS, "--out", str(tmp_path / "psf.tif"), "--size", "3"]) == 0
    err = capsys.readouterr().err
    # one line, as every message of the command line, not Python's warning with its source line
    assert re.search(r"^deconoising: warning: a PSF of size 3 x 3 keeps only \d+% of the light", err, re.M)
    assert "DataWarning" not in err and "optics_psf(" not in err
    assert tifffile.imread(tmp_path / "psf.tif").shape == (3, 3)


@pytest.fixture(scope="module")
def cyx(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_optics_c") / "cyx.tif"
    a, b = make_sample((64, 64), sigma=1.2, seed=1), make_sample((64, 64), sigma=1.5, seed=2)
    tifffile.imwrite(path, np.stack([a.noisy, b.noisy]), metadata={"axes": "CYX"})
    return path


def test_psf_optics_once_per_channel(cyx, tmp_path, capsys):
    green, red = OPTICS, OPTICS.replace("wavelength=520", "wavelength=670")
    out = tmp_path / "c.pt"
    assert main(["train", str(cyx), "--model", str(out), "--psf-optics", green, "--psf-optics", red, *TINY_ARGS]) == 0
    err = capsys.readouterr().err
    assert "channel 1/2: PSF from optics: widefield PSF NA 1.4, 520 nm" in err
    assert "channel 2/2: PSF from optics: widefield PSF NA 1.4, 670 nm" in err
    model = load_model(out)
    assert [m.config.optics for m in model.models] == [parse_optics(green), parse_optics(red)]
    np.testing.assert_array_equal(model.models[1].psf, optics_psf(parse_optics(red)))
    assert model.models[1].psf.shape[0] > model.models[0].psf.shape[0]  # longer wavelength, wider PSF
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out.splitlines()
    assert "channel 1: U-Net" in info[1] and "520 nm" in info[1]
    assert "channel 2: U-Net" in info[2] and "670 nm" in info[2]


def test_psf_optics_given_once_applies_to_every_channel(cyx, tmp_path):
    out = tmp_path / "c.pt"
    assert main(["train", str(cyx), "--model", str(out), "--psf-optics", OPTICS, *TINY_ARGS]) == 0
    assert [m.config.optics for m in load_model(out).models] == [parse_optics(OPTICS)] * 2


def test_psf_optics_count_must_match_the_channels(cyx, noisy, tmp_path, capsys):
    out = tmp_path / "never.pt"
    assert main(["train", str(cyx), "--model", str(out), *["--psf-optics", OPTICS] * 3, *TINY_ARGS]) == 2
    assert main(["train", str(noisy), "--model", str(out), *["--psf-optics", OPTICS] * 2, *TINY_ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == ("deconoising: error: --psf-optics given 3 times but the image has 2 channels: give it once "
                      "for all channels or once per channel, in channel order")
    assert err[1].startswith("deconoising: error: --psf-optics given 2 times but the image has no channel axis")
    assert len(err) == 2 and not out.exists()


def test_resume_keeps_the_optics(noisy, tmp_path):
    first, second = tmp_path / "m.pt", tmp_path / "m2.pt"
    assert main(["train", str(noisy), "--model", str(first), "--psf-optics", OPTICS, *TINY_ARGS]) == 0
    assert main(["train", str(noisy), "--model", str(second), "--resume", str(first), *TINY_ARGS]) == 0
    model = load_model(second)
    assert model.config.optics == parse_optics(OPTICS) and len(model.history) == 2
    assert "widefield PSF NA 1.4" in model.summary()
