"""The command line never destroys the user's files, and says what is wrong in its own terms."""

from __future__ import annotations

import os
import stat
from contextlib import nullcontext

import numpy as np
import pytest
import tifffile

from napari_deconoising.cli import main
from napari_deconoising.core import make_sample
from napari_deconoising.core.channels import load_model
from napari_deconoising.core.config import DECODERS

TINY = ["--depth", "2", "--channels", "8", "--patch-size", "32", "--batch-size", "2", "--epochs", "1",
        "--steps-per-epoch", "1", "--device", "cpu", "--precision", "fp32"]
PRED = ["--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("safety")
    s = make_sample((64, 64), sigma=1.0, seed=5)
    tifffile.imwrite(d / "img.tif", s.noisy)
    tifffile.imwrite(d / "cyx.tif", np.stack([s.noisy, s.noisy.T]), metadata={"axes": "CYX"})
    assert main(["train", str(d / "img.tif"), "--model", str(d / "m.pt"), *TINY]) == 0
    return d


def _fails(argv, capsys, msg):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err, err
    return err


def test_train_never_overwrites_an_input_with_the_model(d, capsys, tmp_path):
    image = tmp_path / "in.tif"
    image.write_bytes((d / "img.tif").read_bytes())
    before = image.read_bytes()
    _fails(["train", image, "--model", image, *TINY], capsys, "a model file ends in .pt")
    (tmp_path / "in.pt").write_bytes(before)  # an image under a model's name is still the input
    _fails(["train", tmp_path / "in.pt", "--model", tmp_path / "in.pt", *TINY], capsys,
           "refusing to overwrite the input image")
    assert image.read_bytes() == before
    (tmp_path / "adir").mkdir()
    _fails(["train", image, "--model", tmp_path / "adir", *TINY], capsys, "is a folder")  # before training


def test_a_channel_image_with_others_is_refused(d, capsys):
    _fails(["train", d / "img.tif", d / "cyx.tif", "--model", d / "mix.pt", *TINY], capsys,
           "cyx.tif has 2 channels (axis C): an image with channels is trained on its own")


def test_a_batch_never_writes_over_one_of_its_inputs(d, capsys, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "cell.tif").write_bytes((d / "img.tif").read_bytes())
    (folder / "cell_denoised.tif").write_bytes((d / "img.tif").read_bytes())  # the user's own file
    before = (folder / "cell_denoised.tif").read_bytes()
    _fails(["predict", d / "m.pt", folder, "--output-dir", folder, *PRED], capsys,
           "refusing to overwrite the input image")
    assert (folder / "cell_denoised.tif").read_bytes() == before


def test_a_failed_run_leaves_no_empty_output_folder(d, capsys, tmp_path):
    _fails(["predict", d / "m.pt", tmp_path / "missing.tif", "--output-dir", tmp_path / "fresh" / "sub", *PRED],
           capsys, "not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()  # a folder the user made stays, empty or not
    _fails(["predict", d / "m.pt", tmp_path / "missing.tif", "--output-dir", tmp_path / "kept", *PRED],
           capsys, "not found")
    assert (tmp_path / "kept").is_dir()


def test_outputs_that_would_lose_data_are_refused(d, capsys, tmp_path):
    _fails(["predict", d / "m.pt", d / "img.tif", "--denoised", tmp_path / "same.tif", "--deconvolved",
            tmp_path / "same.tif", *PRED], capsys, "--denoised and --deconvolved name the same file")
    keep = tmp_path / "keep.zarr"
    keep.mkdir()
    (keep / "notes.txt").write_text("important")
    _fails(["predict", d / "m.pt", d / "img.tif", "--denoised", keep, *PRED], capsys,
           "is a folder that is not a zarr image; refusing to replace it")
    assert (keep / "notes.txt").read_text() == "important"
    (tmp_path / "dir.tif").mkdir()
    _fails(["predict", d / "m.pt", d / "img.tif", "--denoised", tmp_path / "dir.tif", *PRED], capsys,
           "is a folder that is not a zarr image")
    (tmp_path / "afile").write_text("x")
    _fails(["predict", d / "m.pt", d / "img.tif", "--output-dir", tmp_path / "afile", *PRED], capsys,
           "is a file, not a folder")
    _fails(["predict", d / "img.tif", d / "m.pt", "--denoised", tmp_path / "o.tif", *PRED], capsys,
           "is an image, not a model: the model comes first")
    _fails(["predict", d / "m.pt", d / "img.tif", "--deconvolved", tmp_path / "o.tif", *PRED], capsys,
           "--deconvolved needs --denoised")


def test_a_zarr_output_replaces_an_earlier_zarr_output(d, tmp_path):
    out = tmp_path / "den.zarr"
    for _ in range(2):  # the second run replaces the first one's store
        assert main([str(a) for a in ["predict", d / "m.pt", d / "img.tif", "--denoised", out, *PRED]]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["den.zarr"]


def test_outputs_get_the_usual_permissions(d, tmp_path):
    old = os.umask(0o022)
    try:
        assert main([str(a) for a in ["train", d / "img.tif", "--model", tmp_path / "m.pt", *TINY]]) == 0
        assert main([str(a) for a in ["predict", tmp_path / "m.pt", d / "img.tif", "--output-dir",
                                      tmp_path / "out", *PRED]]) == 0
        assert main([str(a) for a in ["predict", tmp_path / "m.pt", d / "img.tif", "--denoised",
                                      tmp_path / "den.zarr", *PRED]]) == 0
    finally:
        os.umask(old)
    for p in (tmp_path / "m.pt", tmp_path / "out" / "img_denoised.tif", tmp_path / "out" / "img_deconvolved.tif"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p  # mkstemp alone gives 0600
    assert stat.S_IMODE((tmp_path / "den.zarr").stat().st_mode) == 0o755


@pytest.mark.parametrize("argv, msg", [
    (["predict", "{d}/m.pt", "{d}/img.tif", "--denoised", "{t}/o.tif", "--workers", "-2"], "must be at least 1"),
    (["predict", "{d}/m.pt", "{d}/img.tif", "--denoised", "{t}/o.tif", "--scheduler", "garbage"],
     "cannot start or reach the Dask scheduler at garbage"),
    (["demo", "--size", "0", "--out", "{t}/demo"], "--size must be at least 64"),
    (["predict", "{d}", "{d}/img.tif", "--denoised", "{t}/o.tif"], "is a folder, not a model file"),
])
def test_bad_options_are_one_line_errors(d, tmp_path, capsys, argv, msg):
    argv = [a.format(d=d, t=tmp_path) for a in argv]
    with pytest.raises(SystemExit) if "--workers" in argv else nullcontext():  # argparse exits with 2
        code = main(argv)
        assert code == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err, err
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "demo").exists()



def test_setting_errors_name_the_flag(d, capsys):
    _fails(["train", d / "img.tif", "--model", d / "x.pt", "--batch-size", "0"], capsys,
           "error: --batch-size 0: must be a whole number >= 1")
    _fails(["train", d / "img.tif", "--model", d / "x.pt", "--lr", "5"], capsys, "error: --lr 5.0: must be between")


def test_resume_says_that_it_keeps_the_network(d, capsys, tmp_path):
    kept = load_model(d / "m.pt").config.decoder
    other = next(k for k in DECODERS if k != kept)
    assert main([str(a) for a in ["train", d / "img.tif", "--model", tmp_path / "r.pt", "--resume", d / "m.pt",
                                  *TINY[:-8], "--depth", "4", "--channels", "16", *TINY[-8:]]]) == 0
    err = capsys.readouterr().err
    assert "warning: --depth 4 is ignored: a resumed model keeps its network (depth 2)" in err
    assert "warning: --channels 16 is ignored" in err
    assert main([str(a) for a in ["train", d / "img.tif", "--model", tmp_path / "r2.pt", "--resume", d / "m.pt",
                                  "--psf-sigma", "2", "--n2v2", "--decoder", other, *TINY]]) == 0
    err = capsys.readouterr().err
    assert "warning: --psf-sigma is ignored: a resumed model keeps its PSF" in err
    assert "warning: --n2v2 is ignored" in err
    assert f"warning: --decoder {other} is ignored: a resumed model keeps its network (decoder {kept})" in err
    assert load_model(tmp_path / "r2.pt").config.decoder == kept


def test_train_reads_a_folder_of_images(d, capsys, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for k in range(2):
        (folder / f"field{k}.tif").write_bytes((d / "img.tif").read_bytes())
    assert main([str(a) for a in ["train", folder, "--model", tmp_path / "f.pt", *TINY]]) == 0
    _fails(["train", tmp_path / "empty*.tif", "--model", tmp_path / "g.pt", *TINY], capsys, "no files match")


def test_an_output_inside_or_around_a_zarr_input_is_refused(d, capsys, tmp_path):
    from napari_deconoising.core.io import read_image, write_image

    image = read_image(d / "img.tif")[0]
    write_image(tmp_path / "img.zarr", image, "YX")
    _fails(["predict", d / "m.pt", tmp_path / "img.zarr", "--denoised", tmp_path / "img.zarr" / "0", *PRED], capsys,
           f"refusing to overwrite the input image {tmp_path / 'img.zarr'}: the output {tmp_path / 'img.zarr' / '0'} "
           "lies inside it")
    _fails(["predict", d / "m.pt", tmp_path / "img.zarr" / "0", "--denoised", tmp_path / "img.zarr", *PRED], capsys,
           "the output " + str(tmp_path / "img.zarr") + " holds it")
    np.testing.assert_array_equal(read_image(tmp_path / "img.zarr")[0], image)
