"""execution_plan and the measured precision="auto" decision (with injected timings)."""

from __future__ import annotations

import pytest
import torch

from napari_deconoising.core import device as device_mod
from napari_deconoising.core.device import choose_precision, execution_plan
from napari_deconoising.core.precision import CPUInfo
from napari_deconoising.core.precision_cache import CACHE_ENV, DecisionCache
from napari_deconoising.core.probe import training_probe

CPU = torch.device("cpu")
BF16_CPU = CPUInfo("Test CPU", "x86_64", frozenset({"avx512f", "avx512_bf16"}))
PLAIN_CPU = CPUInfo("Old CPU", "x86_64", frozenset({"avx2", "avx512f"}))


class FakeMeasure:
    """Stands in for probe.measure: returns given timings and counts its calls."""

    def __init__(self, seconds, errors):
        self.seconds, self.errors, self.calls = seconds, errors, []

    def __call__(self, probe, dev, precisions):
        self.calls.append(list(precisions))
        return ({p: self.seconds[p] for p in precisions}, {p: self.errors.get(p, 0.0) for p in precisions})


def _probe(channels=8):
    return training_probe(dict(depth=2, channels=channels, ndim=2), None, (32, 32), 4)


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_info", lambda: BF16_CPU)
    monkeypatch.setattr(device_mod, "_cpu_busy", lambda: None)  # the test machine's load must not matter


def test_a_busy_cpu_decides_for_this_run_only(bf16_cpu, tmp_path, monkeypatch):
    monkeypatch.setattr(device_mod, "_cpu_busy", lambda: "the CPU was busy (load average 9.0 on 2 cores)")
    fake = FakeMeasure({"fp32": 1.0, "bf16": 1.1}, {})
    c = choose_precision(CPU, _probe(), DecisionCache(tmp_path), fake)
    assert c.precision == "fp32" and c.reason.endswith("not cached: the CPU was busy (load average 9.0 on 2 cores)")
    choose_precision(CPU, _probe(), DecisionCache(tmp_path), fake)
    assert len(fake.calls) == 2 and not (tmp_path / "precision.json").exists()


def test_cpu_busy_compares_load_with_cores(monkeypatch):
    monkeypatch.setattr(device_mod.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(device_mod.os, "getloadavg", lambda: (2.5, 1.0, 1.0))
    assert device_mod._cpu_busy() == "the CPU was busy (load average 2.5 on 2 cores)"
    monkeypatch.setattr(device_mod.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert device_mod._cpu_busy() is None


def test_no_native_bf16_means_fp32_without_measuring(monkeypatch, tmp_path):
    monkeypatch.setattr(device_mod, "cpu_info", lambda: PLAIN_CPU)
    fake = FakeMeasure({"fp32": 1.0, "bf16": 0.1}, {})
    c = choose_precision(CPU, _probe(), DecisionCache(tmp_path), fake)
    assert c.precision == "fp32" and fake.calls == [] and "no native bf16" in c.reason


def test_a_measured_choice_says_which_precision_was_left_out(monkeypatch, tmp_path):
    """int8 prediction on a CPU without bf16 units: fp32 and int8 are measured, and the reason says why
    bf16 was not."""
    from napari_deconoising.core.probe import prediction_probe

    monkeypatch.setattr(device_mod, "cpu_info", lambda: PLAIN_CPU)
    monkeypatch.setattr(device_mod, "_cpu_busy", lambda: None)
    probe = prediction_probe(lambda: None, dict(depth=2, channels=8, ndim=2), None, (64, 64), int8=True)
    fake = FakeMeasure({"fp32": 1.0, "int8": 0.5}, {"int8": 0.001})
    c = choose_precision(CPU, probe, DecisionCache(tmp_path), fake)
    assert fake.calls == [["fp32", "int8"]] and c.precision == "int8"
    assert c.reason.endswith("; this CPU has no native bf16 (AVX512-BF16 or AMX-BF16 missing), "
                             "so bf16 would only be emulated")


def test_measured_choice_and_cache_hit(bf16_cpu, tmp_path):
    cache = DecisionCache(tmp_path)
    fast = FakeMeasure({"fp32": 1.0, "bf16": 0.4}, {"bf16": 0.002})
    c = choose_precision(CPU, _probe(), cache, fast)
    assert c.precision == "bf16" and c.source == "measured" and fast.calls == [["fp32", "bf16"]]
    slow = FakeMeasure({"fp32": 1.0, "bf16": 3.0}, {})
    again = choose_precision(CPU, _probe(), cache, slow)
    assert again.precision == "bf16" and again.source == "cached" and slow.calls == []


def test_emulated_bf16_loses_the_measurement(bf16_cpu, tmp_path):
    # issue 8: oneDNN emulating bf16 took 124 s against 55 s in fp32.
    c = choose_precision(CPU, _probe(), DecisionCache(tmp_path), FakeMeasure({"fp32": 55.0, "bf16": 124.0}, {}))
    assert c.precision == "fp32" and "0.44x fp32's speed" in c.reason


def test_cache_invalidated_by_torch_version_and_network_shape(bf16_cpu, tmp_path, monkeypatch):
    cache = DecisionCache(tmp_path)
    fake = FakeMeasure({"fp32": 1.0, "bf16": 0.4}, {})
    choose_precision(CPU, _probe(), cache, fake)
    choose_precision(CPU, _probe(channels=16), cache, fake)
    assert len(fake.calls) == 2
    monkeypatch.setattr(torch, "__version__", "99.0.0")
    choose_precision(CPU, _probe(), cache, fake)
    assert len(fake.calls) == 3
    choose_precision(CPU, _probe(), cache, fake)
    assert len(fake.calls) == 3


def test_env_var_disables_the_cache(bf16_cpu, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, "off")
    fake = FakeMeasure({"fp32": 1.0, "bf16": 0.4}, {})
    choose_precision(CPU, _probe(), None, fake)
    choose_precision(CPU, _probe(), None, fake)
    assert len(fake.calls) == 2


def test_env_var_redirects_the_cache(bf16_cpu, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "here"))
    choose_precision(CPU, _probe(), None, FakeMeasure({"fp32": 1.0, "bf16": 0.4}, {}))
    assert (tmp_path / "here" / "precision.json").exists()


def test_without_probe_native_bf16_is_taken_unmeasured(bf16_cpu):
    c = choose_precision(CPU)
    assert c.precision == "bf16" and "not measured" in c.reason


def test_execution_plan_carries_the_reason(bf16_cpu, tmp_path, monkeypatch):
    monkeypatch.setattr(device_mod, "measure", FakeMeasure({"fp32": 1.0, "bf16": 0.5}, {"bf16": 0.001}))
    plan = execution_plan("cpu", "auto", probe=_probe(), cache=DecisionCache(tmp_path))
    assert plan.precision == "bf16" and plan.channels_last and "2.0x faster than fp32" in plan.describe()
    cached = execution_plan("cpu", "auto", probe=_probe(), cache=DecisionCache(tmp_path))
    assert cached.reason.startswith("cached measured: bf16")
    assert execution_plan("cpu", "fp32").reason == "requested"


def test_execution_plan_errors():
    with pytest.raises(RuntimeError, match="fp16 is not supported on the CPU"):
        execution_plan("cpu", "fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        execution_plan("cpu", "int4")


def test_int8_plan_is_a_cpu_plan_without_autocast():
    plan = execution_plan("cpu", "int8")
    assert plan.quantized and plan.precision == "int8" and plan.dtype is None and plan.reduced
    assert not execution_plan("cpu", "fp32").reduced and execution_plan("cpu", "bf16").reduced


def test_to_device_on_cpu_is_a_channels_last_view():
    import numpy as np

    a = np.zeros((2, 1, 8, 8), np.float32)
    t = execution_plan("cpu", "fp32").to_device(a)
    assert t.device.type == "cpu" and t.is_contiguous(memory_format=torch.channels_last)
    assert t.data_ptr() == torch.from_numpy(a).data_ptr()  # C=1: channels-last is the same memory


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_plan_sets_up_the_gpu_path(tmp_path):
    import numpy as np

    plan = execution_plan("cuda", "auto", probe=_probe(), cache=DecisionCache(tmp_path))
    assert plan.precision in ("fp32", "bf16", "fp16") and plan.channels_last and "measured" in plan.reason
    assert torch.backends.cudnn.benchmark
    t = plan.to_device(np.ones((2, 1, 16, 16), np.float32))
    assert t.device.type == "cuda" and float(t.sum()) == 512.0


@needs_cuda
def test_cuda_prediction_within_tolerance_of_fp32(trained, sample):
    import numpy as np

    exact = trained.predict(sample.noisy, device="cuda", precision="fp32").denoised
    for precision in ("auto", "bf16" if torch.cuda.is_bf16_supported() else "fp16"):
        fast = trained.predict(sample.noisy, device="cuda", precision=precision).denoised
        # Relative to the data's spread (the model's normalisation), not the output's: this
        # briefly trained network predicts an almost flat image (std 0.015 around 1.85), and
        # bf16's rounding of 1.85 alone is 2.5 % of that (seen on an H200).
        assert np.sqrt(np.mean((fast - exact) ** 2)) / trained.std < 0.02


@needs_cuda
def test_cuda_image_kept_on_the_gpu_matches_the_host_path(trained):
    import sys
    from unittest import mock

    import numpy as np

    predict_mod = sys.modules["napari_deconoising.core.predict"]
    img = np.random.default_rng(0).normal(trained.mean, trained.std, (300, 200)).astype(np.float32)
    assert predict_mod._fits_on_device(predict_mod.prediction_plan(trained, "cuda", "fp32"), img.size)
    kept = trained.predict(img, device="cuda", precision="fp32", tile_size=128)
    with mock.patch.object(predict_mod, "_fits_on_device", return_value=False):
        host = trained.predict(img, device="cuda", precision="fp32", tile_size=128)
    # Not bit for bit as on the CPU: fp32 convolutions run as TF32 on the GPU, and cuDNN's
    # benchmark mode may time and pick another algorithm per call (2e-5 relative seen on an H200).
    np.testing.assert_allclose(kept.denoised, host.denoised, rtol=2e-4, atol=0)
    np.testing.assert_allclose(kept.deconvolved, host.deconvolved, rtol=2e-4, atol=1e-3 * trained.std)


def test_3d_training_on_cuda_runs_contiguous_and_everything_else_channels_last():
    """Measured on an H100: 3D training 1.05-1.18x faster contiguous, 2D 1.34x slower (docs)."""
    from napari_deconoising.core.probe import uses_channels_last

    assert not uses_channels_last("cuda", 3, "train")
    assert uses_channels_last("cuda", 3, "predict") and uses_channels_last("cuda", 2, "train")
    assert uses_channels_last("cpu", 3, "train") and not uses_channels_last("mps", 2, "train")
    plan = execution_plan("cpu", "fp32", probe=training_probe(dict(depth=2, channels=8, ndim=3), None,
                                                              (8, 32, 32), 2))
    assert plan.channels_last and plan.memory_format(3) == torch.channels_last_3d


@needs_cuda
def test_a_3d_trainer_on_cuda_keeps_its_network_contiguous(tiny_config):
    import numpy as np

    from napari_deconoising.core import Trainer

    vol = np.random.default_rng(0).normal(size=(16, 48, 48)).astype(np.float32)
    cfg = tiny_config.replace(device="cuda", ndim=3, patch_size=(8, 32, 32), psf_sigma=(1.0, 1.0, 1.0))
    trainer = Trainer(vol, cfg)
    # On the CPU the same trainer's 5D weights are channels-last, so not contiguous.
    assert not trainer.plan.channels_last
    assert all(p.is_contiguous() for p in trainer.net.parameters())


def test_a_cached_decision_of_an_unknown_precision_is_measured_again(bf16_cpu, tmp_path, monkeypatch):
    """An entry a newer version (or a hand) wrote, naming a precision this version does not run."""
    import json

    cache = DecisionCache(tmp_path)
    fake = FakeMeasure({"fp32": 1.0, "bf16": 0.5}, {"bf16": 0.001})
    monkeypatch.setattr(device_mod, "measure", fake)
    execution_plan("cpu", "auto", probe=_probe(), cache=cache)
    for value in ("fp8", None):
        cache.path.write_text(json.dumps({k: {**v, "precision": value} for k, v in cache._read().items()}))
        plan = execution_plan("cpu", "auto", probe=_probe(), cache=cache)
        assert plan.precision == "bf16" and plan.reason.startswith("measured: bf16")
    assert len(fake.calls) == 3
