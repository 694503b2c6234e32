import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_deconoising.cli import main
from napari_deconoising.core import gaussian_psf, load_model, make_sample
from napari_deconoising.core.sample3d import make_sample_3d

TINY_ARGS = ["--depth", "2", "--channels", "8", "--patch-size", "32", "--batch-size", "4",
             "--epochs", "2", "--steps-per-epoch", "2", "--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    s = make_sample((80, 80), sigma=1.5, seed=3)
    tifffile.imwrite(d / "noisy.tif", s.noisy)
    tifffile.imwrite(d / "stack.tif", np.stack([s.noisy, s.noisy.T]), metadata={"axes": "TYX"})
    tifffile.imwrite(d / "psf.tif", gaussian_psf(1.5))
    tifffile.imwrite(d / "psf3d.tif", gaussian_psf(1.5, ndim=3))
    v = make_sample_3d((10, 40, 40), sigma=(2.0, 1.0, 1.0), seed=3)
    tifffile.imwrite(d / "vol.tif", v.noisy, metadata={"axes": "ZYX"})
    tifffile.imwrite(d / "psf3d_measured.tif", gaussian_psf((2.0, 1.0, 1.0), ndim=3))
    bad = s.noisy.copy()
    bad[5, 5] = np.nan
    tifffile.imwrite(d / "nan.tif", bad)
    tifffile.imwrite(d / "rgb.tif", np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(d / "line.tif", np.zeros((64,), np.float32))
    (d / "junk.tif").write_bytes(b"this is not a tiff")
    return d


def test_train_and_predict_end_to_end(files, capsys):
    model = files / "m.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(model), "--psf-sigma", "1.5", *TINY_ARGS]) == 0
    err = capsys.readouterr().err
    assert "estimated" in err and "epoch    2/2" in err
    m = load_model(model)
    assert m.config.psf_sigma == 1.5 and len(m.history) == 2
    out, out2 = files / "den.tif", files / "dec.tif"
    assert main(["predict", str(model), str(files / "stack.tif"), "--denoised", str(out),
                 "--deconvolved", str(out2), "--device", "cpu"]) == 0
    den, dec = tifffile.imread(out), tifffile.imread(out2)
    assert den.shape == dec.shape == (2, 80, 80) and den.dtype == np.float32
    out3 = files / "den_bf16.tif"
    assert main(["predict", str(model), str(files / "stack.tif"), "--denoised", str(out3),
                 "--device", "cpu", "--precision", "bf16"]) == 0
    fast = tifffile.imread(out3)
    assert np.abs(fast - den).max() < 0.05 * (den.max() - den.min())  # close, not identical


def test_train_with_measured_psf_no_psf_and_resume(files):
    m1, m2, m3 = files / "mp.pt", files / "n2v.pt", files / "resumed.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(m1), "--psf", str(files / "psf.tif"),
                 *TINY_ARGS]) == 0
    assert load_model(m1).config.psf == "measured"
    assert main(["train", str(files / "noisy.tif"), "--model", str(m2), "--no-psf", *TINY_ARGS]) == 0
    assert load_model(m2).is_noise2void
    assert main(["train", str(files / "stack.tif"), "--model", str(m3), "--resume", str(m1), *TINY_ARGS]) == 0
    assert len(load_model(m3).history) == 4


@pytest.mark.parametrize("case, msg", [
    (["train", "{d}/missing.tif"], "not found"),
    (["train", "{d}/junk.tif"], "cannot read"),
    (["train", "{d}/noisy.png"], "not supported"),
    (["train", "{d}/nan.tif"], "NaN"),
    (["train", "{d}/rgb.tif"], "channels"),
    (["train", "{d}/line.tif"], "at least 2"),
    (["train", "{d}/noisy.tif", "--psf", "{d}/psf3d.tif"], "2D model needs a 2D PSF"),
    (["train", "{d}/noisy.tif", "--3d"], "needs a Z axis"),
    (["train", "{d}/vol.tif", "--3d", "--psf", "{d}/psf.tif"], "3D model needs a 3D PSF"),
    (["train", "{d}/vol.tif", "--psf-sigma", "2", "1", "1"], "(3 values need --3d)"),
    (["train", "{d}/vol.tif", "--3d", "--patch-size", "8", "32"], "--patch-size takes one value or 3"),
    (["train", "{d}/vol.tif", "--3d", "--patch-size", "2", "32", "32"], "along Z"),
    (["train", "{d}/noisy.tif", "--epochs", "0"], "epochs"),
    (["train", "{d}/noisy.tif", "--resume", "{d}/junk.tif"], "not a readable model"),
    # None cannot be typed on a command line
    (["train", "{d}/noisy.tif", "--lr", "-1"], "--lr -1.0: must be between 0 and 1, or left out for the default"),
    (["train", "{d}/noisy.tif", "--wiener-eps", "5"], "--wiener-eps 5.0: must be in [0, 1] (0: off) or auto"),
])
def test_train_bad_input_fails_cleanly(files, capsys, case, msg):
    out = files / "never.pt"
    case = [a.format(d=files) for a in case]
    args = [case[0], *TINY_ARGS, *case[1:], "--model", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("deconoising: error:") and msg in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("case, msg", [
    (["{d}/junk.tif", "{d}/noisy.tif"], "not a readable model"),
    (["{d}/missing.pt", "{d}/noisy.tif"], "not found"),
    (["{d}/m.pt", "{d}/nan.tif"], "NaN or infinite values (first found at Y=5, X=5)"),
    (["{d}/m.pt", "{d}/missing.tif"], "not found"),
    (["{d}/m.pt", "{d}/noisy.tif", "--axes", "ZYX"], "axes"),
])
def test_predict_bad_input_fails_cleanly(files, capsys, case, msg, trained):
    trained.save(files / "m.pt")
    out = files / "never.tif"
    assert main(["predict", *[a.format(d=files) for a in case], "--denoised", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    # A file is checked as its tiles are read, so the precision line may come first.
    assert err.splitlines()[-1].startswith("deconoising: error:") and msg in err
    assert not out.exists()


def test_predict_checks_the_output_suffix_before_predicting(files, capsys, trained):
    trained.save(files / "m.pt")
    out = files / "never.png"
    assert main(["predict", str(files / "m.pt"), str(files / "noisy.tif"), "--denoised", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deconoising: error:") and "'.png' files are not supported" in err
    assert "tile" not in err and not out.exists()


def test_predict_keeps_the_stack_axes(files, trained, capsys):
    trained.save(files / "m.pt")
    out = files / "stack_den.tif"
    assert main(["predict", str(files / "m.pt"), str(files / "stack.tif"), "--denoised", str(out),
                 "--device", "cpu"]) == 0
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "TYX" and tif.series[0].shape == (2, 80, 80)


def test_predict_refuses_to_overwrite_input(files, capsys, trained):
    trained.save(files / "m.pt")
    before = (files / "noisy.tif").read_bytes()
    assert main(["predict", str(files / "m.pt"), str(files / "noisy.tif"), "--denoised",
                 str(files / "noisy.tif")]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert (files / "noisy.tif").read_bytes() == before


def test_console_script_error_has_no_traceback(files):
    r = subprocess.run([sys.executable, "-m", "napari_deconoising.cli", "predict", str(files / "junk.tif"),
                        str(files / "noisy.tif"), "--denoised", str(files / "x.tif")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("deconoising: error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_demo_smoke(tmp_path, capsys, monkeypatch):
    import napari_deconoising.demo as demo

    monkeypatch.setattr(demo, "DEMO_CONFIG", demo.DEMO_CONFIG.replace(
        depth=2, channels=8, patch_size=32, batch_size=4, precision="fp32"))
    assert main(["demo", "--out", str(tmp_path), "--steps", "10", "--size", "64", "--no-viewer",
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "Noise2Void" in err and "DecoNoising denoised" in err and "dB" in err
    for f in ("noisy.tif", "denoised.tif", "deconvolved.tif", "n2v_denoised.tif", "comparison.png"):
        assert (tmp_path / f).stat().st_size > 0


def test_cli_prints_the_precision_decision(files, capsys, monkeypatch, tmp_path):
    """train and predict with --precision auto say what was chosen and why (injected timings)."""
    from napari_deconoising.core import device as device_mod
    from napari_deconoising.core.precision import CPUInfo
    from napari_deconoising.core.precision_cache import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(device_mod, "cpu_info", lambda: CPUInfo("Test", "x86_64", frozenset({"avx512_bf16"})))
    monkeypatch.setattr(device_mod, "_cpu_busy", lambda: None)  # cache as on a quiet machine
    calls = []

    def fake_measure(probe, dev, precisions):
        calls.append(probe.task)
        slow = {"train": 0.25, "predict": 2.0}[probe.task]  # bf16 4x faster to train, 2x slower to predict
        return {"fp32": 1.0, "bf16": slow}, {"fp32": 0.0, "bf16": 0.003}

    monkeypatch.setattr(device_mod, "measure", fake_measure)
    model = tmp_path / "auto.pt"
    args = [a if a != "fp32" else "auto" for a in TINY_ARGS]
    assert main(["train", str(files / "noisy.tif"), "--model", str(model), *args]) == 0
    err = capsys.readouterr().err
    assert "precision bf16 on cpu: measured: bf16: 4.0x faster than fp32" in err
    assert main(["predict", str(model), str(files / "noisy.tif"), "--denoised", str(tmp_path / "d.tif")]) == 0
    err = capsys.readouterr().err
    assert "precision fp32 on cpu: measured: fp32 (1 s/tile): bf16 0.50x fp32's speed" in err
    assert main(["predict", str(model), str(files / "noisy.tif"), "--denoised", str(tmp_path / "d.tif")]) == 0
    assert "precision fp32 on cpu: cached measured: fp32" in capsys.readouterr().err
    assert calls == ["train", "predict"]


def test_cli_predict_int8_says_how_it_ran(files, capsys, monkeypatch, tmp_path):
    from napari_deconoising.core import precision as precision_mod
    from napari_deconoising.core.quantize import int8_unavailable

    path = tmp_path / "m8.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(path), "--psf-sigma", "1.5", *TINY_ARGS]) == 0
    if int8_unavailable(load_model(path).config):
        pytest.skip(int8_unavailable(load_model(path).config))
    cmd = ["predict", str(path), str(files / "noisy.tif"), "--denoised", str(tmp_path / "d.tif"),
           "--precision", "int8"]
    monkeypatch.setitem(precision_mod.TOLERANCE, "predict", 1.0)  # the tiny model's output is nearly flat
    assert main(cmd) == 0
    assert "precision int8 on cpu: requested; int8 calibrated on" in capsys.readouterr().err
    monkeypatch.setitem(precision_mod.TOLERANCE, "predict", 0.0)
    assert main(cmd) == 0
    assert "precision fp32 on cpu: requested; int8's error on this image's crops was" in capsys.readouterr().err


def test_cli_predict_int8_for_n2v2_is_a_one_line_error(files, capsys, tmp_path):
    path = tmp_path / "n2v2.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(path), "--n2v2", *TINY_ARGS]) == 0
    capsys.readouterr()
    out = tmp_path / "d.tif"
    assert main(["predict", str(path), str(files / "noisy.tif"), "--denoised", str(out), "--precision", "int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deconoising: error:") and "N2V2" in err and "\n" not in err
    assert not out.exists()


TINY_3D = [a for a in TINY_ARGS if a not in ("--patch-size", "32")]


def test_train_3d_and_predict_reads_3d_from_the_model(files, capsys):
    model = files / "m3d.pt"
    assert main(["train", str(files / "vol.tif"), "--model", str(model), "--3d", "--psf-sigma", "2", "1", "1",
                 "--patch-size", "16", "32", "32", *TINY_3D]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "along Z" in err  # 10 planes: the 16-plane patch shrinks
    m = load_model(model)
    assert m.ndim == 3 and m.config.psf_sigma == (2.0, 1.0, 1.0) and m.config.patch_size == (16, 32, 32)
    assert m.psf.shape == (17, 9, 9) and m.config.pool_z is False
    out = files / "den3d.tif"
    assert main(["predict", str(model), str(files / "vol.tif"), "--denoised", str(out), "--device", "cpu"]) == 0
    assert tifffile.imread(out).shape == (10, 40, 40)


def test_train_3d_with_measured_psf_and_one_patch_value(files):
    model = files / "m3d_psf.pt"
    assert main(["train", str(files / "vol.tif"), "--model", str(model), "--3d", "--psf",
                 str(files / "psf3d_measured.tif"), "--patch-size", "8", *TINY_3D]) == 0
    m = load_model(model)
    assert m.config.psf == "measured" and m.psf.ndim == 3 and m.config.patch_size == 8


def test_without_3d_a_stack_trains_slice_by_slice(files):
    model = files / "m_slices.pt"
    assert main(["train", str(files / "vol.tif"), "--model", str(model), *TINY_ARGS]) == 0
    m = load_model(model)
    assert m.ndim == 2 and m.config.patch_size == 32
    out = files / "den_slices.tif"
    assert main(["predict", str(model), str(files / "vol.tif"), "--denoised", str(out), "--device", "cpu"]) == 0
    assert tifffile.imread(out).shape == (10, 40, 40)


# -- batch prediction ---------------------------------------------------------------------

def test_batch_predict_skips_a_bad_file_and_finishes_the_others(files, trained, tmp_path, capsys):
    from napari_deconoising.core.io import read_image, write_image

    trained.save(tmp_path / "m.pt")
    src = tmp_path / "in"
    src.mkdir()
    s = make_sample((48, 40), sigma=1.5, seed=4)
    tifffile.imwrite(src / "a.tif", s.noisy)
    (src / "b.tif").write_bytes(b"not a tiff at all")  # unreadable, in the middle
    write_image(src / "c.zarr", np.stack([s.noisy, s.noisy]), "TYX")
    out = tmp_path / "out"
    code = main(["predict", str(tmp_path / "m.pt"), str(src), "--output-dir", str(out), "--device", "cpu",
                 "--precision", "fp32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1] == err[-1].strip() and err[-1].startswith("deconoising: predicted 2 of 3 files")
    assert "failed: b.tif" in err[-1]
    assert any(line.startswith("deconoising: skipped") and "b.tif" in line for line in err)
    assert sorted(p.name for p in out.iterdir()) == ["a_deconvolved.tif", "a_denoised.tif",
                                                     "c_deconvolved.zarr", "c_denoised.zarr"]
    den, axes = read_image(out / "c_denoised.zarr")
    assert den.shape == (2, 48, 40) and axes == "TYX"
    ref = trained.predict(s.noisy, device="cpu", precision="fp32")
    np.testing.assert_allclose(read_image(out / "a_denoised.tif")[0], ref.denoised, rtol=1e-4, atol=1e-4)


def test_batch_predict_glob_format_and_usage_errors(files, trained, tmp_path, capsys):
    trained.save(tmp_path / "m.pt")
    s = make_sample((40, 40), sigma=1.5, seed=5)
    for name in ("x1.tif", "x2.tif"):
        tifffile.imwrite(tmp_path / name, s.noisy)
    out = tmp_path / "o"
    assert main(["predict", str(tmp_path / "m.pt"), str(tmp_path / "x*.tif"), "--output-dir", str(out),
                 "--format", ".zarr", "--no-deconvolved", "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x1_denoised.zarr", "x2_denoised.zarr"]
    capsys.readouterr()
    for extra, msg in ((["--denoised", str(tmp_path / "d.tif")], "one input"),
                       ([], "--output-dir"),
                       # stops the run, not just one file
                       (["--output-dir", str(out), "--tile-size", "8"], "a tile size of 8 px is too small"),
                       (["--output-dir", str(out), "--format", ".tif"], None)):
        args = ["predict", str(tmp_path / "m.pt"), str(tmp_path / "x1.tif"), str(tmp_path / "x2.tif"), *extra]
        if msg is None:  # the same stem twice
            args = ["predict", str(tmp_path / "m.pt"), str(tmp_path / "x1.tif"), str(tmp_path / "x1.tif"), *extra]
            msg = "both write"
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("deconoising: error:") and msg in err and len(err.strip().splitlines()) == 1
def test_psf_sigma_auto_estimates_reports_and_saves(files, capsys):
    model = files / "auto.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(model), "--psf-sigma", "auto",
                 *TINY_ARGS]) == 0
    err = capsys.readouterr().err
    assert "learning the PSF sigma" in err
    m = load_model(model)
    assert m.psf_estimate is not None and m.psf_estimate["method"] in ("learned", "edges")
    assert m.config.psf_sigma == m.psf_estimate["sigma"]
    assert m.psf_estimate["message"] in err
    assert err.count("epoch    2/2") == 2  # the learning run, then the training with sigma fixed
    assert err.index(m.psf_estimate["message"]) < err.rindex("epoch    2/2")
    est = m.psf_estimate
    learning_unclear = not est["clear"] and est["sigma"] != est["learned"]  # not the edges' "not clear"
    if learning_unclear:  # 4 steps rarely settle sigma: then the default
        assert m.config.psf_sigma == 1.0
    words = "from the data" if est["clear"] else "no clear estimate" if learning_unclear else "not confirmed"
    assert words in m.summary()
    assert m.summary() in err


@pytest.mark.parametrize("extra, msg", [
    (["--psf-sigma", "auto", "2"], "auto takes no further values"),
    (["--psf-sigma", "wide"], "numbers or 'auto'"),
])
def test_psf_sigma_auto_bad_use_is_one_line_error(files, capsys, extra, msg):
    out = files / "never.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(out), *extra, *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deconoising: error:") and msg in err and err.count("\n") == 1
    assert not out.exists()


def test_psf_sigma_auto_refuses_resume(files, capsys):
    base = files / "base_for_auto.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(base), *TINY_ARGS]) == 0
    capsys.readouterr()
    assert main(["train", str(files / "noisy.tif"), "--model", str(files / "r.pt"), "--psf-sigma", "auto",
                 "--resume", str(base), *TINY_ARGS]) == 2
    assert "--resume" in capsys.readouterr().err


def test_n2v2_flag_is_saved_with_the_model(files, capsys):
    model = files / "n2v2.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(model), "--n2v2", *TINY_ARGS]) == 0
    assert load_model(model).config.n2v2 and "N2V2" in capsys.readouterr().err


def test_no_cuda_graph_flag_reaches_the_config(files):
    model = files / "eager.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(model), "--no-cuda-graph", *TINY_ARGS]) == 0
    assert load_model(model).config.cuda_graph is False
    default = files / "default.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(default), *TINY_ARGS]) == 0
    assert load_model(default).config.cuda_graph is True


@pytest.mark.parametrize("flag, value, field, shown", [
    ("--head-lr-scale", "10", "head_lr_scale", "PSF head lr x10"),
    ("--weight-average", "0.9", "weight_average", "weight average 0.9"),
    ("--lr", "0.002", "lr", "lr 0.002"),
    ("--wiener-eps", "0.05", "wiener_eps", "Wiener-preconditioned phantom (eps 0.05)"),
])
def test_training_option_is_saved_and_shown_by_info(files, capsys, flag, value, field, shown):
    model = files / f"{field}.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(model), flag, value, *TINY_ARGS]) == 0
    assert getattr(load_model(model).config, field) == float(value)
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    assert shown in capsys.readouterr().out


@pytest.mark.parametrize("flag, value, field", [
    ("--head-lr-scale", "0", "head_lr_scale"), ("--head-lr-scale", "150", "head_lr_scale"),
    ("--weight-average", "1", "weight_average"), ("--wiener-eps", "2", "wiener_eps"),
])
def test_training_option_out_of_range_is_one_line_error(files, capsys, flag, value, field):
    out = files / "never.pt"
    assert main(["train", str(files / "noisy.tif"), "--model", str(out), flag, value, *TINY_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"deconoising: error: {flag} ") and "\n" not in err and not out.exists()
