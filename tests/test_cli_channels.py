"""``deconoising train/predict`` on images with a channel axis: one model per channel, one file."""

import numpy as np
import pytest
import tifffile
from test_cli import TINY_ARGS

from napari_deconoising.cli import main
from napari_deconoising.core import ChannelModels, load_model, make_sample


@pytest.fixture(scope="module")
def cyx(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_channels")
    a, b = make_sample((64, 64), sigma=1.0, seed=1), make_sample((64, 64), sigma=2.0, seed=2)
    tifffile.imwrite(d / "cyx.tif", np.stack([a.noisy, 3 * b.noisy]), metadata={"axes": "CYX"})
    tifffile.imwrite(d / "yx.tif", a.noisy)
    return d


def test_train_per_channel_psf_and_predict_keeps_c(cyx, capsys):
    model = cyx / "c.pt"
    assert main(["train", str(cyx / "cyx.tif"), "--axes", "CYX", "--psf-sigma", "1", "--psf-sigma", "2",
                 "--model", str(model), *TINY_ARGS]) == 0
    err = capsys.readouterr().err
    assert "channel 1/2: training" in err and "channel 2/2: training" in err
    loaded = load_model(model)
    assert isinstance(loaded, ChannelModels)
    assert [m.config.psf_sigma for m in loaded.models] == [1.0, 2.0]
    den, dec = cyx / "den.tif", cyx / "dec.tif"
    # fp32 on both sides: "auto" measures, and a busy machine can make the two calls choose differently
    assert main(["predict", str(model), str(cyx / "cyx.tif"), "--denoised", str(den), "--deconvolved", str(dec),
                 "--device", "cpu", "--precision", "fp32"]) == 0
    image = tifffile.imread(cyx / "cyx.tif")
    with tifffile.TiffFile(den) as f:
        assert f.series[0].axes == "CYX" and f.asarray().shape == image.shape
    expected = loaded.predict(image, "CYX", device="cpu", precision="fp32")
    np.testing.assert_allclose(tifffile.imread(dec), expected.deconvolved, rtol=1e-5, atol=1e-5)


def test_one_psf_sigma_applies_to_every_channel(cyx):
    model = cyx / "one.pt"
    assert main(["train", str(cyx / "cyx.tif"), "--psf-sigma", "1.5", "--model", str(model), *TINY_ARGS,
                 "--epochs", "1"]) == 0
    assert [m.config.psf_sigma for m in load_model(model).models] == [1.5, 1.5]


@pytest.mark.parametrize("case, msg", [
    (["cyx.tif", "--psf-sigma", "1", "--psf-sigma", "2", "--psf-sigma", "3"],
     "--psf-sigma given 3 times but the image has 2 channels"),
    (["yx.tif", "--psf-sigma", "1", "--psf-sigma", "2"], "--psf-sigma given 2 times but the image has no channel"),
    (["cyx.tif", "--psf", "a.tif", "--psf", "b.tif", "--psf", "c.tif"], "--psf given 3 times"),
])
def test_psf_count_must_match_the_channels(cyx, capsys, case, msg):
    out = cyx / "never.pt"
    assert main(["train", str(cyx / case[0]), *case[1:], "--model", str(out), *TINY_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deconoising: error: ") and msg in err and "\n" not in err
    assert not out.exists()


def test_a_measured_psf_file_per_channel(cyx, capsys):
    from napari_deconoising.core import gaussian_psf

    tifffile.imwrite(cyx / "narrow.tif", gaussian_psf(1.0))
    tifffile.imwrite(cyx / "wide.tif", gaussian_psf(2.0))
    tifffile.imwrite(cyx / "bead3d.tif", gaussian_psf(1.0, ndim=3))
    model = cyx / "psfs.pt"
    assert main(["train", str(cyx / "cyx.tif"), "--psf", str(cyx / "wide.tif"), "--psf", str(cyx / "narrow.tif"),
                 "--model", str(model), *TINY_ARGS, "--epochs", "1"]) == 0
    loaded = load_model(model)
    assert [m.psf.shape for m in loaded.models] == [gaussian_psf(2.0).shape, gaussian_psf(1.0).shape]
    assert all(m.config.psf == "measured" for m in loaded.models)
    capsys.readouterr()
    out = cyx / "never_psf.pt"
    assert main(["train", str(cyx / "cyx.tif"), "--psf", str(cyx / "wide.tif"), "--psf", str(cyx / "bead3d.tif"),
                 "--model", str(out), *TINY_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert "channel 2/2: bead3d.tif: PSF has 3 dimensions" in err and "\n" not in err and not out.exists()


def test_3d_channels_each_with_a_zyx_sigma(cyx, capsys):
    from napari_deconoising.core.sample3d import make_sample_3d

    v = make_sample_3d((8, 32, 32), sigma=(2.0, 1.0, 1.0), seed=4)
    tifffile.imwrite(cyx / "czyx.tif", np.stack([v.noisy, 2 * v.noisy]), metadata={"axes": "CZYX"})
    model = cyx / "c3d.pt"
    tiny = [a for a in TINY_ARGS if a not in ("--patch-size", "32")]
    assert main(["train", str(cyx / "czyx.tif"), "--3d", "--psf-sigma", "2", "1", "1", "--psf-sigma", "1",
                 "--patch-size", "8", "32", "32", "--model", str(model), *tiny, "--epochs", "1"]) == 0
    loaded = load_model(model)
    assert [m.config.psf_sigma for m in loaded.models] == [(2.0, 1.0, 1.0), 1.0]
    assert all(m.config.ndim == 3 for m in loaded.models)
    den = cyx / "den3d.tif"
    assert main(["predict", str(model), str(cyx / "czyx.tif"), "--denoised", str(den), "--device", "cpu"]) == 0
    assert tifffile.imread(den).shape == (2, 8, 32, 32)


def test_resume_continues_every_channel(cyx, capsys):
    first, resumed = cyx / "r1.pt", cyx / "r2.pt"
    assert main(["train", str(cyx / "cyx.tif"), "--psf-sigma", "1", "--psf-sigma", "2", "--model", str(first),
                 *TINY_ARGS, "--epochs", "1"]) == 0
    assert main(["train", str(cyx / "cyx.tif"), "--resume", str(first), "--model", str(resumed), *TINY_ARGS,
                 "--epochs", "1"]) == 0
    err = capsys.readouterr().err
    assert "channel 2/2: training" in err
    before, after = load_model(first), load_model(resumed)
    assert isinstance(after, ChannelModels)
    assert [len(m.history) for m in after.models] == [2, 2]
    assert [m.config.psf_sigma for m in after.models] == [1.0, 2.0]
    assert [m.history[0] for m in after.models] == [m.history[0] for m in before.models]
    assert [(m.mean, m.std) for m in after.models] == [(m.mean, m.std) for m in before.models]


@pytest.fixture(scope="module")
def resume_cases(cyx):
    """A single-channel model, a 2-channel 2D model and a 3-channel image."""
    assert main(["train", str(cyx / "yx.tif"), "--model", str(cyx / "single.pt"), *TINY_ARGS, "--epochs", "1"]) == 0
    assert main(["train", str(cyx / "cyx.tif"), "--model", str(cyx / "pair.pt"), *TINY_ARGS, "--epochs", "1"]) == 0
    image = tifffile.imread(cyx / "cyx.tif")
    tifffile.imwrite(cyx / "c3.tif", np.concatenate([image, image[:1]]), metadata={"axes": "CYX"},
                     photometric="minisblack")
    v = np.stack([image] * 8, axis=1)  # CZYX, 8 planes
    tifffile.imwrite(cyx / "c2z.tif", v, metadata={"axes": "CZYX"})
    tifffile.imwrite(cyx / "zyx.tif", v[0], metadata={"axes": "ZYX"})
    return cyx


@pytest.mark.parametrize("image, model, extra, msg", [
    ("cyx.tif", "single.pt", [], "one network, for images without a channel axis"),
    ("c3.tif", "pair.pt", [], "has 2 channels but the image has 3"),
    ("yx.tif", "pair.pt", [], "holds one model per channel (2 channels): resume needs an image with 2 channels"),
    # the way to 2D is the command line's (no 'Train widget', no TrainConfig)
    ("c2z.tif", "pair.pt", ["--3d", "--patch-size", "8", "32", "32"],
     "channel 1 of the model to resume is 2D; train it in 2D (without --3d)"),
    ("zyx.tif", "single.pt", ["--3d", "--patch-size", "8", "32", "32"],
     "the model to resume is 2D; train it in 2D (without --3d)"),
])
def test_resume_that_does_not_fit_fails_cleanly(resume_cases, capsys, image, model, extra, msg):
    d = resume_cases
    out = d / "never.pt"
    tiny = [a for a in TINY_ARGS if a not in ("--patch-size", "32")] if extra else TINY_ARGS
    assert main(["train", str(d / image), "--resume", str(d / model), "--model", str(out), *tiny, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deconoising: error: ") and msg in err and "\n" not in err
    assert not out.exists()


def test_info_prints_every_channel(resume_cases, capsys):
    assert main(["info", str(resume_cases / "pair.pt")]) == 0
    out = capsys.readouterr().out
    assert "one model per channel, 2 channels" in out and "channel 1: U-Net" in out and "channel 2: U-Net" in out


def test_resume_keeps_how_sigma_was_chosen(resume_cases, tmp_path, capsys):
    from conftest import learned_estimate

    d = resume_cases
    single, pair = load_model(d / "single.pt"), load_model(d / "pair.pt")
    single.psf_estimate = learned_estimate(single.config.psf_sigma)
    pair.models[1].psf_estimate = learned_estimate(pair.models[1].config.psf_sigma)  # channel 1's was typed in
    single.save(tmp_path / "single.pt")
    pair.save(tmp_path / "pair.pt")
    for image, name in (("yx.tif", "single.pt"), ("cyx.tif", "pair.pt")):
        assert main(["train", str(d / image), "--resume", str(tmp_path / name),
                     "--model", str(tmp_path / f"more-{name}"), *TINY_ARGS, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert load_model(tmp_path / "more-single.pt").psf_estimate == single.psf_estimate
    assert [m.psf_estimate for m in load_model(tmp_path / "more-pair.pt").models] == [None, pair.models[1].psf_estimate]
    assert main(["info", str(tmp_path / "more-pair.pt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "estimated" not in lines[1] and "(estimated from the data)" in lines[2], lines


def test_info_on_a_missing_file_fails_cleanly(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.pt")]) == 2
    assert capsys.readouterr().err.startswith("deconoising: error: model file not found")


@pytest.mark.slow
def test_export_a_model_per_channel_then_predict_with_the_zip(resume_cases, capsys, needs_bioimageio):
    d = resume_cases
    pkg = d / "pair.zip"
    # the 64 px image is smaller than a test image must be (84 px): a synthetic one per channel
    assert main(["export", str(d / "pair.pt"), str(pkg), "--author", "Ada Lovelace"]) == 0
    assert "tested" in capsys.readouterr().err
    outs = {}
    for source in ("pair.pt", "pair.zip"):
        out = d / f"den_{source}.tif"
        assert main(["predict", str(d / source), str(d / "cyx.tif"), "--denoised", str(out), "--device", "cpu"]) == 0
        outs[source] = tifffile.imread(out)
    assert outs["pair.pt"].shape == (2, 64, 64)
    np.testing.assert_array_equal(outs["pair.pt"], outs["pair.zip"])
    assert main(["info", str(pkg)]) == 0
    assert "one model per channel, 2 channels" in capsys.readouterr().out


def test_export_with_a_sample_without_the_channels_fails_cleanly(resume_cases, capsys, needs_bioimageio):
    out = resume_cases / "never.zip"
    assert main(["export", str(resume_cases / "pair.pt"), str(out), "--author", "A", "--sample",
                 str(resume_cases / "c3.tif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("deconoising: error: ") and "needs 2 channels, one per model" in err[-1]
    assert not out.exists()


def _write_tczyx(path, image):
    """A real 5D OME-Zarr (t, c, z, y, x) as ome-zarr writes it, with a single channel."""
    import zarr
    from ome_zarr.writer import write_image as ome_write

    ome_write(image[None, None].astype(np.float32), zarr.open_group(str(path), mode="w"), axes="tczyx", scaler=None)


def test_a_5d_ome_zarr_with_one_channel_trains_one_model(tmp_path, capsys):
    from napari_deconoising._cli_channels import channel_count, drop_single_channel
    from napari_deconoising.core.lazy_io import open_lazy
    from napari_deconoising.core.ome import open_zarr_level0

    s = make_sample((64, 64), sigma=1.0, seed=3)
    for name in ("a.zarr", "b.zarr"):
        _write_tczyx(tmp_path / name, np.stack([s.noisy, s.noisy]))
    lazy = open_lazy(tmp_path / "a.zarr")
    view, axes = drop_single_channel(lazy.dask(), lazy.axes)
    assert (lazy.axes, axes, view.shape) == ("TCZYX", "TZYX", (1, 2, 64, 64)) and hasattr(view, "dask")
    assert channel_count([lazy.dask()], lazy.axes) == 0
    model = tmp_path / "m.pt"
    # two such files, as a folder of OME-Zarr images is: one model, not "one model per channel"
    assert main(["train", str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"), "--model", str(model),
                 *TINY_ARGS, "--epochs", "1"]) == 0
    assert "channel 1/1" not in capsys.readouterr().err
    assert not isinstance(load_model(model), ChannelModels)
    den = tmp_path / "den.zarr"
    assert main(["predict", str(model), str(tmp_path / "a.zarr"), "--denoised", str(den), "--device", "cpu"]) == 0
    out, out_axes, *_ = open_zarr_level0(den)
    assert (out.shape, out_axes) == ((1, 1, 2, 64, 64), "TCZYX")  # the input's axes, C of one kept
