import pytest

from napari_deconoising.core.config import ConfigError, TrainConfig


def test_paper_defaults():
    c = TrainConfig()
    assert (c.depth, c.channels, c.learning_rate, c.patch_size, c.epochs, c.steps_per_epoch, c.batch_size) == (
        3, 64, 1e-3, 100, 200, 10, 20)
    assert c.positivity == 1.0 and c.mask_fraction == 0.03125 and c.uses_psf


@pytest.mark.parametrize("field, value", [
    ("psf", "airy"), ("psf_sigma", -1.0), ("psf_sigma", (1.0, 2.0, 3.0)), ("positivity", -0.1),
    ("epochs", 0), ("batch_size", 2.5), ("patch_size", 8), ("val_fraction", 1.0), ("lr", 0.0),
    ("mask_fraction", 0.5), ("device", "tpu"), ("precision", "int8"), ("micro_batches", 100),
    ("seed", -1), ("depth", True), ("head_lr_scale", 0.0), ("head_lr_scale", 101.0),
    ("weight_average", 1.0), ("weight_average", -0.1), ("weight_average", True),
    ("wiener_eps", -0.1), ("wiener_eps", 2.0), ("wiener_eps", True), ("wiener_eps", "auto"),
    ("decoder", "narrow"), ("decoder", 2), ("positivity", float("inf")), ("positivity", float("nan")),
    ("ndim", 2.0),
])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_the_preconditioned_phantom_is_on_in_3d_and_off_in_2d_by_default_and_off_in_old_files():
    assert TrainConfig().wiener_eps is None and TrainConfig().phantom_wiener_eps == 0.0
    c3 = TrainConfig(ndim=3, patch_size=(16, 64, 64))
    assert c3.phantom_wiener_eps == 0.01
    assert TrainConfig(ndim=3, patch_size=(16, 64, 64), wiener_eps=0).phantom_wiener_eps == 0.0
    assert TrainConfig(wiener_eps=0.1).phantom_wiener_eps == 0.1
    old = {k: v for k, v in c3.to_dict().items() if k != "wiener_eps"}  # a file from before the field
    assert TrainConfig.from_dict(old).phantom_wiener_eps == 0.0


def test_round_trip_and_unknown_keys():
    c = TrainConfig(psf_sigma=(1.0, 2.0), epochs=3)
    d = c.to_dict()
    assert d["psf_sigma"] == [1.0, 2.0]
    assert TrainConfig.from_dict({**d, "from_the_future": 1}) == c


@pytest.mark.parametrize("ndim, channels, expected", [
    (2, 8, 1e-3), (2, 64, 1e-3), (2, 128, 5e-4), (3, 16, 1e-3), (3, 32, 2e-3 / 3), (3, 64, 1e-3 / 3),
])
def test_the_default_learning_rate_falls_with_the_layers_fan_in(ndim, channels, expected):
    """The paper's 1e-3 up to its 2D network's fan-in (64 x 3 x 3), scaled down beyond, never up."""
    c = TrainConfig(ndim=ndim, channels=channels, patch_size=(16, 64, 64)[-ndim:], depth=2)
    assert c.lr is None and c.learning_rate == pytest.approx(expected, rel=1e-3)
    assert TrainConfig.from_dict(c.to_dict()) == c  # "default" is saved as such and resolves the same
    assert TrainConfig(ndim=ndim, channels=channels, patch_size=(16, 64, 64)[-ndim:], depth=2,
                       lr=2e-3).learning_rate == 2e-3  # an explicit rate is used as given


def test_head_lr_scale_limit_reads_the_rate_in_use():
    TrainConfig(ndim=3, patch_size=(16, 64, 64), head_lr_scale=100)  # 3.3e-4 x 100 < 1
    with pytest.raises(ConfigError, match="head_lr_scale"):
        TrainConfig(ndim=2, head_lr_scale=100, lr=0.02)


@pytest.mark.parametrize("ndim, channels, expected", [
    (2, 8, 1.0), (2, 64, 1.0), (2, 128, 2.0), (3, 16, 1.0), (3, 32, 1.5), (3, 64, 3.0), (3, 1024, 27.0),
])
def test_the_default_head_learns_at_the_fan_in_rules_rate_for_a_1x1_convolution(ndim, channels, expected):
    """The head sums ``channels`` inputs: 1e-3 up to 576 of them, whatever the body's rate."""
    c = TrainConfig(ndim=ndim, channels=channels, patch_size=(16, 64, 64)[-ndim:], depth=2)
    assert c.head_lr_scale is None and c.head_learning_rate_scale == pytest.approx(expected, rel=1e-6)
    head_rate = c.learning_rate * c.head_learning_rate_scale
    assert head_rate == pytest.approx(1e-3 * min(1, 576 / channels), rel=1e-6)
    assert head_rate >= c.learning_rate  # never slower than the body
    assert TrainConfig.from_dict(c.to_dict()) == c  # "default" is saved as such and resolves the same
    assert c.replace(lr=1e-4).head_learning_rate_scale == c.head_learning_rate_scale  # a ratio, kept with any lr


def test_head_lr_scale_round_trips_and_old_files_keep_one_rate():
    c = TrainConfig(head_lr_scale=10.0)
    assert TrainConfig.from_dict(c.to_dict()) == c
    c3 = TrainConfig(ndim=3, patch_size=(16, 64, 64))
    old = {k: v for k, v in c3.to_dict().items() if k != "head_lr_scale"}  # a file from before the field
    assert TrainConfig.from_dict(old).head_learning_rate_scale == 1.0
    with pytest.raises(ConfigError, match="head_lr_scale"):  # the head's rate itself must stay below 1
        TrainConfig(lr=0.2, head_lr_scale=5.0)


def test_weight_average_defaults_to_off_and_round_trips():
    assert TrainConfig().weight_average == 0.0
    c = TrainConfig(weight_average=0.99)
    assert TrainConfig.from_dict(c.to_dict()) == c
    old_file = {k: v for k, v in TrainConfig().to_dict().items() if k != "weight_average"}
    assert TrainConfig.from_dict(old_file).weight_average == 0.0  # files from before the field


def test_noise2void_modes():
    assert not TrainConfig(psf="none").uses_psf
    assert not TrainConfig(psf_sigma=0).uses_psf
    assert TrainConfig(psf="measured").uses_psf


def test_3d_config_per_axis_sizes_and_round_trip():
    c = TrainConfig(ndim=3, psf_sigma=(2.0, 1.0, 1.0), patch_size=(16, 64, 64), depth=2)
    assert c.patch_per_axis == (16, 64, 64) and c.sigma_per_axis == (2.0, 1.0, 1.0)
    d = c.to_dict()
    assert d["patch_size"] == [16, 64, 64] and d["pool_z"] is None
    assert TrainConfig.from_dict(d) == c
    assert TrainConfig(ndim=3, patch_size=32).patch_per_axis == (32, 32, 32)


def test_old_2d_config_dicts_still_load():
    old = {k: v for k, v in TrainConfig(epochs=3).to_dict().items() if k != "pool_z"}
    c = TrainConfig.from_dict(old)
    assert c.ndim == 2 and c.pool_z is None and c.patch_size == 100 and c.pools_z()


def test_z_pooling_is_automatic_for_thick_patches_only():
    # depth 2: the coarsest level keeps >= 4 planes from 16 planes on
    assert TrainConfig(ndim=3, depth=2, patch_size=(16, 64, 64)).pools_z()
    assert not TrainConfig(ndim=3, depth=2, patch_size=(8, 64, 64)).pools_z()
    assert not TrainConfig(ndim=3, depth=3, patch_size=(16, 64, 64)).pools_z()
    assert TrainConfig(ndim=3, depth=2, patch_size=(8, 64, 64)).pools_z(z_patch=32)
    assert not TrainConfig(ndim=3, depth=2, patch_size=(32, 64, 64), pool_z=False).pools_z()


@pytest.mark.parametrize("changes, field", [
    (dict(ndim=4), "ndim"),
    (dict(ndim=3, patch_size=(4, 64, 64)), "patch_size"),  # Z smaller than the 5x5x5 neighbourhood
    (dict(ndim=3, patch_size=(8, 64, 64), pool_z=True), "patch_size"),  # pooled Z needs 2*2**depth
    (dict(ndim=3, patch_size=(16, 8, 64)), "patch_size"),
    (dict(patch_size=(16, 64, 64)), "patch_size"),  # 3 sizes for 2D
    (dict(ndim=3, psf_sigma=(1.0, 2.0)), "psf_sigma"),
    (dict(ndim=3, pool_z="yes"), "pool_z"),
])
def test_invalid_3d_values_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**changes)


def test_the_decoder_round_trips_and_old_files_have_the_wide_one():
    lean = TrainConfig(decoder="lean")
    assert TrainConfig.from_dict(lean.to_dict()).decoder == "lean"
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "decoder"}
    assert TrainConfig.from_dict(old).decoder == "wide"
    # None is the default decoder, the wide one, in 2D and 3D.
    assert TrainConfig().unet_decoder == "wide"
    assert TrainConfig(ndim=3, patch_size=(16, 64, 64)).unet_decoder == "wide"
    assert TrainConfig(ndim=3, patch_size=(16, 64, 64), decoder="lean").unet_decoder == "lean"


def test_numpy_numbers_become_python_numbers():
    import numpy as np

    c = TrainConfig(psf_sigma=np.float64(1.5), lr=np.float32(1e-4), epochs=np.int32(5), patch_size=np.int64(64),
                    n2v2=np.bool_(False), ndim=np.int64(3), pool_z=np.bool_(True))
    assert c.patch_size == 64 and c.epochs == 5 and c.ndim == 3 and c.pool_z is True and c.n2v2 is False
    assert {type(v) for v in (c.psf_sigma, c.lr)} == {float} and type(c.epochs) is int and type(c.n2v2) is bool
    sized = TrainConfig(psf_sigma=(np.float32(1.0), 2.0), patch_size=[np.int64(32), 48])
    assert sized.psf_sigma == (1.0, 2.0) and sized.patch_size == (32, 48)
    assert all(type(v) is int for v in sized.patch_size) and all(type(v) is float for v in sized.psf_sigma)
