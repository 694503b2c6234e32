import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_deconoising.core import Cancelled, DataError
from napari_deconoising.core.predict import auto_tile_size, tile_halo


def _rel(a, b):
    return np.abs(a - b).max() / (np.abs(b).max() + 1e-12)


@pytest.mark.parametrize("shape", [(96, 96), (150, 77)])
def test_tiled_equals_whole_image(trained, shape):
    img = np.random.default_rng(0).normal(trained.mean, trained.std, shape).astype(np.float32)
    halo = tile_halo(trained)
    whole = trained.predict(img, device="cpu", tile_size=4096, precision="fp32")
    for tile in (2 * halo + 8, 2 * halo + 24):
        tiled = trained.predict(img, device="cpu", tile_size=tile, batch_size=3, precision="fp32")
        assert _rel(tiled.denoised, whole.denoised) < 1e-4
        assert _rel(tiled.deconvolved, whole.deconvolved) < 1e-4


def _random_model(ndim, depth=1, pool_z=True, sigma=1.0, wiener_eps=0.0):
    """An untrained model with small halos (depth 1): tiling must be exact for any weights."""
    import torch

    from napari_deconoising.core import DecoNoisingModel, DecoNoisingNet, TrainConfig, gaussian_psf

    cfg = TrainConfig(ndim=ndim, depth=depth, channels=4, psf_sigma=sigma, pool_z=pool_z if ndim == 3 else None,
                      patch_size=(16, 32, 32) if ndim == 3 else 32, wiener_eps=wiener_eps)
    psf = gaussian_psf(sigma, ndim=ndim)
    torch.manual_seed(0)
    net = DecoNoisingNet(psf, depth=depth, channels=4, ndim=ndim, **({"pool_z": pool_z} if ndim == 3 else {}))
    return DecoNoisingModel(cfg, net.state_dict(), 1.0, 2.0, psf)


_MODEL2D = _random_model(2)
_MODEL3D = _random_model(3)


@given(ny=st.integers(1, 70), nx=st.integers(2, 70), ty=st.integers(34, 90), tx=st.integers(34, 90),
       batch=st.integers(1, 4))
@settings(max_examples=25, deadline=None)
def test_any_tiles_equal_the_whole_image(ny, nx, ty, tx, batch):
    """Any tile size (halo 16, pooling 2), any image size, length-1 axes: tiled == whole."""
    img = np.random.default_rng(ny * 100 + nx).normal(1, 2, (ny, nx)).astype(np.float32)
    whole = _MODEL2D.predict(img, device="cpu", tile_size=4096, precision="fp32")
    tiled = _MODEL2D.predict(img, device="cpu", tile_size=(ty, tx), batch_size=batch, precision="fp32")
    assert _rel(tiled.denoised, whole.denoised) < 1e-5
    assert _rel(tiled.deconvolved, whole.deconvolved) < 1e-5


@pytest.mark.parametrize("ndim", [2, 3])
def test_tiled_equals_whole_with_a_preconditioned_phantom(ndim):
    """The Wiener filter widens the halo by its own radius; tiling stays exact."""
    from napari_deconoising.core.tile_plan import tile_halos

    sigma = 1.0 if ndim == 2 else (1.0, 0.7, 0.7)
    model = _random_model(ndim, sigma=sigma, wiener_eps=0.01)
    plain = _random_model(ndim, sigma=sigma)
    assert all(a > b for a, b in zip(tile_halos(model), tile_halos(plain)))
    shape = (90, 83) if ndim == 2 else (30, 61, 57)
    img = np.random.default_rng(3).normal(1, 2, shape).astype(np.float32)
    whole = model.predict(img, device="cpu", tile_size=4096, precision="fp32")
    halos = tile_halos(model)
    tiled = model.predict(img, device="cpu", tile_size=tuple(2 * h + 6 for h in halos), batch_size=2,
                          precision="fp32")
    assert _rel(tiled.denoised, whole.denoised) < 1e-5
    assert _rel(tiled.deconvolved, whole.deconvolved) < 1e-5
    # and the filter is on: the plain network with the same weights gives another phantom
    other = plain.predict(img, device="cpu", tile_size=4096, precision="fp32")
    assert _rel(other.deconvolved, whole.deconvolved) > 1e-2


@given(ny=st.integers(1, 70), nx=st.integers(2, 70), ty=st.integers(34, 90), tx=st.integers(34, 90),
       batch=st.integers(1, 4), ndim=st.sampled_from([2, 3]))
@settings(max_examples=12, deadline=None)
def test_image_kept_on_the_device_gives_the_same_result(ny, nx, ty, tx, batch, ndim):
    """On a GPU an image that fits stays there while its tiles run (predict._fits_on_device);
    the result is bit for bit the host path's. Run here on the CPU, where only the place differs."""
    import sys
    from unittest import mock

    predict_mod = sys.modules["napari_deconoising.core.predict"]  # the package exports a function of that name

    model = _MODEL2D if ndim == 2 else _MODEL3D
    shape = (ny, nx) if ndim == 2 else (min(ny, 9), ny, nx)
    img = np.random.default_rng(ny * 100 + nx).normal(1, 2, shape).astype(np.float32)
    tile = (ty, tx) if ndim == 2 else (min(ty, 40), ty, tx)
    host = model.predict(img, device="cpu", tile_size=tile, batch_size=batch, precision="fp32")
    with mock.patch.object(predict_mod, "_fits_on_device", return_value=True):
        kept = model.predict(img, device="cpu", tile_size=tile, batch_size=batch, precision="fp32")
    np.testing.assert_array_equal(kept.denoised, host.denoised)
    np.testing.assert_array_equal(kept.deconvolved, host.deconvolved)
    assert not np.shares_memory(kept.denoised, img)


def test_no_halo_beyond_the_border():
    """Beyond the image, aligned to the pooling multiple and with ``tile_margins`` mirrored pixels,
    the network zero-pads, as in training: one forward pass over that domain is what tiled
    prediction reproduces."""
    import torch

    from napari_deconoising.core.tile_plan import tile_margins

    r, _ = tile_margins(_MODEL2D)
    assert 0 < r < tile_halo(_MODEL2D)  # some mirrored context, less than a full halo
    img = np.random.default_rng(3).normal(1, 2, (37, 40)).astype(np.float32)
    pred = _MODEL2D.predict(img, device="cpu", tile_size=(34, 40 + 2 * r), precision="fp32")
    x = np.pad((img - 1) / 2, ((r, r + 1), (r, r)), mode="reflect")  # Y aligned to the pooling multiple 2
    with torch.inference_mode():
        den, dec = _MODEL2D.build_network()(torch.from_numpy(x)[None, None])
    inside = (slice(r, r + 37), slice(r, r + 40))
    np.testing.assert_allclose(pred.denoised, den[0, 0][inside].numpy() * 2 + 1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pred.deconvolved, dec[0, 0][inside].numpy() * 2 + 1, rtol=1e-5, atol=1e-5)


def test_halo_is_needed(trained, monkeypatch):
    """Guard the guard: with too little context per tile, seams appear."""
    import sys

    P = sys.modules["napari_deconoising.core.tile_plan"]

    img = np.random.default_rng(1).normal(trained.mean, trained.std, (96, 96)).astype(np.float32)
    whole = trained.predict(img, device="cpu", tile_size=4096, precision="fp32")
    monkeypatch.setattr(P, "tile_halos", lambda m: (8, 8))
    tiled = trained.predict(img, device="cpu", tile_size=32, precision="fp32")
    assert _rel(tiled.denoised, whole.denoised) > 1e-3


def test_outputs_in_input_units_and_layout(trained, sample):
    stack = np.clip(np.stack([sample.noisy, sample.noisy[::-1]]), 0, None).round().astype(np.uint16)
    pred = trained.predict(stack, "TYX", device="cpu")
    assert pred.denoised.shape == stack.shape and pred.denoised.dtype == np.float32
    single = trained.predict(stack[1], device="cpu")
    np.testing.assert_allclose(pred.denoised[1], single.denoised, rtol=1e-5, atol=1e-4)
    # intensity units: the denoised image has about the input's mean
    assert abs(pred.denoised.mean() - stack.mean()) < 0.2 * stack.std()
    yxt = np.moveaxis(stack, 0, -1)
    pred2 = trained.predict(yxt, "YXT", device="cpu")
    np.testing.assert_allclose(np.moveaxis(pred2.denoised, -1, 0), pred.denoised, rtol=1e-5, atol=1e-4)


def test_list_input_gives_lists(trained, sample):
    pred = trained.predict([sample.noisy, sample.noisy[:50, :70]], device="cpu")
    assert [p.shape for p in pred.denoised] == [(96, 96), (50, 70)]


def test_tiny_image(trained):
    img = np.random.default_rng(0).random((7, 11)).astype(np.float32)
    assert trained.predict(img, device="cpu").denoised.shape == (7, 11)


def test_progress_and_cancel(trained, sample):
    calls = []
    halo = tile_halo(trained)
    trained.predict(sample.noisy, device="cpu", tile_size=2 * halo + 16, batch_size=1,
                    progress=lambda d, t: calls.append((d, t)))
    # (0, total) before any tile, then one call per tile (batch_size=1)
    assert calls[0] == (0, calls[-1][1]) and calls[-1][0] == calls[-1][1] and len(calls) == calls[-1][1] + 1 > 2
    with pytest.raises(Cancelled):
        trained.predict(sample.noisy, device="cpu", tile_size=2 * halo + 16, batch_size=1,
                        cancel=lambda: True)


def test_bad_input(trained):
    with pytest.raises(DataError, match="RGB"):
        trained.predict(np.zeros((64, 64, 3)), device="cpu")
    with pytest.raises(ValueError, match="a tile size of"):
        trained.predict(np.random.rand(64, 64), device="cpu", tile_size=16)


def test_auto_tile_size_is_sane(trained):
    import torch

    t = auto_tile_size(trained, torch.device("cpu"))
    assert t % 2**trained.config.depth == 0 and 2 * tile_halo(trained) < t <= 2048


def test_memory_stays_bounded_on_a_large_image(tmp_path):
    """Prediction in a fresh process holds a couple of tiles' activations, never all of them."""
    import subprocess
    import sys

    code = """
import numpy as np
from napari_deconoising.core import DecoNoisingModel, DecoNoisingNet, TrainConfig, gaussian_psf
cfg = TrainConfig(depth=2, channels=32, psf_sigma=1.5)
net = DecoNoisingNet(gaussian_psf(1.5), depth=2, channels=32)
m = DecoNoisingModel(cfg, net.state_dict(), 100.0, 10.0, gaussian_psf(1.5))
img = np.random.default_rng(0).integers(0, 1000, (1536, 1536)).astype(np.uint16)
m.predict(img[:300, :300], device="cpu", tile_size=256, batch_size=2, precision="fp32")  # warm up kernels
before = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")][0]
p = m.predict(img, device="cpu", tile_size=256, batch_size=2, precision="fp32")
assert p.denoised.shape == img.shape
print(before * 1024, [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] * 1024)
"""
    # A clean environment: earlier tests (a Dask cluster) leave allocator and thread settings in
    # os.environ (MALLOC_TRIM_THRESHOLD_, *_NUM_THREADS) that can change what RSS measures.
    keep = ("PATH", "HOME", "PYTHONPATH", "LANG", "TMPDIR", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ} | {"OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    before, peak = map(int, r.stdout.split())
    print(f"RSS growth {(peak - before) / 2**20:.0f} MiB")
    # 81 tiles of 256 px through a 32-channel U-Net: ~84 MiB of activations each, ~6.8 GiB for
    # all at once (batching all 36 tiles of a 1024^2 image measured 2025 MiB). Two tiles per
    # batch plus image-sized copies is ~200 MiB. The peak is VmHWM, which starts anew at exec:
    # ru_maxrss carries the parent's peak over, which is how a full test run once "grew" 1.6-2.2 GiB.
    assert peak - before < 1024**3, f"prediction grew RSS by {(peak - before) / 2**20:.0f} MiB"


# -- 3D ---------------------------------------------------------------------------------------

def _random_3d_model(pool_z, sigma=(2.0, 1.0, 1.0)):
    """An untrained 3D model: tiling must be exact for any weights."""
    import torch

    from napari_deconoising.core import DecoNoisingModel, DecoNoisingNet, TrainConfig, gaussian_psf

    cfg = TrainConfig(ndim=3, depth=2, channels=4, psf_sigma=sigma, patch_size=(16, 32, 32), pool_z=pool_z)
    psf = gaussian_psf(sigma, ndim=3)
    torch.manual_seed(0)
    net = DecoNoisingNet(psf, depth=2, channels=4, ndim=3, pool_z=pool_z)
    return DecoNoisingModel(cfg, net.state_dict(), 10.0, 3.0, psf)


@pytest.mark.parametrize("pool_z", [True, False])
@pytest.mark.parametrize("shape", [(10, 20, 24), (7, 13, 30)])
def test_3d_tiled_equals_whole_volume(pool_z, shape):
    from napari_deconoising.core.predict import tile_halos
    from napari_deconoising.core.tile_plan import tile_margins

    model = _random_model(3, depth=1, pool_z=pool_z, sigma=(2.0, 1.0, 1.0))
    halos = tile_halos(model)
    assert halos[1] == halos[2] and halos[0] != halos[1]  # Z has its own context
    # larger than twice the halo, so that tiles can split every axis
    vol = np.random.default_rng(0).normal(10, 3, [2 * h + n for h, n in zip(halos, shape)]).astype(np.float32)
    whole = model.predict(vol, "ZYX", device="cpu", tile_size=(400, 400, 400), precision="fp32")
    mults, margins = (2 if pool_z else 1, 2, 2), tile_margins(model)
    halves = [h + r + math.ceil(n / (2 * k)) * k for h, r, n, k in zip(halos, margins, vol.shape, mults)]  # 2 per axis
    thin_x = [400, 400, 2 * halos[2] + 4 * mults[2]]  # three or more along X: inner tiles carry two halos
    for tiles, count in ((halves, 8), (thin_x, 3)):
        calls = []
        tiled = model.predict(vol, "ZYX", device="cpu", tile_size=tiles, batch_size=3, precision="fp32",
                              progress=lambda d, t, c=calls: c.append(t))
        assert calls[-1] >= count
        assert _rel(tiled.denoised, whole.denoised) < 1e-5
        assert _rel(tiled.deconvolved, whole.deconvolved) < 1e-5


def test_3d_z_halo_is_needed(monkeypatch):
    import sys

    from napari_deconoising.core.predict import tile_halos

    model = _random_3d_model(False)
    vol = np.random.default_rng(1).normal(10, 3, (12, 16, 16)).astype(np.float32)
    whole = model.predict(vol, "ZYX", device="cpu", tile_size=400, precision="fp32")
    hz, hy, hx = tile_halos(model)
    monkeypatch.setattr(sys.modules["napari_deconoising.core.tile_plan"], "tile_halos", lambda m: (2, hy, hx))
    tiled = model.predict(vol, "ZYX", device="cpu", tile_size=(8, 2 * hy + 16, 2 * hx + 16), precision="fp32")
    assert _rel(tiled.denoised, whole.denoised) > 1e-3


def test_3d_stack_of_volumes_layout_progress_and_cancel(trained3d, sample3d):
    tzyx = np.stack([sample3d.noisy, sample3d.noisy[::-1]]).clip(0, None).astype(np.uint16)
    calls = []
    pred = trained3d.predict(tzyx, "TZYX", device="cpu", progress=lambda d, t: calls.append((d, t)))
    assert pred.denoised.shape == tzyx.shape and pred.deconvolved.dtype == np.float32
    assert calls[-1][0] == calls[-1][1] >= 2  # at least one tile per volume
    one = trained3d.predict(tzyx[1], "ZYX", device="cpu")
    np.testing.assert_allclose(pred.denoised[1], one.denoised, rtol=1e-5, atol=1e-4)
    # axes in another order give the same result
    moved = np.moveaxis(tzyx, 1, -1)  # TYXZ
    pred2 = trained3d.predict(moved, "TYXZ", device="cpu")
    np.testing.assert_allclose(np.moveaxis(pred2.denoised, -1, 1), pred.denoised, rtol=1e-5, atol=1e-4)
    with pytest.raises(Cancelled):
        trained3d.predict(tzyx, "TZYX", device="cpu", cancel=lambda: True)


def test_3d_auto_tile_shape_and_bad_input(trained3d):
    import torch

    from napari_deconoising.core.predict import auto_tile_shape, tile_grid, tile_halos
    from napari_deconoising.core.tile_plan import tile_margins

    hz, hy, _ = tile_halos(trained3d)
    tz, ty, tx = auto_tile_shape(trained3d, torch.device("cpu"), (12, 500, 500))
    assert tz == 12 + 2 * tile_margins(trained3d)[0]  # a thin stack is one tile in Z, with no Z halo
    assert ty == tx and ty > 2 * hy and ty % 4 == 0
    # a stack that fits the budget whole is one tile
    small = (12, 62, 50)
    assert len(tile_grid(trained3d, small, auto_tile_shape(trained3d, torch.device("cpu"), small)).origins()) == 1
    with pytest.raises(DataError, match="needs a Z axis"):
        trained3d.predict(np.zeros((3, 40, 40)), "SYX", device="cpu")
    with pytest.raises(ValueError, match="a tile size of"):
        trained3d.predict(np.random.rand(12, 40, 40), "ZYX", device="cpu", tile_size=(4, 200, 200))


def test_auto_precision_skips_the_probe_for_a_small_image(trained, monkeypatch):
    """Timing a 512 px probe tile in each precision costs more than predicting a tiny image."""
    from napari_deconoising.core import device as device_mod
    from napari_deconoising.core.predict import prediction_plan

    def no_measuring(*args, **kwargs):
        raise AssertionError("the precision probe ran for a small image")

    monkeypatch.setattr(device_mod, "measure", no_measuring)
    monkeypatch.setattr(device_mod, "candidates", lambda *a, **k: (["fp32", "bf16"], None))
    monkeypatch.setenv("NAPARI_DECONOISING_CACHE", "off")  # an earlier test may have cached this network
    plans = []
    small = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    trained.predict(small, "YX", precision="auto", on_plan=plans.append)
    assert plans[0].precision == "fp32" and "small image" in plans[0].reason
    # A large image still measures: the probe is asked for.
    with pytest.raises(AssertionError, match="probe ran"):
        prediction_plan(trained, "cpu", "auto", image_voxels=4096 * 4096)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_batch_size_below_one_is_refused(trained, batch_size):
    """No batch would run: the outputs would be whatever their memory held."""
    img = np.random.default_rng(0).random((40, 37)).astype(np.float32)
    with pytest.raises(ValueError, match=f"batch_size={batch_size}: must be at least 1"):
        trained.predict(img, device="cpu", precision="fp32", batch_size=batch_size)


def test_a_plan_already_made_runs_as_it_is(trained):
    from napari_deconoising.core.predict import prediction_plan

    plan = prediction_plan(trained, "cpu", "fp32")
    assert prediction_plan(trained, "auto", plan) is plan
    seen = []
    trained.predict(np.eye(20, dtype=np.float32), device="cpu", precision=plan, on_plan=seen.append)
    assert seen == [plan]
