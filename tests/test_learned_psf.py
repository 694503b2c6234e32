"""Route (a): the trainable-sigma Gaussian PSF."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_deconoising.core import PSFConvolution, gaussian_psf
from napari_deconoising.core.learned_psf import LearnableGaussianPSF, learned_sigma_trainer


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
def test_blur_matches_the_fixed_gaussian_psf(sigma, rng):
    x = torch.from_numpy(rng.random((2, 1, 40, 36), dtype=np.float32))
    learned = LearnableGaussianPSF(sigma)
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


def test_sigma_stays_in_its_range():
    psf = LearnableGaussianPSF(1.0, min_sigma=0.2, max_sigma=4.0)
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
