"""Opening bioimage.io packages: ours load safely, anything else gets a clear refusal.

The packages here are built by hand (no bioimageio needed), as the importer itself needs none.
"""

import zipfile

import numpy as np
import pytest
import torch

from napari_deconoising.bioimageio import BioimageioModelError, is_bioimageio_source, load_any_model
from napari_deconoising.core import ModelFileError


def test_our_package_loads_as_folder_and_zip(trained, tmp_path, sample, hand_package):
    rdf = hand_package(tmp_path / "pkg", trained)
    for source in (rdf, hand_package.zip(tmp_path / "pkg", tmp_path / "pkg.zip")):
        model = load_any_model(source)
        assert model.config == trained.config and model.history == trained.history
        a = model.predict(sample.noisy, "YX", device="cpu").deconvolved
        b = trained.predict(sample.noisy, "YX", device="cpu").deconvolved
        np.testing.assert_array_equal(a, b)


def test_a_pt_file_still_loads_through_load_any_model(trained, tmp_path):
    trained.save(tmp_path / "m.pt")
    assert load_any_model(tmp_path / "m.pt").config == trained.config


@pytest.mark.parametrize("name, expected", [("model.zip", True), ("rdf.yaml", True), ("x.bioimageio.yaml", True),
                                            ("bioimageio.yaml", True), ("model.pt", False), ("x.yaml", False)])
def test_is_bioimageio_source(name, expected):
    assert is_bioimageio_source(name) is expected


def _foreign(rdf):
    rdf["config"] = {"bioimageio": {}}
    rdf["weights"]["pytorch_state_dict"]["architecture"] = {"import_from": "careamics", "callable": "UNet"}


def _newer(rdf):
    rdf["config"]["napari_deconoising"]["format_version"] = 99


def _escape(rdf):
    rdf["weights"]["pytorch_state_dict"]["source"] = "../weights.pt"


def _weights_list(rdf):
    rdf["weights"] = ["weights.pt"]


def _weights_string(rdf):
    rdf["weights"]["pytorch_state_dict"] = "weights.pt"


def _architecture_string(rdf):
    rdf["weights"]["pytorch_state_dict"]["architecture"] = "UNet"


@pytest.mark.parametrize("change, message", [
    (_foreign, "not a napari-deconoising model; run it with bioimageio.core instead"),
    # a stranger's rdf.yaml with lists or strings where mappings belong: refused, no traceback
    (_weights_list, "not a napari-deconoising model"),
    (_weights_string, "not a napari-deconoising model"),
    (_architecture_string, "not a napari-deconoising model"),
    (_newer, "newer napari-deconoising"),
    (_escape, "outside the package"),
])
def test_foreign_newer_and_escaping_packages_are_refused(trained, tmp_path, change, message, hand_package):
    rdf = hand_package(tmp_path / "pkg", trained, rdf_changes=[change])
    with pytest.raises(BioimageioModelError, match=message):
        load_any_model(rdf)


def test_damaged_weights_are_refused(trained, tmp_path, hand_package):
    rdf = hand_package(tmp_path / "pkg", trained)
    data = bytearray((tmp_path / "pkg" / "weights.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "pkg" / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(BioimageioModelError, match="checksum"):
        load_any_model(rdf)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_weights_with_code_are_not_run(trained, tmp_path, capsys, hand_package):
    import io

    buf = io.BytesIO()
    torch.save({"x": _Evil()}, buf)
    rdf = hand_package(tmp_path / "pkg", trained, weights=buf.getvalue())
    with pytest.raises(BioimageioModelError, match="not plain data"):
        load_any_model(rdf)
    assert "code ran" not in capsys.readouterr().out


def test_junk_and_missing_files(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(BioimageioModelError, match="not a readable zip"):
        load_any_model(junk)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(BioimageioModelError, match="no rdf.yaml"):
        load_any_model(empty)
    with pytest.raises(BioimageioModelError, match="not found"):
        load_any_model(tmp_path / "missing.zip")
    bad_yaml = tmp_path / "rdf.yaml"
    bad_yaml.write_text("a: [unclosed")
    with pytest.raises(BioimageioModelError, match="not valid YAML"):
        load_any_model(bad_yaml)
    # The CLI and widgets catch ModelFileError for every model source.
    assert issubclass(BioimageioModelError, ModelFileError)


# -- a package with a model per channel ---------------------------------------------------

@pytest.fixture
def pair(trained):
    import dataclasses

    from napari_deconoising.core import ChannelModels

    # two channels that differ (units), so that a swap would show
    return ChannelModels([trained, dataclasses.replace(trained, mean=trained.mean + 50, std=2 * trained.std)])


def _channel_architecture(rdf):
    from napari_deconoising.bioimageio.architecture import CHANNEL_ARCHITECTURE

    rdf["weights"]["pytorch_state_dict"]["architecture"].update(
        import_from=CHANNEL_ARCHITECTURE[0], callable=CHANNEL_ARCHITECTURE[1])


def test_a_channel_package_loads_as_a_model_per_channel(pair, sample, tmp_path, hand_package):
    from napari_deconoising.core import ChannelModels

    rdf = hand_package(tmp_path / "pkg", pair, rdf_changes=[_channel_architecture])
    back = load_any_model(rdf)
    assert isinstance(back, ChannelModels)
    assert [(m.mean, m.std) for m in back.models] == [(m.mean, m.std) for m in pair.models]
    image = np.stack([sample.noisy, 2 * sample.noisy + 50])
    a, b = back.predict(image, "CYX", device="cpu"), pair.predict(image, "CYX", device="cpu")
    np.testing.assert_array_equal(a.deconvolved, b.deconvolved)


def _stray_weight(folder):
    state = torch.load(folder / "weights.pt", weights_only=True)
    state["nets.7.unet.head.bias"] = torch.zeros(1)
    torch.save(state, folder / "weights.pt")


def _number_key(folder):
    state = torch.load(folder / "weights.pt", weights_only=True)
    state[1] = torch.zeros(1)
    torch.save(state, folder / "weights.pt")


@pytest.mark.parametrize("architecture, weights_change, message", [
    ([], None, "architecture and its channel list disagree"),
    ([_channel_architecture], _stray_weight, "unexpected weight 'nets.7.unet.head.bias' for 2 channels"),
    ([_channel_architecture], _number_key, "unexpected weight 1 for 2 channels"),
])
def test_damaged_channel_packages_are_refused(pair, tmp_path, hand_package, architecture, weights_change, message):
    hand_package(tmp_path / "pkg", pair)
    if weights_change is not None:
        weights_change(tmp_path / "pkg")
    rdf = hand_package(tmp_path / "pkg", pair, rdf_changes=architecture,
                       weights=(tmp_path / "pkg" / "weights.pt").read_bytes())
    with pytest.raises(BioimageioModelError, match=message):
        load_any_model(rdf)
