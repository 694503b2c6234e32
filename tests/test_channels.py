import numpy as np
import pytest
import torch

from napari_deconoising.core import DataError, make_sample
from napari_deconoising.core.channels import ChannelModels, per_channel, split_channels, train_channels
from napari_deconoising.core.train import train


def test_split_channels_gives_views_and_the_axes_without_c():
    a = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    views, rest = split_channels(a, "ZCYX")
    assert rest == "ZYX" and len(views) == 3
    assert all(np.shares_memory(v, a) for v in views)
    np.testing.assert_array_equal(views[1], a[:, 1])
    one, rest1 = split_channels(a, "TZYX")
    assert rest1 == "TZYX" and one[0] is a
    with pytest.raises(DataError, match="letters"):
        split_channels(a, "CYX")


def test_per_channel_broadcasts_one_value_and_checks_counts():
    assert per_channel(1.5, 3, "sigma") == [1.5, 1.5, 1.5]
    assert per_channel([1.5], 2, "sigma") == [1.5, 1.5]
    assert per_channel([1, 2], 2, "sigma") == [1, 2]
    with pytest.raises(DataError, match="3 sigmas given for 2 channels"):
        per_channel([1, 2, 3], 2, "sigma")


@pytest.fixture(scope="module")
def two_channels():
    a = make_sample((64, 64), sigma=1.0, seed=1)
    b = make_sample((64, 64), sigma=2.0, seed=2)
    noisy = np.stack([a.noisy, 5 * b.noisy + 100])  # CYX, different intensity units
    return noisy, (a, b)


def test_each_channel_gets_its_own_normalisation_psf_and_network(two_channels, tiny_config):
    noisy, _ = two_channels
    cfg = tiny_config.replace(epochs=1, steps_per_epoch=2, batch_size=4)
    models = train_channels(noisy, [cfg.replace(psf_sigma=1.0), cfg.replace(psf_sigma=2.0)], "CYX")
    m0, m1 = models.models
    assert m0.psf.shape == (9, 9) and m1.psf.shape == (17, 17)
    assert m1.mean > m0.mean + 50 and m1.std > 2 * m0.std
    # independent: channel 1's model is exactly what training on channel 1 alone gives
    alone = train(noisy[1], cfg.replace(psf_sigma=2.0), axes="YX")
    for k, v in alone.state_dict.items():
        torch.testing.assert_close(m1.state_dict[k], v)
    calls = []
    pred = models.predict(noisy, "CYX", device="cpu", progress=lambda d, t: calls.append((d, t)))
    assert pred.denoised.shape == noisy.shape and pred.deconvolved.shape == noisy.shape
    np.testing.assert_array_equal(pred.denoised[1], m1.predict(noisy[1], "YX", device="cpu").denoised)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and calls[-1][0] == calls[-1][1]
    assert "channel 1:" in models.summary()
    with pytest.raises(DataError, match="3 channel"):
        models.predict(np.concatenate([noisy, noisy[:1]]), "CYX", device="cpu")


def test_3d_channels_and_one_config_for_all(sample3d, tiny_config):
    czyx = np.stack([sample3d.noisy, sample3d.noisy[:, ::-1]], axis=1)  # ZCYX
    cfg = tiny_config.replace(ndim=3, patch_size=(8, 32, 32), psf_sigma=(2.0, 1.0, 1.0), epochs=1,
                              steps_per_epoch=1, batch_size=2)
    events = []
    models = train_channels(czyx, cfg, "ZCYX", callback=lambda c, ev: events.append(c))
    assert isinstance(models, ChannelModels) and models.ndim == 3 and len(models.models) == 2
    assert set(events) == {0, 1}
    pred = models.predict(czyx, "ZCYX", device="cpu")
    assert pred.denoised.shape == czyx.shape
