import os
import pickle

import numpy as np
import pytest
import torch

from napari_deconoising.core import DecoNoisingModel, ModelFileError, load_model
from napari_deconoising.core.modelfile import FORMAT_VERSION


def test_round_trip_gives_identical_predictions(trained, sample, tmp_path):
    p = tmp_path / "m.pt"
    trained.save(p)
    loaded = DecoNoisingModel.load(p)
    assert loaded.config == trained.config
    assert loaded.history == trained.history
    np.testing.assert_array_equal(loaded.psf, trained.psf)
    a = trained.predict(sample.noisy, device="cpu")
    b = loaded.predict(sample.noisy, device="cpu")
    np.testing.assert_array_equal(a.denoised, b.denoised)
    np.testing.assert_array_equal(a.deconvolved, b.deconvolved)
    assert [f.name for f in tmp_path.iterdir()] == ["m.pt"]  # no temp files left


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ.get("EVIL_MARK", "/tmp/should-not-exist"),))


def test_pickle_bearing_file_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    mark = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARK", str(mark))
    p = tmp_path / "evil.pt"
    torch.save({"format": "napari-deconoising-model", "format_version": 1, "x": _Evil()}, p)
    with pytest.raises(ModelFileError, match="refusing"):
        load_model(p)
    assert not mark.exists()
    p2 = tmp_path / "evil.pkl"
    p2.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ModelFileError):
        load_model(p2)
    assert not mark.exists()


def test_truncated_foreign_newer_missing(trained, tmp_path):
    p = tmp_path / "m.pt"
    trained.save(p)
    data = p.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_model(tmp_path / "trunc.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ModelFileError, match="not a napari-deconoising model"):
        load_model(tmp_path / "foreign.pt")
    payload = torch.load(p, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "new.pt")
    with pytest.raises(ModelFileError, match="newer"):
        load_model(tmp_path / "new.pt")
    payload["format_version"] = FORMAT_VERSION
    payload["state_dict"] = {"nope": torch.zeros(1)}
    torch.save(payload, tmp_path / "damaged.pt")
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(tmp_path / "damaged.pt")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.pt")
    for i, junk in enumerate([b"hello", b"junk", b"PK\x03\x04garbage", b"\x80\x02}q\x00."]):
        (tmp_path / f"junk{i}.pt").write_bytes(junk)
        with pytest.raises(ModelFileError):
            load_model(tmp_path / f"junk{i}.pt")


def test_failed_save_keeps_the_old_file(trained, tmp_path, monkeypatch):
    p = tmp_path / "m.pt"
    trained.save(p)
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        trained.save(p)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["m.pt"]


def test_3d_model_round_trip_predicts_identically(trained3d, sample3d, tmp_path):
    p = tmp_path / "m3d.pt"
    trained3d.save(p)
    loaded = DecoNoisingModel.load(p)
    assert loaded.config == trained3d.config
    assert loaded.config.ndim == 3 and loaded.config.patch_size == (8, 32, 32)
    assert loaded.config.pool_z is False and loaded.psf.ndim == 3
    assert "3D (no Z pooling)" in loaded.summary()
    a = trained3d.predict(sample3d.noisy, "ZYX", device="cpu")
    b = loaded.predict(sample3d.noisy, "ZYX", device="cpu")
    np.testing.assert_array_equal(a.denoised, b.denoised)
    np.testing.assert_array_equal(a.deconvolved, b.deconvolved)
