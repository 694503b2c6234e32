import pytest

from napari_deconoising.core.config import ConfigError, TrainConfig


def test_paper_defaults():
    c = TrainConfig()
    assert (c.depth, c.channels, c.lr, c.patch_size, c.epochs, c.steps_per_epoch, c.batch_size) == (
        3, 64, 1e-3, 100, 200, 10, 20)
    assert c.positivity == 1.0 and c.mask_fraction == 0.03125 and c.uses_psf


@pytest.mark.parametrize("field, value", [
    ("psf", "airy"), ("psf_sigma", -1.0), ("psf_sigma", (1.0, 2.0, 3.0)), ("positivity", -0.1),
    ("epochs", 0), ("batch_size", 2.5), ("patch_size", 8), ("val_fraction", 1.0), ("lr", 0.0),
    ("mask_fraction", 0.5), ("device", "tpu"), ("precision", "int8"), ("micro_batches", 100),
    ("seed", -1), ("depth", True),
])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_round_trip_and_unknown_keys():
    c = TrainConfig(psf_sigma=(1.0, 2.0), epochs=3)
    d = c.to_dict()
    assert d["psf_sigma"] == [1.0, 2.0]
    assert TrainConfig.from_dict({**d, "from_the_future": 1}) == c


def test_noise2void_modes():
    assert not TrainConfig(psf="none").uses_psf
    assert not TrainConfig(psf_sigma=0).uses_psf
    assert TrainConfig(psf="measured").uses_psf
