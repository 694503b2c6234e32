"""Route (a): the trainable-sigma Gaussian PSF."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_deconoising.core import PSFConvolution, gaussian_psf
from napari_deconoising.core.learned_psf import LearnableGaussianPSF, learned_sigma_trainer


@pytest.mark.parametrize("param", ["sigmoid", "log"])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
def test_blur_matches_the_fixed_gaussian_psf(sigma, param, rng):
    x = torch.from_numpy(rng.random((2, 1, 40, 36), dtype=np.float32))
    learned = LearnableGaussianPSF(sigma, param=param)
    assert learned.sigma_values() == pytest.approx((sigma, sigma), rel=1e-5)
    fixed = PSFConvolution(gaussian_psf(sigma), method="direct")
    with torch.no_grad():
        np.testing.assert_allclose(learned(x).numpy(), fixed(x).numpy(), atol=2e-4)


def test_per_axis_sigma_and_gradient(rng):
    psf = LearnableGaussianPSF((0.8, 2.0))
    x = torch.from_numpy(rng.random((1, 1, 40, 40), dtype=np.float32))
    psf(x).square().mean().backward()
    assert psf.raw.grad is not None and torch.all(psf.raw.grad != 0)
    assert psf.sigma_values()[0] == pytest.approx(0.8, rel=1e-5)


@pytest.mark.parametrize("param", ["sigmoid", "log"])
def test_sigma_stays_in_its_range(param):
    psf = LearnableGaussianPSF(1.0, min_sigma=0.2, max_sigma=4.0, param=param)
    with torch.no_grad():
        psf.raw.fill_(-1e4)
        assert psf.sigma_values()[0] == pytest.approx(0.2)
        psf.raw.fill_(1e4)
        assert psf.sigma_values()[0] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="sigma"):
        LearnableGaussianPSF(5.0)


def test_training_moves_sigma(sample, tiny_config):
    trainer = learned_sigma_trainer(sample.noisy, tiny_config.replace(epochs=1, steps_per_epoch=3), init_sigma=2.0)
    before = trainer.net.psf.sigma_values()
    for _ in trainer.run():
        pass
    after = trainer.net.psf.sigma_values()
    assert after != before and all(0.2 < s < 4.0 for s in after)


def test_trainer_records_sigma_and_exports_a_fixed_psf_model(sample, tiny_config, tmp_path):
    from napari_deconoising.core import load_model
    from napari_deconoising.core.learned_psf import LearnedSigmaTrainer

    trainer = LearnedSigmaTrainer(sample.noisy, tiny_config.replace(epochs=2, steps_per_epoch=2), init_sigma=2.0)
    model = None
    gen = trainer.run()
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        model = stop.value
    assert [len(h["psf_sigma"]) for h in trainer.history] == [2, 2]
    assert "psf.raw" not in model.state_dict and model.config.psf == "gaussian"
    sig = model.config.sigma_per_axis
    best = min(range(2), key=lambda i: trainer.history[i]["val_loss"])
    np.testing.assert_allclose(sig, trainer.history[best]["psf_sigma"], atol=0.08)  # one value if axes agree
    model.save(tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")  # an ordinary model: loads and predicts
    assert loaded.predict(sample.noisy, device="cpu").denoised.shape == sample.noisy.shape


def _estimate_for(trail, init=3.0, best=None):
    """The verdict on ``trail`` (sigma per epoch); ``best``: the exported sigma (default the last)."""
    from napari_deconoising.core.learned_psf import LearnedSigmaTrainer

    exported = float(np.mean(trail[-1])) if best is None else best

    class Fake:  # the decision only reads the history, the start value and the exported sigma
        history = [{"psf_sigma": list(t), "val_loss": 1.0} for t in trail]
        init_sigma = init
        model = type("M", (), {"config": type("C", (), {"psf_sigma": exported})()})()

    return LearnedSigmaTrainer._learned_estimate(Fake(), 1.0)  # the learning run's own verdict, unchecked


def test_estimate_is_clear_only_when_sigma_settled_below_its_start():
    settled = [(3.0 - 0.15 * i,) * 2 for i in range(10)] + [(1.52, 1.49)] * 10
    est = _estimate_for(settled)
    assert est["clear"] and est["sigma"] == pytest.approx(1.505) and "learned from the data" in est["message"]
    stuck = _estimate_for([(2.95, 2.97)] * 10)
    assert not stuck["clear"] and stuck["sigma"] == 1.0 and "start value" in stuck["message"]
    assert "deconoising beads" in stuck["message"]  # where to get a firm value
    moving = _estimate_for([(3.0 - 0.1 * i,) * 2 for i in range(20)])
    assert moving["clear"] and "still moving" in moving["message"] and moving["sigma"] == pytest.approx(1.1)
    assert "still moving" not in est["message"]
    assert "default 1 px" in stuck["message"]


def test_the_verdict_reads_the_last_part_of_the_trail_not_one_epoch():
    down = [(3.0 - 0.15 * i,) * 2 for i in range(10)]
    blip_up = down + [(1.5, 1.5)] * 9 + [(2.95, 2.95)]  # one epoch back near the start: still an answer
    assert _estimate_for(blip_up, best=1.5)["clear"]
    blip_down = [(2.97, 2.98)] * 19 + [(2.8, 2.8)]  # one epoch away from the start: still none
    est = _estimate_for(blip_down)
    assert not est["clear"] and "over the last 4 epochs" in est["message"]
    rose = down[:3] + [(3.2 + 0.02 * i,) * 2 for i in range(10)]  # pushed above its start
    assert not _estimate_for(rose, best=2.7)["clear"]
    early = _estimate_for(down + [(1.5, 1.5)] * 10, best=2.95)  # best epoch before sigma moved
    assert not early["clear"] and early["sigma"] == 1.0 and "best validation epoch" in early["message"]


def test_sigma_is_learned_per_axis_in_3d(sample3d, tiny_config):
    from napari_deconoising.core.learned_psf import LearnedSigmaTrainer

    cfg = tiny_config.replace(ndim=3, patch_size=(8, 32, 32), batch_size=2, epochs=1, steps_per_epoch=2)
    trainer = LearnedSigmaTrainer(sample3d.noisy, cfg, axes="ZYX", init_sigma=2.0)
    for _ in trainer.run():
        pass
    assert len(trainer.history[-1]["psf_sigma"]) == 3
    model = trainer.model
    assert model.psf.ndim == 3 and len(model.config.sigma_per_axis) == 3


def test_the_learning_run_has_the_measured_budget(tiny_config):
    from napari_deconoising.core.learned_psf import ESTIMATE_STEPS, estimation_config

    short = tiny_config.replace(epochs=3, steps_per_epoch=4)
    assert estimation_config(short) == short  # shorter than the measured budget: all of it
    long = tiny_config.replace(epochs=200, steps_per_epoch=50)
    learn = estimation_config(long)
    assert (learn.total_steps, learn.steps_per_epoch) == (ESTIMATE_STEPS, 10)
    assert learn.replace(epochs=200, steps_per_epoch=50) == long  # nothing else changes


@pytest.mark.parametrize("param", ["sigmoid", "log"])
def test_log_sigma_slope_is_the_gradient_of_log_sigma(param):
    psf = LearnableGaussianPSF((0.8, 2.6), param=param)
    torch.log(psf.sigma).sum().backward()
    torch.testing.assert_close(psf.raw.grad, psf.log_sigma_slope())


def test_sigma_pull_widens_sigma(sample, tiny_config):
    def sigma_after(pull):
        trainer = learned_sigma_trainer(sample.noisy, tiny_config.replace(epochs=1, steps_per_epoch=3),
                                        init_sigma=2.0, sigma_pull=pull)
        for _ in trainer.run():
            pass
        return trainer.net.psf.sigma_values()

    free, pulled = sigma_after(0.0), sigma_after(100.0)  # a pull that outweighs any loss gradient
    assert all(p > f for p, f in zip(pulled, free)) and all(p > 2.0 for p in pulled)


def test_the_pull_on_sigma_survives_fp16_loss_scaling(sample, tiny_config):
    # The GradScaler multiplies every gradient by its scale and its step divides by it again: a
    # pull added unscaled in the gradient hook came out 65536 times too weak.
    from napari_deconoising.core.learned_psf import LearnedSigmaTrainer

    trainer = LearnedSigmaTrainer(sample.noisy, tiny_config, init_sigma=2.0, sigma_pull=0.5)
    raw = trainer.net.psf.raw
    pulls = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=65536.0)):
        trainer.scaler = scaler
        trainer.optimizer.zero_grad(set_to_none=True)
        loss = (raw * 0).sum()  # no gradient of its own: what reaches raw is the pull alone
        (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is not None:
            scaler.unscale_(trainer.optimizer)  # as scaler.step does before the optimiser's step
        pulls.append(raw.grad.clone())
    expected = -0.5 / tiny_config.micro_batches * trainer.net.psf.log_sigma_slope()
    torch.testing.assert_close(pulls[0], expected)
    torch.testing.assert_close(pulls[1], expected)
