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


def test_channels_round_trip_through_one_file(two_channels, tiny_config, tmp_path, monkeypatch):
    from napari_deconoising.bioimageio import load_any_model
    from napari_deconoising.core import DecoNoisingModel, ModelFileError, load_model, modelfile

    noisy, _ = two_channels
    cfg = tiny_config.replace(epochs=1, steps_per_epoch=1, batch_size=2)
    models = train_channels(noisy, [cfg.replace(psf_sigma=1.0), cfg.replace(psf_sigma=2.0)], "CYX")
    models.save(tmp_path / "c.pt")
    models.models[0].save(tmp_path / "single.pt")
    before = models.predict(noisy, "CYX", device="cpu")
    for loader in (load_model, load_any_model):
        again = loader(tmp_path / "c.pt")
        assert isinstance(again, ChannelModels) and len(again.models) == 2
        after = again.predict(noisy, "CYX", device="cpu")
        np.testing.assert_array_equal(after.denoised, before.denoised)
        np.testing.assert_array_equal(after.deconvolved, before.deconvolved)
        assert [m.config for m in again.models] == [m.config for m in models.models]
    # one model per file stays format 1; the channels file is format 2, which a format-1 reader refuses
    assert modelfile.read_payload(tmp_path / "single.pt")["format_version"] == 1
    assert modelfile.read_payload(tmp_path / "c.pt")["format_version"] == 2
    assert isinstance(load_model(tmp_path / "single.pt"), DecoNoisingModel)
    with pytest.raises(ModelFileError, match="one model per channel"):
        DecoNoisingModel.load(tmp_path / "c.pt")
    monkeypatch.setattr(modelfile, "FORMAT_VERSION", 1)
    with pytest.raises(ModelFileError, match="newer napari-deconoising"):
        modelfile.read_payload(tmp_path / "c.pt")


def test_a_damaged_channel_list_is_refused(tmp_path):
    from napari_deconoising.core import ModelFileError, load_model
    from napari_deconoising.core.modelfile import write_payload

    write_payload(tmp_path / "bad.pt", {"channels": []})
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(tmp_path / "bad.pt")
    with pytest.raises(DataError, match="axes"):
        ChannelModels([]).predict(np.zeros((2, 8, 8)), None)


def test_resume_continues_each_channel_from_its_own_model(two_channels, tiny_config):
    noisy, _ = two_channels
    cfg = tiny_config.replace(epochs=1, steps_per_epoch=2, batch_size=4)
    first = train_channels(noisy, [cfg.replace(psf_sigma=1.0), cfg.replace(psf_sigma=2.0)], "CYX")
    # the resumed run's own sigma is overridden by each channel's model, as in single-channel resume
    again = train_channels(noisy, cfg.replace(psf_sigma=3.0, seed=5), "CYX", resume=first)
    for before, after in zip(first.models, again.models):
        assert len(after.history) == 2 and after.history[0] == before.history[0]
        assert after.config.psf_sigma == before.config.psf_sigma
        assert (after.mean, after.std) == (before.mean, before.std)
        np.testing.assert_array_equal(after.psf, before.psf)
    # channel 1 continued from channel 1's weights: the same as resuming that model alone
    alone = train(noisy[1], cfg.replace(psf_sigma=3.0, seed=5), axes="YX", resume=first.models[1])
    for k, v in alone.state_dict.items():
        torch.testing.assert_close(again.models[1].state_dict[k], v)


def test_resume_keeps_each_channels_sigma_estimate(two_channels, tiny_config, tmp_path):
    from conftest import learned_estimate

    from napari_deconoising.core.channels import load_model

    noisy, _ = two_channels
    cfg = tiny_config.replace(epochs=1, steps_per_epoch=1, batch_size=4)
    first = train_channels(noisy, [cfg.replace(psf_sigma=1.2), cfg.replace(psf_sigma=2.0)], "CYX")
    first.models[0].psf_estimate = learned_estimate(1.2)  # channel 2's sigma was typed in
    first.save(tmp_path / "first.pt")
    again = train_channels(noisy, cfg, "CYX", resume=load_model(tmp_path / "first.pt"))
    assert [m.psf_estimate for m in again.models] == [learned_estimate(1.2), None]
    again.save(tmp_path / "again.pt")
    assert [m.psf_estimate for m in load_model(tmp_path / "again.pt").models] == [learned_estimate(1.2), None]
    assert "estimated from the data" in again.summary().splitlines()[0]


def test_check_resume_refuses_what_does_not_fit(two_channels, trained, trained3d):
    from napari_deconoising.core import ConfigError
    from napari_deconoising.core.channels import check_resume

    with pytest.raises(DataError, match="one network, for images without a channel axis"):
        check_resume(trained, 2, ndim=2)
    pair = ChannelModels([trained, trained])
    assert check_resume(pair, 2, ndim=2) is pair
    with pytest.raises(DataError, match="has 2 channels but the image has 3"):
        check_resume(pair, 3, ndim=2)
    with pytest.raises(ConfigError, match="channel 2 of the model to resume is 3D"):
        check_resume(ChannelModels([trained, trained3d]), 2, ndim=2)


def test_check_single_resume_refuses_a_model_per_channel_and_another_ndim(trained, trained3d):
    from napari_deconoising.core import ConfigError
    from napari_deconoising.core.channels import check_single_resume

    assert check_single_resume(trained, ndim=2) is trained
    with pytest.raises(DataError, match=r"one model per channel \(2 channels\): resume needs an image with 2"):
        check_single_resume(ChannelModels([trained, trained]), ndim=2)
    # the core's own hint is the Python API's: the command line and the widget pass theirs
    with pytest.raises(ConfigError, match=r"ndim=2: the model to resume is 3D; train it in 3D \(ndim=3 in the "
                                          r"TrainConfig\)$"):
        check_single_resume(trained3d, ndim=2)


def test_channel_psfs_one_for_all_or_one_each_checked_before_training():
    from napari_deconoising.core import PSFError, gaussian_psf
    from napari_deconoising.core.channels import channel_psfs

    narrow, wide = gaussian_psf(1.0), gaussian_psf(2.0)
    assert channel_psfs(None, 2, ndim=2) == [None, None]
    shared = channel_psfs(narrow, 3, ndim=2)
    assert len(shared) == 3 and shared[0] is shared[2]  # prepared once
    np.testing.assert_allclose(shared[0], narrow, atol=1e-7)
    first, second = channel_psfs([wide, 5 * narrow], 2, ndim=2)  # each prepared: normalised to sum 1
    assert first.shape == wide.shape and second.shape == narrow.shape
    np.testing.assert_allclose(second, narrow, atol=1e-7)
    with pytest.raises(DataError, match="3 measured PSFs given for 2 channels"):
        channel_psfs([narrow, narrow, wide], 2, ndim=2)
    with pytest.raises(PSFError, match="PSF of channel 2 of 2: .* 3D model needs a 3D PSF"):
        channel_psfs([gaussian_psf(1.0, ndim=3), narrow], 2, ndim=3)
    with pytest.raises(PSFError, match="^PSF has 3 dimensions"):  # one channel: nothing to name
        channel_psfs(gaussian_psf(1.0, ndim=3), 1, ndim=2)
