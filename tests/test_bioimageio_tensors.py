"""rdf.yaml's payload and channel names: one model is format 1 as before channels, a model per channel format 2."""

import dataclasses

import yaml

from napari_deconoising.bioimageio.tensors import channel_names, payload
from napari_deconoising.core import ChannelModels, DecoNoisingModel
from napari_deconoising.core.modelfile import FORMAT_NAME


def test_one_model_payload_is_format_1_without_weights(trained):
    p = payload(trained, "9.9")
    assert (p["format"], p["format_version"], p["software_version"]) == (FORMAT_NAME, 1, "9.9")
    assert "state_dict" not in p and "psf" not in p and "channels" not in p
    assert yaml.safe_load(yaml.safe_dump(p)) == p  # plain YAML values only
    again = DecoNoisingModel.from_payload({**p, "state_dict": trained.state_dict, "psf": None})
    assert again.config == trained.config and again.history == trained.history
    assert channel_names(trained, "raw") == ["raw"]


def test_channel_payload_is_format_2_with_one_entry_per_channel(trained):
    pair = ChannelModels([trained, dataclasses.replace(trained, mean=trained.mean + 1)])
    p = payload(pair, "9.9")
    assert p["format_version"] == 2 and len(p["channels"]) == 2
    assert [c["normalisation"]["mean"] for c in p["channels"]] == [trained.mean, trained.mean + 1]
    assert all("state_dict" not in c and "psf" not in c for c in p["channels"])
    assert yaml.safe_load(yaml.safe_dump(p)) == p
    assert channel_names(pair, "denoised") == ["channel0", "channel1"]
