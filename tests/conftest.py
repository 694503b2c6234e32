import os

import numpy as np
import pytest

# Keep torch from fighting pytest-xvfb/Qt for the 2 cores of CI.
os.environ.setdefault("OMP_NUM_THREADS", "2")

TINY = dict(depth=2, channels=8, patch_size=32, batch_size=8, steps_per_epoch=5, epochs=4, seed=0,
            precision="fp32", device="cpu")


@pytest.fixture(autouse=True, scope="session")
def _precision_cache(tmp_path_factory):
    """Measured precision choices go to a temporary folder, never the user's cache."""
    os.environ["NAPARI_DECONOISING_CACHE"] = str(tmp_path_factory.mktemp("precision-cache"))


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


def learned_estimate(sigma: float) -> dict:
    """A clear sigma estimate as :meth:`~napari_deconoising.core.learned_psf.LearnedSigmaTrainer.estimate`
    writes it into a model (``psf_estimate``), without the learning run."""
    return {"method": "learned", "clear": True, "sigma": sigma, "learned": sigma,
            "message": f"PSF sigma learned from the data: {sigma:.2f} px"}


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
def train_widget(make_napari_viewer, fresh_registry):
    """A viewer with the Train widget docked (GUI tests)."""
    from napari_deconoising._widgets import TrainWidget

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    return viewer, widget


@pytest.fixture
def notifications(monkeypatch):
    """Collect the messages the plugin shows, by level ('error', 'warning', 'info')."""
    from napari_deconoising._widgets import _notify

    seen: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    monkeypatch.setattr(_notify, "show", lambda level, msg: seen[level].append(str(msg)))
    return seen


def set_tiny(widget, **overrides):
    """Fill a TrainWidget's advanced settings with the tiny setup."""
    for k, v in {**TINY_GUI, **overrides}.items():
        getattr(widget.form, k).value = v


# -- bioimage.io packages made by hand (the importer needs no bioimageio) ---------------------

@pytest.fixture
def hand_package():
    """``hand_package(folder, model, rdf_changes=[...], weights=bytes)`` writes a package folder
    like our exporter's (rdf.yaml + weights.pt) and returns its rdf.yaml; ``.zip(folder, out)``."""
    import hashlib
    import zipfile

    import torch
    import yaml

    from napari_deconoising.bioimageio.architecture import ARCHITECTURE
    from napari_deconoising.bioimageio.files import build_net
    from napari_deconoising.bioimageio.tensors import payload as _payload

    def write(folder, model, *, rdf_changes=(), weights=None):
        folder.mkdir(parents=True, exist_ok=True)
        if weights is None:
            torch.save(build_net(model).state_dict(), folder / "weights.pt")
        else:
            (folder / "weights.pt").write_bytes(weights)
        raw = (folder / "weights.pt").read_bytes()
        rdf = {
            "type": "model", "format_version": "0.5.12", "name": "hand made",
            "weights": {"pytorch_state_dict": {
                "source": "weights.pt", "sha256": hashlib.sha256(raw).hexdigest(),
                "architecture": {"import_from": ARCHITECTURE[0], "callable": ARCHITECTURE[1], "kwargs": {}}}},
            "config": {"napari_deconoising": _payload(model, "test")},
        }
        for change in rdf_changes:
            change(rdf)
        (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
        return folder / "rdf.yaml"

    def to_zip(folder, out):
        with zipfile.ZipFile(out, "w") as z:
            for f in folder.iterdir():
                z.write(f, f.name)
        return out

    write.zip = to_zip
    return write


@pytest.fixture(scope="session")
def needs_bioimageio():
    """Skip without the [bioimageio] extra, except on CI, which installs it: there the real test runs."""
    from napari_deconoising.bioimageio import BioimageioUnavailable
    from napari_deconoising.bioimageio.errors import require_bioimageio

    try:
        require_bioimageio()
    except BioimageioUnavailable as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))


@pytest.fixture
def int8_misses(trained, monkeypatch):
    """A CPU where ``auto`` measures int8 > bf16 > fp32 for prediction, and int8 then misses its
    tolerance on every image (no cache): the plan's fall-back is what runs."""
    from napari_deconoising.core import device as device_mod
    from napari_deconoising.core import precision as precision_mod
    from napari_deconoising.core.precision import CPUInfo
    from napari_deconoising.core.quantize import int8_unavailable

    if int8_unavailable(trained.config) is not None:
        pytest.skip("no x86 int8 engine here")
    monkeypatch.setenv("NAPARI_DECONOISING_CACHE", "off")
    monkeypatch.setattr(device_mod, "cpu_info", lambda: CPUInfo("Test", "x86_64", frozenset({"avx512_bf16"})))
    monkeypatch.setattr(device_mod, "measure", lambda probe, dev, precisions: (
        {"fp32": 1.0, "bf16": 0.5, "int8": 0.25}, {"fp32": 0.0, "bf16": 0.0, "int8": 0.0}))
    monkeypatch.setitem(precision_mod.TOLERANCE, "predict", 1e-9)
