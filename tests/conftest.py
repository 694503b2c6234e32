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


@pytest.fixture(scope="session")
def sample3d():
    from napari_deconoising.core.sample3d import make_sample_3d

    return make_sample_3d((12, 48, 48), sigma=(2.0, 1.0, 1.0), seed=0)


@pytest.fixture(scope="session")
def trained3d(sample3d, tiny_config):
    """A tiny trained 3D DecoNoising model (8-plane patches: no Z pooling)."""
    from napari_deconoising.core import train

    cfg = tiny_config.replace(ndim=3, patch_size=(8, 32, 32), psf_sigma=sample3d.sigma, batch_size=4,
                              epochs=2, steps_per_epoch=3)
    return train(sample3d.noisy, cfg, axes="ZYX")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# -- napari widget fixtures ------------------------------------------------------------------

#: Widget training setup: 2 epochs x 2 steps of a depth-2, 8-channel U-Net.
TINY_GUI = {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "patch_size": 32, "depth": 2,
            "channels": 8, "micro_batches": 1, "device": "cpu"}


@pytest.fixture
def sync_workers(monkeypatch):
    """Run the widgets' worker generators synchronously (deterministic tests)."""
    from napari_deconoising._widgets import _worker

    monkeypatch.setattr(_worker, "SYNC", True)
    return True


@pytest.fixture
def fresh_registry():
    """An empty session model list before and after the test."""
    from napari_deconoising._widgets import REGISTRY

    REGISTRY.clear()
    yield REGISTRY
    REGISTRY.clear()


@pytest.fixture
def notifications(monkeypatch):
    """Collect the messages the widgets show, by level ('error', 'warning', 'info')."""
    seen: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    targets = {
        "error": ["_worker", "_train"],
        "warning": ["_train", "_apply", "_compare"],
        "info": ["_train", "_apply", "_compare", "_base"],
    }
    for level, modules in targets.items():
        for mod in modules:
            monkeypatch.setattr(f"napari_deconoising._widgets.{mod}.show_{level}",
                                lambda msg, _l=level: seen[_l].append(str(msg)))
    return seen


def set_tiny(widget, **overrides):
    """Fill a TrainWidget's advanced settings with the tiny setup."""
    for k, v in {**TINY_GUI, **overrides}.items():
        getattr(widget, k).value = v
