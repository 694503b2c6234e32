"""Export to bioimage.io, checked with bioimageio.core itself; re-import gives the same model.

The export runs bioimage.io's model test (a few seconds), so the package is built once per module.
"""

import socket
import zipfile

import numpy as np
import pytest
import yaml

from napari_deconoising.bioimageio import (
    BioimageioExportError,
    BioimageioUnavailable,
    export_bioimageio,
    load_any_model,
    load_bioimageio_model,
)
from napari_deconoising.bioimageio.errors import INSTALL_HINT, require_bioimageio
from napari_deconoising.bioimageio.files import geometry


@pytest.fixture(scope="module")
def package(trained, sample, tmp_path_factory, needs_bioimageio):
    """The tiny trained model exported, with every network connection refused."""

    def no_network(*args, **kwargs):
        raise OSError("network access during export")

    path = tmp_path_factory.mktemp("bioimageio") / "tiny.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", no_network)
        export_bioimageio(trained, path, name="tiny DecoNoising", description="a test model",
                          authors=["Ada Lovelace", "Alan Turing"], sample=sample.noisy)
    return path


@pytest.fixture(scope="module")
def fresh_image(trained):
    """A new image of a valid size (not square, not the test image)."""
    from napari_deconoising.core import make_sample

    geo = geometry(trained)
    shape = (geo.min + 3 * geo.step, geo.min + 7 * geo.step)
    return make_sample(shape, sigma=1.5, seed=7).noisy


@pytest.mark.slow
def test_package_contents(package, trained):
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        readme = z.read("README.md").decode()
    assert {"rdf.yaml", "README.md", "cover.png", "weights.pt", "weights_torchscript.pt",
            "environment.yaml", "test_raw.npy", "test_denoised.npy", "test_deconvolved.npy"} <= names
    assert rdf["format_version"].startswith("0.5")
    assert [t["id"] for t in rdf["inputs"]] == ["raw"]
    assert [t["id"] for t in rdf["outputs"]] == ["denoised", "deconvolved"]
    geo = geometry(trained)
    space_in = [a for a in rdf["inputs"][0]["axes"] if a["type"] == "space"]
    assert [a["size"] for a in space_in] == [{"min": geo.min, "step": geo.step}] * 2
    for out in rdf["outputs"]:
        space = [a for a in out["axes"] if a["type"] == "space"]
        assert [a["halo"] for a in space] == [geo.halo] * 2
        assert all(a["size"]["tensor_id"] == "raw" for a in space)
        assert out["postprocessing"][0]["kwargs"] == {"gain": pytest.approx(trained.std),
                                                      "offset": pytest.approx(trained.mean)}
    pre = rdf["inputs"][0]["preprocessing"]
    assert any(p["id"] == "fixed_zero_mean_unit_variance" for p in pre)
    assert rdf["inputs"][0]["pad"] == {"mode": "reflect"}
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript"}
    assert [c.get("doi") for c in rdf["cite"]][0] == "10.1007/978-3-030-66415-2_25"
    assert [a["name"] for a in rdf["authors"]] == ["Ada Lovelace", "Alan Turing"]
    assert f"{len(trained.history)} epochs" in readme and "10.1007/978-3-030-66415-2_25" in readme


@pytest.mark.slow
def test_bioimageio_core_model_test_passes(package):
    from bioimageio.core import test_model

    summary = test_model(package, devices=["cpu"])
    assert summary.status == "passed", summary.format()


def _inner(geo):
    """Away from the image border by the package's halo (see the 2D test for why)."""
    return tuple(slice(h, -h) if h else slice(None) for h in geo.halos)


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["pytorch_state_dict", "torchscript"])
def test_bioimageio_core_prediction_equals_ours(package, trained, fresh_image, weights):
    from bioimageio.core import create_prediction_pipeline, load_model_description, predict

    descr = load_model_description(package)
    pipeline = create_prediction_pipeline(descr, devices=["cpu"], weights_format=weights)
    out = predict(model=pipeline, inputs={"raw": fresh_image[None, None]})
    ours = trained.predict(fresh_image, "YX", device="cpu", precision="fp32")
    # bioimage.io tools pad by the declared halo with reflection (the RDF cannot describe our
    # border contract: one pooling multiple of reflection, then the network's zero padding), so
    # the outputs agree away from the image border; within a halo of it they may differ.
    inner = _inner(geometry(trained))
    for key, expected in (("denoised", ours.denoised), ("deconvolved", ours.deconvolved)):
        got = out.members[key].data.values[0, 0]
        assert got.shape == expected.shape
        # float32 rounding of the same operations in a different order; values are in input units.
        np.testing.assert_allclose(got[inner], expected[inner], rtol=1e-4, atol=1e-4 * trained.std, err_msg=key)


@pytest.mark.slow
def test_reimport_gives_the_same_model(package, trained, fresh_image, tmp_path):
    back = load_bioimageio_model(package)
    assert back.config == trained.config
    assert (back.mean, back.std) == (trained.mean, trained.std)
    np.testing.assert_array_equal(back.psf, trained.psf)
    assert back.history == trained.history
    assert back.state_dict.keys() == trained.state_dict.keys()
    a = trained.predict(fresh_image, "YX", device="cpu")
    b = back.predict(fresh_image, "YX", device="cpu")
    np.testing.assert_array_equal(a.denoised, b.denoised)
    np.testing.assert_array_equal(a.deconvolved, b.deconvolved)
    # The unpacked package opens through its rdf.yaml as well, and load_any_model dispatches.
    with zipfile.ZipFile(package) as z:
        z.extractall(tmp_path)
    again = load_any_model(tmp_path / "rdf.yaml")
    np.testing.assert_array_equal(again.predict(fresh_image, "YX", device="cpu").denoised, a.denoised)


@pytest.mark.slow
def test_failing_package_is_not_written(trained, tmp_path, monkeypatch, needs_bioimageio):
    """TorchScript weights that disagree with the state dict fail bioimage.io's test: no zip."""
    import torch

    from napari_deconoising.bioimageio import export as export_module

    real = export_module.write_torchscript

    def wrong_torchscript(net, example, path):
        with torch.no_grad():
            net.unet.head.bias += 1.0  # the traced copy now differs from weights.pt
        try:
            return real(net, example, path)
        finally:
            with torch.no_grad():
                net.unet.head.bias -= 1.0

    monkeypatch.setattr(export_module, "write_torchscript", wrong_torchscript)
    out = tmp_path / "bad.zip"
    with pytest.raises(BioimageioExportError, match="model test failed.*torchscript"):
        export_bioimageio(trained, out, name="broken model", description="x", authors=["A B"])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


def test_a_model_of_dim_data_passes_its_package_test(trained, sample, tmp_path, needs_bioimageio):
    # floats scaled to [0, 1]: std 3e-4, where bioimage.io's own 1e-6 in the divisor was 0.3 %
    import dataclasses

    dim = dataclasses.replace(trained, mean=trained.mean * 1e-4, std=trained.std * 1e-4)
    assert dim.std < 1e-3
    export_bioimageio(dim, tmp_path / "dim.zip", name="dim DecoNoising", description="x", authors=["A B"],
                      sample=sample.noisy * 1e-4)  # raises if bioimage.io's model test fails
    back = load_any_model(tmp_path / "dim.zip")
    assert (back.mean, back.std) == (dim.mean, dim.std)
    with pytest.raises(BioimageioExportError, match="below 2e-06"):
        export_bioimageio(dataclasses.replace(trained, std=1.5e-6), tmp_path / "a.zip", name="some model",
                          description="x", authors=["A"])


def test_bad_arguments_are_refused_before_any_work(trained, tmp_path, needs_bioimageio):
    with pytest.raises(BioimageioExportError, match="at least one author"):
        export_bioimageio(trained, tmp_path / "a.zip", name="some model", description="x", authors=[" "])
    with pytest.raises(BioimageioExportError, match="too small"):
        export_bioimageio(trained, tmp_path / "a.zip", name="some model", description="x", authors=["A"],
                          sample=np.zeros((20, 300), np.float32))
    with pytest.raises(BioimageioExportError, match="NaN"):
        export_bioimageio(trained, tmp_path / "a.zip", name="some model", description="x", authors=["A"],
                          sample=np.full((100, 100), np.nan, np.float32))
    with pytest.raises(BioimageioExportError, match="at least 5 characters"):
        export_bioimageio(trained, tmp_path / "a.zip", name="abc", description="x", authors=["A"])
    with pytest.raises(BioimageioExportError, match="unknown licence 'MY-OWN'"):
        export_bioimageio(trained, tmp_path / "a.zip", name="some model", description="x", authors=["A"],
                          license="MY-OWN")
    with pytest.raises(BioimageioExportError, match="folder does not exist"):
        export_bioimageio(trained, tmp_path / "no" / "a.zip", name="some model", description="x",
                          authors=["A"])
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_names_the_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bioimageio.core", None)  # import now raises ImportError
    with pytest.raises(BioimageioUnavailable, match=r"napari-deconoising\[bioimageio\]"):
        require_bioimageio()
    assert "[bioimageio]" in INSTALL_HINT


# -- a model per channel: one package, one network per channel ------------------------------

@pytest.fixture(scope="module")
def two_channel_model(tiny_config):
    from napari_deconoising.core import make_sample
    from napari_deconoising.core.channels import train_channels

    a, b = make_sample((96, 96), sigma=1.0, seed=1), make_sample((96, 96), sigma=2.0, seed=2)
    noisy = np.stack([a.noisy, 5 * b.noisy + 100])  # CYX, different intensity units per channel
    cfg = tiny_config.replace(epochs=1, steps_per_epoch=2, batch_size=4)
    return train_channels(noisy, [cfg.replace(psf_sigma=1.0), cfg.replace(psf_sigma=2.0)], "CYX"), noisy


@pytest.fixture(scope="module")
def channel_package(two_channel_model, tmp_path_factory, needs_bioimageio):
    model, noisy = two_channel_model
    path = tmp_path_factory.mktemp("bioimageio_c") / "two.zip"
    # the sample's channel axis is found from its axes, wherever it is
    export_bioimageio(model, path, name="two-channel DecoNoising", description="a test model", authors=["A B"],
                      sample=np.moveaxis(noisy, 0, 1), sample_axes="YCX")
    return path


@pytest.mark.slow
def test_channel_package_describes_each_channel(channel_package, two_channel_model):
    from bioimageio.core import test_model

    model, _ = two_channel_model
    with zipfile.ZipFile(channel_package) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        readme = z.read("README.md").decode()
        raw = np.load(z.open("test_raw.npy"))
    means, stds = [m.mean for m in model.models], [m.std for m in model.models]
    axes = rdf["inputs"][0]["axes"]
    assert axes[1] == {"type": "channel", "channel_names": ["channel0", "channel1"]}
    pre = [p for p in rdf["inputs"][0]["preprocessing"] if p["id"] == "fixed_zero_mean_unit_variance"]
    assert pre[0]["kwargs"] == {"axis": "channel", "mean": pytest.approx(means), "std": pytest.approx(stds)}
    for out in rdf["outputs"]:
        assert out["axes"][1]["channel_names"] == ["channel0", "channel1"]
        assert out["postprocessing"][0]["kwargs"] == {"axis": "channel", "gain": pytest.approx(stds),
                                                      "offset": pytest.approx(means)}
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert arch["callable"] == "BioimageioChannelNet"
    assert [n["psf_shape"] for n in arch["kwargs"]["nets"]] == [[9, 9], [17, 17]]
    assert raw.shape[:2] == (1, 2) and "### Channel 1" in readme and "Gaussian, sigma 2, 2 px" in readme
    summary = test_model(channel_package, devices=["cpu"])
    assert summary.status == "passed", summary.format()


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["pytorch_state_dict", "torchscript"])
def test_channel_package_prediction_equals_ours(channel_package, two_channel_model, weights):
    from bioimageio.core import create_prediction_pipeline, load_model_description, predict

    model, noisy = two_channel_model
    image = noisy[:, :84 + 2 * 4, :84 + 3 * 4]  # a valid size (min 84, step 4), not the test image's
    pipeline = create_prediction_pipeline(load_model_description(channel_package), devices=["cpu"],
                                          weights_format=weights)
    out = predict(model=pipeline, inputs={"raw": image[None]})
    ours = model.predict(image, "CYX", device="cpu", precision="fp32")
    for key, expected in (("denoised", ours.denoised), ("deconvolved", ours.deconvolved)):
        got = out.members[key].data.values[0]
        assert got.shape == expected.shape
        inner = _inner(geometry(model))
        for k, m in enumerate(model.models):  # each channel in its own units
            np.testing.assert_allclose(got[k][inner], expected[k][inner], rtol=1e-4, atol=1e-4 * m.std,
                                       err_msg=f"{key} {k}")


@pytest.mark.slow
def test_channel_package_reimports_as_a_model_per_channel(channel_package, two_channel_model):
    from napari_deconoising.core import ChannelModels

    model, noisy = two_channel_model
    back = load_bioimageio_model(channel_package)
    assert isinstance(back, ChannelModels)
    assert [m.config for m in back.models] == [m.config for m in model.models]
    assert [(m.mean, m.std) for m in back.models] == [(m.mean, m.std) for m in model.models]
    a, b = model.predict(noisy, "CYX", device="cpu"), back.predict(noisy, "CYX", device="cpu")
    np.testing.assert_array_equal(a.denoised, b.denoised)
    np.testing.assert_array_equal(a.deconvolved, b.deconvolved)


def test_channel_sample_must_have_the_channels(two_channel_model, tmp_path, needs_bioimageio):
    model, noisy = two_channel_model
    for sample, axes in ((noisy[0], None), (np.concatenate([noisy, noisy[:1]]), "CYX")):
        with pytest.raises(BioimageioExportError, match="needs 2 channels, one per model"):
            export_bioimageio(model, tmp_path / "a.zip", name="some model", description="x", authors=["A"],
                              sample=sample, sample_axes=axes)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_thin_stack_3d_model_exports_and_runs_as_ours(trained3d, tmp_path, needs_bioimageio):
    """No Z pooling and Z step 1 in the package: a volume one plane over the minimum is a valid input."""
    from bioimageio.core import create_prediction_pipeline, load_model_description, predict
    from bioimageio.core import test_model as bioimageio_test_model

    from napari_deconoising.core.sample3d import make_sample_3d

    geo = geometry(trained3d)
    # As small as the package allows (the preconditioned phantom's filter widens the halo).
    volume = make_sample_3d((geo.mins[0] + 3, geo.mins[1] + 8, geo.mins[2] + 8), sigma=(2.0, 1.0, 1.0),
                            seed=3).noisy
    path = tmp_path / "thin.zip"
    export_bioimageio(trained3d, path, name="thin stack model", description="x", authors=["A"], sample=volume)
    assert bioimageio_test_model(path, devices=["cpu"]).status == "passed"
    image = volume[:geo.mins[0] + 1, :geo.mins[1] + 4, :geo.mins[2]]
    ours = trained3d.predict(image, "ZYX", device="cpu", precision="fp32")
    pipeline = create_prediction_pipeline(load_model_description(path), devices=["cpu"], weights_format="torchscript")
    got = predict(model=pipeline, inputs={"raw": image[None, None]}).members["deconvolved"].data.values[0, 0]
    inner = _inner(geo)
    np.testing.assert_allclose(got[inner], ours.deconvolved[inner], rtol=1e-4, atol=1e-4 * trained3d.std)


@pytest.mark.slow
def test_a_noise2void_package_says_it_is_one(sample, tiny_config, tmp_path, needs_bioimageio):
    """No PSF: no phantom and no deconvolution, in the tags, the outputs and the README. (Trained with
    the decoder that is not the default: the package's architecture builds it, its model test passes.)"""
    from napari_deconoising.core import TrainConfig, train
    from napari_deconoising.core.config import DECODERS

    other = next(k for k in DECODERS if k != TrainConfig().unet_decoder)
    n2v = train(sample.noisy, tiny_config.replace(psf="none", epochs=1, decoder=other))
    path = export_bioimageio(n2v, tmp_path / "n2v.zip", name="tiny Noise2Void", description="a test model",
                             authors=["Ada Lovelace"], sample=sample.noisy)
    with zipfile.ZipFile(path) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        readme = z.read("README.md").decode()
    assert "deconvolution" not in rdf["tags"] and "noise2void" in rdf["tags"]
    assert [t["description"] for t in rdf["outputs"]] == [
        "the denoised image (Noise2Void: no PSF), input units",
        "the same as denoised (Noise2Void: no PSF, no deconvolution), input units"]
    assert "A **Noise2Void** network" in readme and "phantom convolved" not in readme
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["decoder"] == other
    assert f"{other} decoder" in readme
    again = load_any_model(path)
    assert again.config.decoder == other
