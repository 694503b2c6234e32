import dataclasses
import threading

import numpy as np
import pytest
import torch
from conftest import learned_estimate

from napari_deconoising.core import DataError, Trainer, load_model, make_sample, psnr, train
from napari_deconoising.core.device import available_devices, execution_plan, resolve_device


def test_training_lowers_validation_loss_and_beats_the_noisy_input(tiny_config):
    s = make_sample((128, 128), sigma=1.5, seed=1)
    cfg = tiny_config.replace(psf_sigma=1.5, epochs=8, steps_per_epoch=8, lr=2e-3)
    trainer = Trainer(s.noisy, cfg)
    assert cfg.decoder is None and trainer.config.decoder == "wide" == trainer.net.unet.decoder  # stored
    events = list(trainer.run())
    epochs = [e for e in events if e.kind == "epoch"]
    steps = [e for e in events if e.kind == "step"]
    assert len(epochs) == 8 and len(steps) == 64
    assert steps[-1].step == steps[-1].total_steps == 64 and steps[-1].eta_s == 0
    assert epochs[-1].val_loss < epochs[0].val_loss
    assert min(e.val_loss for e in epochs) == pytest.approx(trainer.best_val)
    model = trainer.model
    pred = model.predict(s.noisy, device="cpu")
    assert pred.denoised.dtype == np.float32 and pred.denoised.shape == s.noisy.shape
    assert psnr(s.clean, pred.denoised) > psnr(s.clean, s.noisy) + 3
    assert len(model.history) == 8


def test_training_does_not_modify_input(sample, tiny_config):
    noisy = sample.noisy.copy()
    train(noisy, tiny_config.replace(epochs=1, steps_per_epoch=2))
    np.testing.assert_array_equal(noisy, sample.noisy)


def test_stop_ends_cleanly_and_keeps_best(sample, tiny_config):
    trainer = Trainer(sample.noisy, tiny_config.replace(epochs=50))
    seen = []
    for ev in trainer.run():
        seen.append(ev)
        if ev.kind == "epoch" and ev.epoch == 2:
            trainer.stop()
    assert seen[-1].epoch == 2 and seen[-1].kind == "epoch"
    model = trainer.model
    assert len(model.history) == 2
    assert model.predict(sample.noisy, device="cpu").denoised.shape == sample.noisy.shape


def test_stop_from_another_thread(sample, tiny_config):
    trainer = Trainer(sample.noisy, tiny_config.replace(epochs=1000))
    n = []

    def consume():
        for _ in trainer.run():
            n.append(1)

    t = threading.Thread(target=consume)
    t.start()
    while len(n) < 3:
        t.join(0.01)
    trainer.stop()
    t.join(30)
    assert not t.is_alive() and len(n) < 1000 * 5


def test_same_seed_same_result(sample, tiny_config):
    cfg = tiny_config.replace(epochs=1, steps_per_epoch=3)
    a = train(sample.noisy, cfg)
    b = train(sample.noisy, cfg)
    for k in a.state_dict:
        torch.testing.assert_close(a.state_dict[k], b.state_dict[k])


def test_resume_continues_history_and_keeps_normalisation(sample, tiny_config, trained):
    other = make_sample((96, 96), sigma=1.5, seed=5).noisy * 3 + 10
    cfg = tiny_config.replace(epochs=2, depth=3, channels=16)  # architecture comes from the model
    trainer = Trainer(other, cfg, resume=trained)
    assert trainer.config.depth == trained.config.depth
    list(trainer.run())
    m = trainer.model
    assert len(m.history) == len(trained.history) + 2
    assert m.history[-1]["epoch"] == len(trained.history) + 2
    assert (m.mean, m.std) == (trained.mean, trained.std)


def test_resume_on_other_data_keeps_what_it_learns(tiny_config, trained):
    """The earlier run's best validation loss was on other data: new epochs are scored against the
    resumed weights on this run's patches, not against it (else brighter or noisier data, which
    scores worse, kept the old weights whatever the new epochs learned)."""
    other = make_sample((96, 96), sigma=1.5, seed=5).noisy * 3 + 10  # the model's normalisation is kept
    trainer = Trainer(other, tiny_config.replace(epochs=3), resume=trained)
    start = trainer.best_val  # the resumed weights on this data
    assert start > min(h["val_loss"] for h in trained.history)  # the case that kept nothing
    list(trainer.run())
    m = trainer.model
    assert min(h["val_loss"] for h in m.history[len(trained.history):]) < start
    assert any(not torch.equal(m.state_dict[k], v) for k, v in trained.state_dict.items())


def test_resume_keeps_how_sigma_was_chosen_through_the_model_file(sample, tiny_config, trained, tmp_path):
    estimated = dataclasses.replace(trained, psf_estimate=learned_estimate(trained.config.psf_sigma))
    cfg = tiny_config.replace(epochs=1, steps_per_epoch=2, psf_sigma=3.0)  # the model's sigma wins
    again = train(sample.noisy, cfg, resume=estimated)
    assert again.psf_estimate == estimated.psf_estimate and again.config.psf_sigma == trained.config.psf_sigma
    assert again.psf_estimate is not estimated.psf_estimate  # a copy: changing one leaves the other
    assert "(estimated from the data)" in again.summary()
    again.save(tmp_path / "again.pt")
    loaded = load_model(tmp_path / "again.pt")
    assert loaded.psf_estimate == estimated.psf_estimate
    assert train(sample.noisy, cfg, resume=loaded).psf_estimate == estimated.psf_estimate  # and once more
    assert train(sample.noisy, cfg, resume=trained).psf_estimate is None  # a sigma the user gave stays so


def test_micro_batches_give_the_same_gradient_step(sample, tiny_config):
    cfg = tiny_config.replace(epochs=1, steps_per_epoch=1, batch_size=8)
    a = train(sample.noisy, cfg)
    b = train(sample.noisy, cfg.replace(micro_batches=4))
    # Masks are drawn per micro-batch, so results differ a little but not much.
    for k in a.state_dict:
        assert torch.allclose(a.state_dict[k], b.state_dict[k], atol=5e-3)


def test_head_lr_scale_moves_the_phantom_head_that_much_faster(sample, tiny_config):
    # Adam's first step moves every weight by lr (times its sign), so the largest move of
    # the head's weights shows its learning rate.
    lr, scale = 1e-3, 10.0
    trainer = Trainer(sample.noisy, tiny_config.replace(lr=lr, head_lr_scale=scale))
    head, body = trainer.net.unet.head.weight, trainer.net.unet.down[0][0].weight
    before = head.detach().clone(), body.detach().clone()
    trainer._step()
    assert float((head.detach() - before[0]).abs().max()) == pytest.approx(lr * scale, rel=1e-3)
    assert float((body.detach() - before[1]).abs().max()) == pytest.approx(lr, rel=1e-3)


def test_wide_3d_network_trains_at_its_lower_default_rate(sample3d, tiny_config):
    """Without an explicit lr a 64-channel 3D U-Net starts at 3.3e-4 (default_lr), a narrow one at 1e-3."""
    cfg = tiny_config.replace(ndim=3, patch_size=(8, 32, 32), channels=64, depth=1)
    assert cfg.lr is None
    trainer = Trainer(sample3d.noisy, cfg, axes="ZYX")
    assert trainer._lr() == pytest.approx(576 / (64 * 27) * 1e-3)
    body, head = trainer.net.unet.down[0][0].weight, trainer.net.unet.head.weight
    before = body.detach().clone(), head.detach().clone()
    trainer._step()  # Adam's first step moves a weight by the rate: the rate is the one in use
    assert float((body.detach() - before[0]).abs().max()) == pytest.approx(trainer._lr(), rel=1e-3)
    # The head sums only 64 inputs: by the same rule it learns at the paper's 1e-3.
    assert float((head.detach() - before[1]).abs().max()) == pytest.approx(1e-3, rel=1e-3)
    assert Trainer(sample3d.noisy, cfg.replace(channels=8), axes="ZYX")._lr() == 1e-3


def test_weight_average_is_what_is_validated_and_kept(sample, tiny_config):
    cfg = tiny_config.replace(epochs=3, steps_per_epoch=3, weight_average=0.9)
    trainer = Trainer(sample.noisy, cfg)
    raw, best_snapshot = [], None
    for ev in trainer.run():
        if ev.kind == "step":
            raw.append({k: v.detach().clone() for k, v in trainer.net.state_dict().items()})
        elif ev.is_best:
            best_snapshot = {k: v.detach().cpu().clone() for k, v in trainer._eval_net.state_dict().items()}
        if ev.kind == "epoch":  # the epoch's validation loss is the average's
            assert trainer.validation_loss() == pytest.approx(ev.val_loss, rel=1e-6)
    # The law: the first step's weights, then avg = 0.9 avg + 0.1 w after each further step.
    expected = dict(raw[0])
    for w in raw[1:]:
        expected = {k: 0.9 * expected[k] + 0.1 * w[k] for k in expected}
    got = trainer._eval_net.state_dict()
    assert all(torch.allclose(got[k], expected[k], atol=1e-6) for k in expected)
    assert not all(torch.equal(got[k], raw[-1][k]) for k in expected)  # not the raw weights
    model = trainer.model  # the average of the best epoch
    assert best_snapshot is not None and all(torch.equal(model.state_dict[k], v) for k, v in best_snapshot.items())
    assert model.config.weight_average == 0.9


def test_weight_average_off_keeps_the_raw_weights(sample, tiny_config):
    trainer = Trainer(sample.noisy, tiny_config.replace(epochs=1, steps_per_epoch=2))
    for _ in trainer.run():
        pass
    model = trainer.model  # one epoch: the best is the last
    assert trainer._eval_net is trainer.net
    assert all(torch.equal(model.state_dict[k], v.cpu()) for k, v in trainer.net.state_dict().items())


def test_estimate_step_seconds_does_not_change_the_model(sample, tiny_config):
    tr = Trainer(sample.noisy, tiny_config)
    before = {k: v.clone() for k, v in tr.net.state_dict().items()}
    assert tr.estimate_step_seconds(1) > 0
    for k, v in tr.net.state_dict().items():
        assert torch.equal(v, before[k])


def test_measured_psf_and_argument_checks(sample, tiny_config):
    from napari_deconoising.core import gaussian_psf

    psf = gaussian_psf(1.5)
    tr = Trainer(sample.noisy, tiny_config.replace(psf="measured"), psf=psf)
    assert tr.psf is not None and abs(tr.psf.sum() - 1) < 1e-5
    with pytest.raises(ValueError, match="no PSF"):
        Trainer(sample.noisy, tiny_config.replace(psf="measured"))
    with pytest.raises(ValueError, match="measured"):
        Trainer(sample.noisy, tiny_config, psf=psf)
    with pytest.raises(DataError, match="NaN"):
        bad = sample.noisy.copy()
        bad[0, 0] = np.inf
        Trainer(bad, tiny_config)


def test_small_image_shrinks_patch_with_warning(tiny_config):
    s = make_sample((40, 48), seed=2)
    tr = Trainer(s.noisy, tiny_config.replace(patch_size=64))
    assert tr.patch == 40
    assert any("smaller than the patch" in w for w in tr.warnings)


def test_devices():
    assert available_devices()[-1] == "cpu"
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == available_devices()[0]
    plan = execution_plan("cpu", "fp32")
    assert plan.dtype is None and plan.channels_last  # channels-last pays off in fp32 too (issue 8)
    with pytest.raises(RuntimeError, match="fp16"):
        execution_plan("cpu", "fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_missing_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda(sample, tiny_config):
    model = train(sample.noisy, tiny_config.replace(device="cuda", precision="auto", epochs=1))
    pred = model.predict(sample.noisy, device="cuda")
    assert np.isfinite(pred.denoised).all()


@pytest.mark.skipif(not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()),
                    reason="needs Apple MPS")
def test_training_on_mps(sample, tiny_config):
    model = train(sample.noisy, tiny_config.replace(device="mps", precision="auto", epochs=1))
    assert np.isfinite(model.predict(sample.noisy, device="mps").denoised).all()


def test_bf16_cpu_training_runs(sample, tiny_config):
    from napari_deconoising.core.device import cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("CPU has no native bf16")
    model = train(sample.noisy, tiny_config.replace(precision="bf16", epochs=1))
    assert np.isfinite(model.predict(sample.noisy, device="cpu", precision="bf16").denoised).all()


# -- 3D ---------------------------------------------------------------------------------------

def test_short_3d_training_raises_psnr(tiny_config):
    from napari_deconoising.core.sample3d import make_sample_3d

    s = make_sample_3d((16, 64, 64), sigma=(2.0, 1.0, 1.0), seed=3)
    cfg = tiny_config.replace(ndim=3, patch_size=(8, 32, 32), psf_sigma=s.sigma, batch_size=4,
                              epochs=6, steps_per_epoch=6, lr=2e-3)
    trainer = Trainer(s.noisy, cfg, axes="ZYX")
    assert trainer.patch_shape == (8, 32, 32) and trainer.config.pool_z is False
    assert trainer.psf.shape == (17, 9, 9)
    # The preconditioned phantom is the 3D default; the decision is stored, not "auto".
    assert cfg.wiener_eps is None and trainer.config.wiener_eps == 0.01 and trainer.net.precondition is not None
    assert cfg.decoder is None and trainer.config.decoder == "wide" == trainer.net.unet.decoder
    epochs = [e for e in trainer.run() if e.kind == "epoch"]
    assert epochs[-1].val_loss < epochs[0].val_loss
    assert trainer.model.config.wiener_eps == 0.01
    pred = trainer.model.predict(s.noisy, "ZYX", device="cpu")
    assert pred.denoised.shape == s.noisy.shape
    assert psnr(s.clean, pred.denoised) > psnr(s.clean, s.noisy) + 3


def test_3d_patch_deeper_than_the_stack_shrinks_with_a_warning(sample3d, tiny_config):
    cfg = tiny_config.replace(ndim=3, patch_size=(32, 32, 32), psf_sigma=(2.0, 1.0, 1.0))
    tr = Trainer(sample3d.noisy, cfg, axes="ZYX")  # 12 planes
    assert tr.patch_shape == (12, 32, 32) and tr.patch == (12, 32, 32)
    assert any("along Z" in w and "smaller than the patch" in w for w in tr.warnings)
    assert tr.config.pool_z is False  # decided from the 12 planes actually used, and recorded
    assert tr.sampler.sample(2).shape == (2, 1, 12, 32, 32)
    ten = sample3d.noisy[:10]
    assert Trainer(ten, cfg, axes="ZYX").patch_shape == (10, 32, 32)
    pooled = Trainer(ten, cfg.replace(pool_z=True), axes="ZYX")
    assert pooled.patch_shape == (8, 32, 32)  # a pooled Z needs a multiple of 2**depth
    assert pooled.net.unet.pool_z


def test_3d_time_lapse_trains_volume_by_volume(sample3d, tiny_config):
    tzyx = np.stack([sample3d.noisy, sample3d.noisy[:, ::-1], sample3d.noisy[:, :, ::-1]])
    cfg = tiny_config.replace(ndim=3, patch_size=(8, 32, 32), batch_size=2, epochs=1, steps_per_epoch=2)
    tr = Trainer(tzyx, cfg, axes="TZYX")
    assert len(tr.slices) == 3 and all(np.shares_memory(v, tzyx) for v in tr.slices)  # never copied
    assert tr.val_x.shape[2:] == (8, 32, 32) and tr.val_x.shape[0] == 64  # toward 2**20 voxels, not one batch of 2
    model = train(tzyx, cfg, axes="TZYX")
    assert model.predict(tzyx, "TZYX", device="cpu").denoised.shape == tzyx.shape


def test_3d_bad_input(sample3d, tiny_config):
    from napari_deconoising.core import PSFError, gaussian_psf

    cfg = tiny_config.replace(ndim=3, patch_size=(8, 32, 32))
    with pytest.raises(DataError, match="needs a Z axis"):
        Trainer(sample3d.noisy, cfg, axes="SYX")
    with pytest.raises(PSFError, match="3D model needs a 3D PSF"):
        Trainer(sample3d.noisy, cfg.replace(psf="measured"), axes="ZYX", psf=gaussian_psf(1.0))
    with pytest.raises(DataError, match="too small along Z"):
        Trainer(sample3d.noisy[:4], cfg, axes="ZYX")


def test_3d_resume_keeps_the_architecture(trained3d, sample3d, tiny_config):
    cfg = tiny_config.replace(ndim=3, patch_size=(16, 32, 32), epochs=1, steps_per_epoch=1, batch_size=2,
                              depth=3, pool_z=True)
    tr = Trainer(sample3d.noisy, cfg.replace(wiener_eps=0.0), axes="ZYX", resume=trained3d)
    assert tr.config.depth == 2 and tr.config.pool_z is False and not tr.net.unet.pool_z
    assert tr.config.wiener_eps == trained3d.config.phantom_wiener_eps == 0.01


def test_resume_refuses_to_switch_between_2d_and_3d(trained3d, trained, sample3d, sample, tiny_config):
    from napari_deconoising.core import ConfigError

    with pytest.raises(ConfigError, match="resume is 3D"):
        Trainer(sample3d.noisy, tiny_config, axes="ZYX", resume=trained3d)
    with pytest.raises(ConfigError, match="resume is 2D"):
        Trainer(sample3d.noisy, tiny_config.replace(ndim=3, patch_size=(8, 32, 32)), axes="ZYX", resume=trained)


def test_2d_trains_without_the_preconditioned_phantom_unless_asked(sample, tiny_config):
    """2D default: the paper's network (the filter cost 0.3 dB on the 2D benchmark); asked for, it is on."""
    assert Trainer(sample.noisy, tiny_config).config.wiener_eps == 0.0
    tr = Trainer(sample.noisy, tiny_config.replace(wiener_eps=0.1))
    assert tr.net.precondition is not None and tr.model.config.wiener_eps == 0.1
    assert Trainer(sample.noisy, tiny_config.replace(psf="none", wiener_eps=0.1)).net.precondition is None


def test_a_step_on_non_finite_data_stops_with_a_clear_error(sample, tiny_config, monkeypatch):
    trainer = Trainer(sample.noisy, tiny_config)
    monkeypatch.setattr(trainer.sampler, "sample", lambda n: np.full((n, 1, 32, 32), np.nan, np.float32))
    with pytest.raises(FloatingPointError, match="diverged"):
        trainer._step()
