"""``deconoising export`` and ``predict`` with a bioimage.io package."""

import zipfile

import numpy as np
import pytest
import tifffile
import yaml

from napari_deconoising.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory, trained, sample):
    d = tmp_path_factory.mktemp("cli_export")
    trained.save(d / "m.pt")
    tifffile.imwrite(d / "noisy.tif", sample.noisy)
    return d


@pytest.mark.slow
def test_export_then_predict_with_the_zip_equals_the_pt(files, capsys, needs_bioimageio):
    pkg = files / "m.zip"
    assert main(["export", str(files / "m.pt"), str(pkg), "--name", "tiny cli model", "--author", "Ada Lovelace",
                 "--author", "Alan Turing", "--sample", str(files / "noisy.tif")]) == 0
    assert "tested" in capsys.readouterr().err
    with zipfile.ZipFile(pkg) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
    assert rdf["name"] == "tiny cli model" and len(rdf["authors"]) == 2
    outs = {}
    for source in ("m.pt", "m.zip"):
        out = files / f"den_{source}.tif"
        # fp32: "auto" measures each time the CPU is busy, and may choose differently for the two runs
        assert main(["predict", str(files / source), str(files / "noisy.tif"), "--denoised", str(out),
                     "--device", "cpu", "--precision", "fp32"]) == 0
        outs[source] = tifffile.imread(out)
    np.testing.assert_array_equal(outs["m.pt"], outs["m.zip"])


@pytest.mark.parametrize("args, msg", [
    (["{d}/m.pt", "{d}/out.tar"], "must be a .zip"),
    (["{d}/m.pt", "{d}/nofolder/out.zip"], "folder does not exist"),
    (["{d}/missing.pt", "{d}/out.zip"], "not found"),
])
def test_export_bad_arguments_fail_cleanly(files, capsys, args, msg):
    assert main(["export", *[a.format(d=files) for a in args], "--author", "A"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deconoising: error:") and msg in err and err.count("\n") == 1
    assert not (files / "out.zip").exists()


def test_export_refuses_a_folder_before_any_work(files, capsys):
    (files / "dir.zip").mkdir(exist_ok=True)
    assert main(["export", str(files / "m.pt"), str(files / "dir.zip"), "--author", "A"]) == 2
    assert "dir.zip is a folder; refusing to replace it" in capsys.readouterr().err


def test_default_package_names_are_names_bioimageio_accepts():
    from napari_deconoising.bioimageio.export import package_name

    assert package_name("DecoNoising model.v2") == "DecoNoising model v2"
    assert package_name("DecoNoising gau2d [2]") == "DecoNoising gau2d 2"  # a session's second model
    assert package_name("DecoNoising très#1") == "DecoNoising tres 1"
    assert len(package_name("x" * 300)) == 128


def test_a_typed_name_bioimageio_refuses_is_a_plain_error(files, capsys, needs_bioimageio):
    assert main(["export", str(files / "m.pt"), str(files / "named.zip"), "--author", "A",
                 "--name", "Modèle v2.0"]) == 2
    err = capsys.readouterr().err
    assert "may hold only letters a-z A-Z, digits, spaces and _ + - ( ), at most 128 characters; not '.' 'è'" in err
    assert "pydantic" not in err and not (files / "named.zip").exists()


def test_export_needs_an_author(files, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", str(files / "m.pt"), str(files / "out.zip")])
    assert e.value.code == 2 and "--author" in capsys.readouterr().err


def test_predict_with_a_foreign_package_says_what_to_do(files, capsys):
    pkg = files / "foreign.zip"
    with zipfile.ZipFile(pkg, "w") as z:
        z.writestr("rdf.yaml", yaml.safe_dump({"type": "model", "name": "someone else's",
                                               "weights": {"torchscript": {"source": "w.pt"}}}))
    out = files / "never.tif"
    assert main(["predict", str(pkg), str(files / "noisy.tif"), "--denoised", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deconoising: error:") and "run it with bioimageio.core instead" in err
    assert not out.exists()


def test_export_refuses_a_two_channel_sample_for_a_single_channel_model(files, sample, capsys, needs_bioimageio):
    tifffile.imwrite(files / "cyx.tif", np.stack([sample.noisy, sample.noisy]), metadata={"axes": "CYX"})
    out = files / "never.zip"
    assert main(["export", str(files / "m.pt"), str(out), "--author", "A", "--sample", str(files / "cyx.tif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("deconoising: error: ") and "has 2 channels (axis C)" in err[-1]
    assert not out.exists()
