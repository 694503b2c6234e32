"""``deconoising predict``: output names, inputs, and how a run that stops ends."""

import pytest
import tifffile

from napari_deconoising.cli import main
from napari_deconoising.core import make_sample


@pytest.fixture
def two_inputs(trained, tmp_path):
    trained.save(tmp_path / "m.pt")
    s = make_sample((48, 40), sigma=1.5, seed=4)
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, s.noisy)
    return tmp_path


def test_ctrl_c_ends_predict_in_one_line_and_keeps_finished_files(two_inputs, capsys, monkeypatch):
    """Ctrl-C in the second file's tiles: one line naming it, the first file's outputs kept,
    nothing (not even a temporary file) of the second."""
    from napari_deconoising import _batch

    real = _batch.predict_file

    def interrupted_in_b(model, source, *args, progress, **kwargs):
        def stop(done, total):
            if source.name == "b.tif":
                raise KeyboardInterrupt
            progress(done, total)

        return real(model, source, *args, progress=stop, **kwargs)

    monkeypatch.setattr(_batch, "predict_file", interrupted_in_b)
    out = two_inputs / "out"
    code = main(["predict", str(two_inputs / "m.pt"), str(two_inputs / "a.tif"), str(two_inputs / "b.tif"),
                 "--output-dir", str(out), "--device", "cpu", "--precision", "fp32"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"deconoising: error: interrupted: no output written for "
                                            f"{two_inputs / 'b.tif'}; 1 of 2 files done")
    assert sorted(p.name for p in out.iterdir()) == ["a_deconvolved.tif", "a_denoised.tif"]


def test_auto_keeps_its_runner_up_where_int8_misses_on_a_file(int8_misses, two_inputs, capsys):
    """The plan decided once for all files is the one that runs: int8 falls back to auto's runner-up."""
    code = main(["predict", str(two_inputs / "m.pt"), str(two_inputs / "a.tif"), "--denoised",
                 str(two_inputs / "o.tif"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    line = next(s for s in err.splitlines() if s.startswith("precision "))
    assert line.startswith("precision bf16 on cpu: measured: int8: 4.0x faster") and line.endswith("so bf16"), line
