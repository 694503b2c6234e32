import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_deconoising.core import DecoNoisingModel, ModelFileError, TrainConfig, load_model
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
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((8, 8), np.uint8))  # "Load model" offers all files
    with pytest.raises(ModelFileError, match="image.tif is not a readable model file: not a .pt file written by"):
        load_model(tmp_path / "image.tif")
    torch.save({"net": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")
    with pytest.raises(ModelFileError) as refused:
        load_model(tmp_path / "module.pt")
    # torch's own advice (load with weights_only=False) and its terminal colour codes stay out
    assert str(refused.value).endswith("not plain data (torch.nn.modules.linear.Linear), which could run code "
                                       "when loaded; refusing to load it")
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


DATA = Path(__file__).resolve().parent / "data"


def test_a_model_file_from_format_1_still_loads_and_predicts_the_same():
    # model_v1.pt was written by the code before the issue-7 refactor (tests/data/make_model_v1.py).
    model = load_model(DATA / "model_v1.pt")
    expected = np.load(DATA / "model_v1_expected.npz")
    assert (model.config.depth, model.config.channels, model.config.psf) == (2, 8, "gaussian")
    assert len(model.history) == 2
    assert (model.mean, model.std) == (float(expected["mean"]), float(expected["std"]))
    # The expected outputs were predicted with that code's border rule: the whole halo mirrored
    # (today one pooling step is, core/tiles.py). Rebuilt that way, the loaded network must give
    # them back; a format change would move far more than float summation order does.
    from napari_deconoising.core.predict import tile_halo

    h, image = tile_halo(model), expected["image"].astype(np.float32)
    x = np.pad((image - np.float32(model.mean)) / np.float32(model.std), h, mode="reflect")
    with torch.no_grad():
        outputs = model.build_network().eval()(torch.from_numpy(x)[None, None])
    for out, key in zip(outputs, ("denoised", "deconvolved")):
        old_rule = out[0, 0, h:-h, h:-h].numpy() * np.float32(model.std) + np.float32(model.mean)
        np.testing.assert_allclose(old_rule, expected[key], rtol=1e-5, atol=1e-4, err_msg=key)
    pred = model.predict(image, device="cpu", precision="fp32")  # and today's rule runs on it
    assert pred.denoised.shape == image.shape and np.isfinite(pred.deconvolved).all()


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def test_saving_a_loaded_model_writes_the_same_payload(tmp_path):
    old = torch.load(DATA / "model_v1.pt", weights_only=True)
    load_model(DATA / "model_v1.pt").save(tmp_path / "again.pt")
    new = torch.load(tmp_path / "again.pt", weights_only=True)
    old.pop("software_version"), new.pop("software_version")
    # Later versions may add config fields; a re-saved old model carries them at their
    # defaults and changes nothing else. The preconditioned phantom is part of the
    # architecture, so old files get what they were trained with (off), not the default; so
    # is the decoder (old files have the wide one), and the head trained at the body's rate.
    added = {k: new["config"].pop(k) for k in set(new["config"]) - set(old["config"])}
    defaults = {**TrainConfig().to_dict(), "wiener_eps": 0.0, "decoder": "wide", "head_lr_scale": 1.0}
    assert added == {k: defaults[k] for k in added}
    assert added["wiener_eps"] == 0.0 and added["decoder"] == "wide"
    assert _same(old, new)
    assert not _same(old, {**new, "psf": None})  # the comparison can fail


def test_read_payload_checks_the_envelope_only(tmp_path):
    from napari_deconoising.core.modelfile import read_payload, write_payload

    write_payload(tmp_path / "p.pt", {"anything": [1, 2.5, "x", torch.ones(2)]})
    got = read_payload(tmp_path / "p.pt")
    assert got["format_version"] == FORMAT_VERSION and got["anything"][:3] == [1, 2.5, "x"]
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(tmp_path / "p.pt")


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


@pytest.mark.parametrize("decoder", ["wide", "lean"])
def test_the_decoder_is_saved_rebuilt_and_named_when_not_the_default(tmp_path, decoder):
    from napari_deconoising.core import DecoNoisingNet, gaussian_psf

    cfg = TrainConfig(depth=2, channels=4, decoder=decoder)
    psf = gaussian_psf(1.0)
    net = DecoNoisingNet(psf, depth=2, channels=4, decoder=decoder).eval()
    DecoNoisingModel(config=cfg, state_dict=net.state_dict(), mean=0.0, std=1.0, psf=psf).save(tmp_path / "m.pt")
    again = load_model(tmp_path / "m.pt")
    x = torch.randn(1, 1, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(again.build_network()(x), net(x))
    assert again.config.decoder == decoder
    assert (f"{decoder} decoder" in again.summary()) == (decoder == "lean")  # wide is the default


def test_a_config_of_numpy_numbers_saves_a_file_that_loads(tmp_path):
    # a sigma computed from an image is a numpy float: the safe loader refuses anything not plain
    from napari_deconoising.core import train

    img = np.random.default_rng(0).normal(5, 1, (48, 48)).astype(np.float32)
    cfg = TrainConfig(depth=2, channels=4, epochs=1, steps_per_epoch=1, batch_size=2, patch_size=16,
                      device="cpu", precision="fp32", psf_sigma=np.float64(img.std()), lr=np.float64(5e-4))
    train(img, cfg).save(tmp_path / "m.pt")
    assert load_model(tmp_path / "m.pt").config.psf_sigma == float(img.std())


@pytest.mark.parametrize("change, words", [
    (lambda p: p["normalisation"].update(std=0.0), "std > 0"),
    (lambda p: p["normalisation"].update(mean=float("nan")), "finite"),
    (lambda p: p["normalisation"].update(mean="abc"), "damaged"),
    (lambda p: p.update(psf=torch.ones(3, 3, 3) / 27), "3D"),
])
def test_a_file_whose_normalisation_or_psf_cannot_work_is_refused_at_loading(trained, tmp_path, change, words):
    trained.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    change(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=words):
        load_model(tmp_path / "bad.pt")


def test_a_failed_chmod_leaks_no_file_descriptor_and_no_temporary_file(trained, tmp_path, monkeypatch):
    def refused(*a, **k):
        raise PermissionError("operation not permitted")

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "chmod", refused)
    for _ in range(3):
        with pytest.raises(PermissionError):
            trained.save(tmp_path / "m.pt")
    assert len(os.listdir("/proc/self/fd")) == before and list(tmp_path.iterdir()) == []
