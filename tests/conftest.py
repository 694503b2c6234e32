import os

import numpy as np
import pytest

# Keep torch from fighting pytest-xvfb/Qt for the 2 cores of CI.
os.environ.setdefault("OMP_NUM_THREADS", "2")

TINY = dict(depth=2, channels=8, patch_size=32, batch_size=8, steps_per_epoch=5, epochs=4, seed=0,
            precision="fp32", device="cpu")


@pytest.fixture(scope="session")
def tiny_config():
    from napari_deconoising.core import TrainConfig

    return TrainConfig(**TINY)


@pytest.fixture(scope="session")
def sample():
    from napari_deconoising.core import make_sample

    return make_sample((96, 96), sigma=1.5, seed=0)


@pytest.fixture(scope="session")
def trained(sample, tiny_config):
    """A tiny trained DecoNoising model, shared by tests that only read it."""
    from napari_deconoising.core import train

    return train(sample.noisy, tiny_config.replace(psf_sigma=sample.sigma))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
