"""int8 prediction (core/quantize.py): calibrated per image, checked against fp32, tile-exact."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from napari_deconoising.core import precision as precision_mod
from napari_deconoising.core import quantize as quantize_mod
from napari_deconoising.core.device import execution_plan
from napari_deconoising.core.network import DecoNoisingNet
from napari_deconoising.core.precision import CPUInfo, candidates
from napari_deconoising.core.precision_cache import cache_key
from napari_deconoising.core.predict import prediction_plan
from napari_deconoising.core.probe import measure, prediction_probe
from napari_deconoising.core.psf import gaussian_psf
from napari_deconoising.core.quantize import (
    _equalize,
    calibration_crops,
    int8_network,
    int8_unavailable,
    prediction_network,
    quantize,
)

pytestmark = pytest.mark.skipif(int8_unavailable(type("C", (), {"ndim": 2, "n2v2": False})()) is not None,
                                reason="no x86 int8 engine here")


def _rel(a, b):
    a, b = (t.numpy() if isinstance(t, torch.Tensor) else np.asarray(t) for t in (a, b))
    return float(np.sqrt(np.mean((a - b) ** 2)) / (np.std(b) or 1.0))


def _busy_net(seed=0, decoder="wide"):
    """A small network whose output has structure (an untrained head is near-constant). The error
    bounds below were set on the wide decoder's random weights."""
    torch.manual_seed(seed)
    net = DecoNoisingNet(gaussian_psf(1.0), depth=2, channels=8, decoder=decoder).eval()
    torch.nn.init.normal_(net.unet.head.weight, std=0.3)
    return net


def test_int8_is_offered_except_for_n2v2(tiny_config):
    assert int8_unavailable(tiny_config) is None
    assert int8_unavailable(tiny_config.replace(ndim=3, patch_size=(8, 32, 32))) is None
    assert "N2V2" in int8_unavailable(tiny_config.replace(n2v2=True))


def test_quantized_network_keeps_the_call_and_the_fp32_psf():
    net = _busy_net()
    x = torch.randn(2, 1, 40, 52)
    qnet = quantize(net, [x])
    with torch.inference_mode():
        den, ph = qnet(x)
        ref_den, ref_ph = net(x)
        # The PSF runs in fp32 on the int8 body's phantom, exactly as in the fp32 network.
        torch.testing.assert_close(den, net.psf(ph))
    assert den.shape == ph.shape == x.shape and den.dtype == ph.dtype == torch.float32
    # A random network quantises worse than a trained one (5 % here against 0.5-1 %).
    assert 0 < _rel(den, ref_den) < 0.1 and 0 < _rel(ph, ref_ph) < 0.1
    # The original network is untouched.
    assert all(not p.is_quantized for p in net.parameters())


def test_equalisation_keeps_the_function_and_undoes_unbalanced_channels(monkeypatch):
    net = _busy_net()
    x = torch.randn(1, 1, 64, 64)
    # The same function with one channel 50x larger (and its consumers' weights 50x smaller):
    # per-tensor int8 ranges then leave the other channels few levels.
    skewed = copy.deepcopy(net)
    first, second = skewed.unet.down[0][0], skewed.unet.down[0][2]
    with torch.no_grad():
        first.weight[0] *= 50
        first.bias[0] *= 50
        second.weight[:, 0] /= 50
    equalized = copy.deepcopy(skewed)
    _equalize(equalized.unet, [x])
    with torch.inference_mode():
        ref = net(x)
        for other in (skewed, equalized):
            torch.testing.assert_close(other(x), ref, rtol=1e-4, atol=1e-5)
    _, err = int8_network(net, [x])
    _, err_skewed = int8_network(skewed, [x])
    monkeypatch.setattr(quantize_mod, "EQUALIZE_ALPHA", 0.0)
    _, err_skewed_plain = int8_network(skewed, [x])
    assert err_skewed < 1.5 * err < err_skewed_plain


def test_int8_error_grows_when_the_calibration_misses_the_range():
    net = _busy_net()
    x = torch.randn(1, 1, 64, 64)
    _, err = int8_network(net, [x])
    # Calibrated on a tenth of the contrast, everything brighter is clipped.
    clipped = quantize(net, [x * 0.1])
    with torch.inference_mode():
        out, ref = clipped(x), net(x)
    assert err < 0.1
    assert _rel(out[0], ref[0]) > 5 * err


def test_calibration_crops_hold_the_extremes_and_stay_small():
    rng = np.random.default_rng(0)
    imgs = [rng.normal(100, 10, (300, 500)).astype(np.float32), rng.normal(100, 10, (90, 90)).astype(np.float32)]
    imgs[0][290, 3] = 5000.0  # a bright spot in a corner
    imgs[1][10, 80] = -400.0
    crops = calibration_crops(imgs, mean=100.0, std=10.0, size=64)
    assert all(c.shape[:2] == (1, 1) and max(c.shape[2:]) <= 64 for c in crops)
    assert max(float(c.max()) for c in crops) == pytest.approx((5000 - 100) / 10)
    assert min(float(c.min()) for c in crops) == pytest.approx((-400 - 100) / 10)


def test_int8_tiled_equals_whole_image(trained, monkeypatch):
    # The tiny model's output is nearly flat, so int8's error relative to its spread is large:
    # a loose tolerance keeps int8 on for this test of tiling.
    monkeypatch.setitem(precision_mod.TOLERANCE, "predict", 1.0)
    img = np.random.default_rng(3).normal(trained.mean, trained.std, (150, 130)).astype(np.float32)
    plans = []
    whole = trained.predict(img, device="cpu", tile_size=4096, precision="int8", on_plan=plans.append)
    tiled = trained.predict(img, device="cpu", tile_size=2 * 16 + 48, batch_size=3, precision="int8")
    assert plans[0].precision == "int8"
    # Same image, same calibration crops, same integer arithmetic per pixel.
    assert _rel(tiled.denoised, whole.denoised) < 1e-5
    assert _rel(tiled.deconvolved, whole.deconvolved) < 1e-5
    fp32 = trained.predict(img, device="cpu", tile_size=4096, precision="fp32")
    assert _rel(whole.denoised, fp32.denoised) > 0


def test_int8_falls_back_to_fp32_beyond_the_tolerance(trained, monkeypatch):
    img = np.random.default_rng(4).normal(trained.mean, trained.std, (64, 64)).astype(np.float32)
    plans = []
    monkeypatch.setitem(precision_mod.TOLERANCE, "predict", 0.0)
    out = trained.predict(img, device="cpu", precision="int8", on_plan=plans.append)
    assert plans[0].precision == "fp32" and "so fp32" in plans[0].reason
    fp32 = trained.predict(img, device="cpu", precision="fp32")
    np.testing.assert_array_equal(out.denoised, fp32.denoised)


def test_prediction_network_reports_the_calibration(trained):
    plan = execution_plan("cpu", "int8")
    crops = calibration_crops([np.full((40, 40), trained.mean, np.float32) + np.eye(40, dtype=np.float32)],
                              trained.mean, trained.std)
    net, plan2 = prediction_network(trained, plan, lambda: crops)
    assert plan2.precision in ("int8", "fp32")
    assert ("calibrated on 1 crops" in plan2.reason) == (plan2.precision == "int8")
    fp32_net, fp32_plan = prediction_network(trained, execution_plan("cpu", "fp32"), lambda: 1 / 0)
    assert fp32_plan.precision == "fp32"  # the crops are never asked for


def test_int8_for_an_n2v2_model_is_a_clear_error(trained):
    n2v2 = dataclasses.replace(trained, config=trained.config.replace(n2v2=True))
    with pytest.raises(ValueError, match="int8.*N2V2"):
        prediction_plan(n2v2, "cpu", "int8")


def test_int8_3d_tiled_equals_whole_volume(trained3d, monkeypatch):
    # Trilinear up-sampling has no int8 kernel: it runs in fp32 between int8 layers.
    monkeypatch.setitem(precision_mod.TOLERANCE, "predict", 1.0)
    vol = np.random.default_rng(5).normal(trained3d.mean, trained3d.std, (14, 56, 200)).astype(np.float32)
    plans = []
    whole = trained3d.predict(vol, "ZYX", device="cpu", tile_size=4096, precision="int8", on_plan=plans.append)
    tiled = trained3d.predict(vol, "ZYX", device="cpu", tile_size=(64, 64, 120), precision="int8")
    assert plans[0].precision == "int8"
    assert _rel(tiled.denoised, whole.denoised) < 1e-5
    fp32 = trained3d.predict(vol, "ZYX", device="cpu", tile_size=4096, precision="fp32")
    assert _rel(whole.denoised, fp32.denoised) > 0


def test_calibration_crops_in_3d():
    vol = np.zeros((40, 300, 300), np.float32)
    vol[39, 299, 0] = 7.0
    crops = calibration_crops([vol], 0.0, 1.0)
    assert all(c.shape[2:] == (16, 128, 128) for c in crops)
    assert max(float(c.max()) for c in crops) == 7.0


def test_int8_is_a_prediction_candidate_only_where_asked():
    cpu = CPUInfo("test CPU", "x86_64", frozenset({"avx512f"}))
    assert candidates("cpu", cpu)[0] == ["fp32"]
    assert candidates("cpu", cpu, int8=True)[0] == ["fp32", "int8"]
    bf = CPUInfo("test CPU", "x86_64", frozenset({"avx512_bf16"}))
    assert candidates("cpu", bf, int8=True)[0] == ["fp32", "bf16", "int8"]
    assert "int8" not in candidates("cuda", None, int8=True)[0]
    # A decision made without int8 does not answer for a run that could use it.
    args = ("m", "cpu", "predict", {"depth": 2}, "2.13")
    assert cache_key(*args, limits={}) != cache_key(*args, limits={}, candidates=["fp32", "int8"])
    assert cache_key(*args, limits={}) == cache_key(*args, limits={}, candidates=None)


def test_probe_measures_int8():
    net = _busy_net()
    probe = prediction_probe(lambda: net, {"depth": 2}, (5, 5), (64, 64), int8=True)
    seconds, errors = measure(probe, torch.device("cpu"), ["fp32", "int8"])
    assert set(seconds) == set(errors) == {"fp32", "int8"}
    assert errors["fp32"] == 0 and 0 < errors["int8"] < 0.1


def test_auto_int8_that_misses_on_the_image_falls_back_to_the_runner_up(trained, monkeypatch, tmp_path):
    from napari_deconoising.core import device as device_mod
    from napari_deconoising.core.precision_cache import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(device_mod, "cpu_info", lambda: CPUInfo("Test", "x86_64", frozenset({"avx512_bf16"})))
    monkeypatch.setattr(device_mod, "_cpu_busy", lambda: None)
    # The probe says: int8 4x, bf16 2x fp32's speed, both exact; the image's own check then
    # finds int8's (real, non-zero) error above a tolerance of almost nothing.
    monkeypatch.setattr(device_mod, "measure", lambda probe, dev, precisions: (
        {"fp32": 1.0, "bf16": 0.5, "int8": 0.25}, {"fp32": 0.0, "bf16": 0.0, "int8": 0.0}))
    monkeypatch.setitem(precision_mod.TOLERANCE, "predict", 1e-9)
    # 900^2: above the small-image rule, which predicts in fp32 without measuring.
    img = np.random.default_rng(6).normal(trained.mean, trained.std, (900, 900)).astype(np.float32)
    plans = []
    trained.predict(img, device="cpu", on_plan=plans.append)
    assert plans[0].precision == "bf16" and plans[0].reason.endswith("so bf16"), plans[0].reason
    assert "measured: int8: 4.0x faster than fp32" in plans[0].reason


def test_the_probe_times_int8_and_the_image_judges_it():
    from napari_deconoising.core.precision import choose

    seconds = {"fp32": 1.0, "bf16": 0.5, "int8": 0.25}
    errors = {"fp32": 0.0, "bf16": 0.002, "int8": 0.016}
    pick = choose(seconds, errors, "predict")
    assert pick.precision == "int8" and "checked on each image" in pick.reason
    # Any other precision's probe error still rules it out.
    assert choose({"fp32": 1.0, "bf16": 0.5}, {"fp32": 0.0, "bf16": 0.016}, "predict").precision == "fp32"


@pytest.mark.parametrize("ndim, shape", [(2, (1, 1, 64, 64)), (3, (1, 1, 16, 32, 32))])
def test_the_lean_decoder_quantises_and_equalises_exactly(ndim, shape):
    torch.manual_seed(0)
    net = DecoNoisingNet(gaussian_psf(1.0, ndim=ndim), depth=2, channels=8, ndim=ndim,
                         decoder="lean").eval()
    torch.nn.init.normal_(net.unet.head.weight, std=0.3)
    x = torch.randn(*shape)
    equalized = copy.deepcopy(net)
    _equalize(equalized.unet, [x])  # every producer and consumer is found: the function is kept
    with torch.inference_mode():
        torch.testing.assert_close(equalized(x), net(x), rtol=1e-4, atol=1e-5)
    qnet, err = int8_network(net, [x])
    with torch.inference_mode():
        den, _ = qnet(x)
    assert den.shape == x.shape and 0 < err < 0.1
    # One channel of the bottleneck's output 50x larger, its consumer's weights 50x smaller (the
    # lean decoder's own link: interpolated straight into the next block): equalisation wins it back.
    skewed = copy.deepcopy(net)
    with torch.no_grad():
        skewed.unet.bottom[2].weight[0] *= 50
        skewed.unet.bottom[2].bias[0] *= 50
        skewed.unet.up_conv[0][0].weight[:, 0] /= 50
    with torch.inference_mode():
        torch.testing.assert_close(skewed(x), net(x), rtol=1e-4, atol=1e-5)
    _, err_skewed = int8_network(skewed, [x])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quantize_mod, "EQUALIZE_ALPHA", 0.0)
        _, err_skewed_plain = int8_network(skewed, [x])
    assert err_skewed < err_skewed_plain
