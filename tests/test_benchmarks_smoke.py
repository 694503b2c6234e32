"""The benchmark scripts still run (tiny budget, no CAREamics); numbers are not checked."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_deconoising.core import Trainer, patches

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up here
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


def test_quality_smoke(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    quality = _load("quality")
    summary = quality.main(["--smoke", "--weight-average", "0.5", "--val-voxels", "65536",
                            "--out", str(tmp_path)])  # the options run too
    assert (tmp_path / "bench_quality.png").stat().st_size > 0
    assert (tmp_path / "bench_sigma.png").stat().st_size > 0
    saved = json.loads((tmp_path / "quality.json").read_text())
    for name in ("text", "filaments"):
        methods = saved["results"][name]["methods"]
        assert {"raw", "N2V", "N2V conv", "DN lambda=0", "DN lambda=1"} <= set(methods)
        assert all(math.isfinite(m["psnr"]) and -1 <= m["ssim"] <= 1 for m in methods.values())
    assert len(summary["results"]["text"]["sweep"]) == 3


def test_psf_landscape_smoke(tmp_path):
    pytest.importorskip("matplotlib")  # the text data's font
    rows = _load("psf_landscape").main(["--datasets", "text", "--sigmas", "1.0", "--fixed", "0.8", "--trace",
                                        "--steps", "10", "--size", "64", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "psf_landscape.json").read_text())["rows"]
    assert len(rows) == len(saved) == 1 and set(saved[0]["fixed"]) == {"0.8"}
    assert math.isfinite(saved[0]["fixed"]["0.8"]["phantom_q"])
    epoch = saved[0]["trace"][0]
    assert math.isfinite(epoch["slope"]) and epoch["slope"] != 0 and 0.2 < epoch["sigma"] < 4.0


def test_speed_smoke(tmp_path):
    speed = _load("speed")
    summary = speed.main(["--smoke", "--out", str(tmp_path)])
    kinds = {r["what"] for r in summary["rows"]}
    assert kinds == {"train", "predict", "psf", "rss"}
    assert all(r["ours_step_s"] > 0 for r in summary["rows"] if r["what"] == "train")
    assert (tmp_path / "speed.md").read_text().count("|") > 10


def test_speed_emulating_a_cpu_without_bf16_runs_in_a_restricted_child(tmp_path):
    """oneDNN's ISA limit must be in place before torch loads: the benchmark reruns itself with it."""
    speed = _load("speed")
    summary = speed.main(["--smoke", "--emulate-no-bf16", "--no-psf", "--no-rss", "--out", str(tmp_path)])
    assert "ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI" in summary["machine"]["cpu_flags"]
    assert "ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI" in (tmp_path / "speed.md").read_text()
    assert {r["what"] for r in summary["rows"]} == {"train", "predict"}


def test_ssim_fallback_matches_skimage():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    pytest.importorskip("scipy")
    common = _load("common")
    rng = np.random.default_rng(0)
    a = rng.random((40, 50))
    b = a + rng.normal(0, 0.1, a.shape)
    ref = skimage_metrics.structural_similarity(a, b, data_range=float(a.max() - a.min()))
    assert common._ssim_scipy(a, b, float(a.max() - a.min())) == pytest.approx(ref, abs=1e-6)


def test_quality3d_smoke(tmp_path):
    quality3d = _load("quality3d")
    summary = quality3d.main(["--smoke", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "quality3d.json").read_text())
    row = saved["results"]["0"]
    assert set(row) == {"raw", *quality3d.METHODS}
    assert all(math.isfinite(v["denoised"]) and math.isfinite(v["deconvolved"]) for v in row.values())
    assert row["3D DecoNoising"]["pool_z"] is False and row["2D slice-by-slice DecoNoising"]["pool_z"] is None
    assert summary["results"]["0"]["raw"] == row["raw"]
    assert all(math.isfinite(v["denoised_last"]) and v["best_epoch"] >= 1 for k, v in row.items() if k != "raw")


def test_quality3d_preconditioned_smoke(tmp_path):
    """``--precond`` (the Wiener-preconditioned phantom gradient of probe3d.py) runs in quality3d too,
    with the other training options."""
    quality3d = _load("quality3d")
    quality3d.main(["--smoke", "--methods", "0", "--precond", "0.1", "--head-lr-scale", "10", "--positivity", "0",
                    "--val-voxels", "65536", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "quality3d.json").read_text())
    row = saved["results"]["0"]["3D DecoNoising"]
    assert math.isfinite(row["denoised"]) and math.isfinite(row["deconvolved_last"])
    assert saved["args"]["positivity"] == 0 and saved["args"]["head_lr_scale"] == 10
    assert train_module().validation_patch_count is patches.validation_patch_count  # the engine's own again


def test_quality3d_wiener_options_smoke(tmp_path):
    """``--wiener-eps`` (the engine's option) is passed through; ``--wiener-phantom`` (the probe it came
    from, which patches the network class) runs in a child process, so this one stays clean."""
    import subprocess

    quality3d = _load("quality3d")
    quality3d.main(["--smoke", "--methods", "0", "--wiener-eps", "0.1", "--out", str(tmp_path / "engine")])
    saved = json.loads((tmp_path / "engine" / "quality3d.json").read_text())
    assert saved["args"]["wiener_eps"] == 0.1 and math.isfinite(saved["results"]["0"]["3D DecoNoising"]["denoised"])
    done = subprocess.run([sys.executable, str(BENCH / "quality3d.py"), "--smoke", "--methods", "0", "1",
                           "--wiener-phantom", "0.01", "--out", str(tmp_path / "probe")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((tmp_path / "probe" / "quality3d.json").read_text())
    assert saved["args"]["wiener_phantom"] == 0.01 and len(saved["results"]["0"]) == 3  # raw and two methods
    from napari_deconoising.core.network import DecoNoisingNet

    assert not hasattr(DecoNoisingNet, "_wiener_eps")


def train_module():
    # The module, not the train() function the package exports under the same name.
    return importlib.import_module("napari_deconoising.core.train")


def test_validation_voxels_enlarges_the_validation_set_of_trainers_built_inside(sample3d, tiny_config):
    common = _load("common")
    cfg = tiny_config.replace(ndim=3, patch_size=(8, 32, 32), batch_size=2, epochs=1, steps_per_epoch=1)
    with common.validation_voxels(8 * 32 * 32 * 5):
        inside = Trainer(sample3d.noisy, cfg, axes="ZYX")
    assert inside.val_x.shape[0] == 5
    with common.validation_voxels(0):
        assert Trainer(sample3d.noisy, cfg, axes="ZYX").val_x.shape[0] == 2  # one batch
    assert Trainer(sample3d.noisy, cfg, axes="ZYX").val_x.shape[0] == 64  # the engine's own again
    with pytest.raises(RuntimeError), common.validation_voxels(1 << 20):
        raise RuntimeError  # restored on an error too
    assert train_module().validation_patch_count is patches.validation_patch_count


def test_quality3d_val_voxels_enlarges_the_validation_set(monkeypatch):
    quality3d = _load("quality3d")
    sizes = []
    real = quality3d.Trainer.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        sizes.append(self.val_x.shape[0])

    monkeypatch.setattr(quality3d.Trainer, "__init__", spy)
    quality3d.main(["--smoke", "--methods", "0", "--val-voxels", str(8 * 32 * 32 * 5)])
    quality3d.main(["--smoke", "--methods", "0", "--val-voxels", "0"])
    quality3d.main(["--smoke", "--methods", "0"])
    assert sizes == [5, 2, 64]  # smoke patches of 8x32x32, batch 2; the engine's own: 2**20 voxels


def test_quality3d_runs_seeds_and_methods_in_parallel(tmp_path):
    """``--jobs``: one child process per (seed, method), then one table over all of them."""
    quality3d = _load("quality3d")
    out = quality3d.main(["--smoke", "--jobs", "2", "--seeds", "0", "1", "--methods", "0", "1", "--lr", "auto",
                          "--out", str(tmp_path)])
    children = sorted(p.parent.name for p in tmp_path.glob("*/quality3d.json"))
    assert children == ["seed0_m0", "seed0_m1", "seed1_m0", "seed1_m1"]
    one = json.loads((tmp_path / "seed1_m0" / "quality3d.json").read_text())
    assert set(one["results"]) == {"1"} and set(one["results"]["1"]) == {"raw", "3D DecoNoising"}
    assert "| 3D DecoNoising (n=2) |" in out["table"] and "| 3D Noise2Void mode (n=2) |" in out["table"]
    assert (tmp_path / "quality3d.md").read_text().strip() == out["table"]
    merged = json.loads((tmp_path / "quality3d.json").read_text())["results"]
    assert set(merged) == {"0", "1"} and all(set(r) == {"raw", *quality3d.METHODS[:2]} for r in merged.values())


def test_speed3d_smoke(tmp_path):
    speed3d = _load("speed3d")
    summary = speed3d.main(["--smoke", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "speed3d.json").read_text())
    kinds = [(r["what"], r.get("tool")) for r in saved["rows"]]
    assert kinds == [("train", "ours"), ("baseline", None), ("predict", "ours")]
    train, base, pred = saved["rows"]
    assert train["median"] > 0 and train["pool_z"] is False  # 8 planes at depth 2: Z is not pooled
    assert pred["mvox_per_s"] > 0 and pred["peak_rss_bytes"] >= base["peak_rss_bytes"] > 0
    assert summary["peer"] == "CAREamics not run"


def test_picture3d_smoke(tmp_path):
    pytest.importorskip("matplotlib")
    picture3d = _load("picture3d")
    png = tmp_path / "views.png"
    summary = picture3d.main(["--smoke", "--png", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and summary["png_bytes"] == png.stat().st_size
    assert set(summary["psnr"]) == {"raw", "denoised", "deconvolved", "raw_vs_phantom"}
    assert json.loads(png.with_suffix(".json").read_text())["steps"] == 2


def test_peer3d_smoke(tmp_path):
    common = _load("common")
    if common.peer_python(install=False)[0] is None:
        pytest.skip("CAREamics is not installed in the benchmark venv (DECONOISING_BENCH_VENV)")
    peer3d = _load("peer3d")
    peer3d.main(["--smoke", "--seeds", "0", "--no-install", "--out", str(tmp_path)])
    row = json.loads((tmp_path / "peer3d.json").read_text())["results"]["0"]
    assert set(row) == {"raw", "peer", *peer3d.METHODS.values()}
    assert row["peer"]["config"]["axes"] == "ZYX" and row["peer"]["config"]["patch"] == [8, 16, 16]
    assert all(math.isfinite(row[m]["denoised"]) for m in peer3d.METHODS.values())


def test_large_data_smoke(tmp_path):
    large_data = _load("large_data")
    assert large_data.main(["--smoke", "--dir", str(tmp_path / "scratch"), "--out", str(tmp_path / "r.json")]) == 0
    (run,) = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert run["shape"][1:] == [256, 256] and run["workers"] == 0
    assert run["mp_per_s"] > 0 and run["cpu_s"] > 0 and run["main_rss"] > 0
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == ["model.pt"]  # volumes deleted

def test_quality3d_summarise_merges_runs_split_by_method(tmp_path):
    quality3d = _load("quality3d")
    dn, n2v, sl = quality3d.METHODS
    def row(raw, method, den, dec, sec):
        return {"raw": {"denoised": raw, "deconvolved": raw + 5.0},
                method: {"denoised": den, "deconvolved": dec, "seconds": sec}}

    runs = {  # two processes, one method each, two seeds
        "a": {"0": row(20.0, dn, 40.0, 30.0, 10.0), "1": row(22.0, dn, 42.0, 32.0, 12.0)},
        "b": {"0": row(20.0, n2v, 41.0, 28.0, 8.0), "1": row(22.0, n2v, 41.5, 28.0, 8.0)},
    }
    paths = []
    for name, results in runs.items():
        p = tmp_path / name / "quality3d.json"
        p.parent.mkdir()
        p.write_text(json.dumps({"results": results}))
        paths.append(str(p))
    table = quality3d.summarise(paths)
    assert f"| {dn} (n=2) | 41.00 ± 1.41 (40.00..42.00) | 31.00 ± 1.41 (30.00..32.00) | 11 ± 1 (10..12) |  |" in table
    assert f"| {n2v} (n=2) | 41.25 ± 0.35" in table
    assert f"| {dn} − {n2v} | -0.25 ± 1.06 (-1.00..0.50) | -1.00, +0.50 |" in table
    assert sl not in table  # a method no file holds is left out, not shown as zeros


def test_probe3d_smoke():
    probe3d = _load("probe3d")
    rows = probe3d.main(["--smoke", "--precond", "0.1", "--head-lr-scale", "10", "--truncate", "2"])
    assert [r["step"] for r in rows] == [10]
    assert all(math.isfinite(r["denoised"]) and math.isfinite(r["deconvolved"]) for r in rows)


def test_probe3d_wiener_gradient_leaves_forward_alone_and_boosts_damped_modes():
    probe3d = _load("probe3d")
    from napari_deconoising.core.psf import gaussian_psf

    kernel = torch.from_numpy(gaussian_psf((2.0, 1.0, 1.0), ndim=3))
    z = torch.randn(1, 1, 16, 32, 32, requires_grad=True)
    out = probe3d._WienerGradient.apply(z, kernel, 0.1)
    assert torch.equal(out, z)
    g = torch.zeros(1, 1, 16, 32, 32)
    g[..., 0, 0, 0] = 1.0  # an impulse holds every mode equally
    out.backward(g)
    spectrum = torch.fft.rfftn(z.grad[0, 0]).abs()
    assert spectrum[0, 0, 0] == pytest.approx(1.0, abs=1e-3)  # the mean is not amplified
    assert spectrum[8, 0, 0] == pytest.approx(11.0, rel=1e-3)  # the Z Nyquist mode: |H|^2 ~ 0, gain (1+eps)/eps


def test_quality3d_attenuation_is_stronger_for_the_wider_psf():
    quality3d = _load("quality3d")
    out = quality3d.main(["--attenuation", "--shape", "16", "64", "64"])
    assert all(0 < v["mean_H2"] <= 1 and 0 <= v["share_H2_below_0.1"] <= 1 for v in out.values())
    assert out["2D sample, sigma 2"]["mean_H2"] < out["2D sample, sigma 1"]["mean_H2"]
    assert out["3D"]["mean_H2"] < out["2D slice"]["mean_H2"]  # sigma_z = 2 on top of the slice's (1, 1)


def test_speed_gpu_smoke(tmp_path):
    """The GPU benchmark's code path, run on the CPU with tiny networks (the GPU run is in docs)."""
    speed_gpu = _load("speed_gpu")
    summary = speed_gpu.main(["--smoke", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "speed_gpu.json").read_text())
    assert {r["what"] for r in saved["rows"]} == {"train", "train-ab", "predict"}
    train = [r for r in summary["rows"] if r["what"] == "train"]
    assert all(r["steps_per_s"] > 0 and r["flops_per_step"] > 0 for r in train)
    assert {r["config"] for r in train} == {"paper", "paper3d"}
    assert all(r["mp_per_s"] > 0 for r in summary["rows"] if r["what"] == "predict")


def test_border_quality_smoke(tmp_path):
    border = _load("border_quality")
    summary = border.main(["--smoke", "--out", str(tmp_path), "--margins", "0", "halo"])
    for nd, masks in (("2d", {"whole", "band"}), ("3d", {"whole", "band", "zband"})):
        assert set(summary[nd]) == {"0", "halo"} and set(summary[nd]["0"]["deconvolved"]) == masks
        assert summary[nd]["0"]["margin_px"] == [0] * int(nd[0])
    assert (tmp_path / "border_quality-s0.json").exists()


def test_border_speed_smoke(tmp_path):
    border = _load("border_speed")
    rows = border.main(["--trees", str(BENCH.parent), "--cases", "q3d-8x40x40", "--rounds", "1",
                        "--out", str(tmp_path / "speed.json")])
    assert len(rows) == 1 and rows[0]["forward_passes"] >= 1 and rows[0]["computed_per_predicted"] >= 1


def test_quality3d_probe_options_smoke(tmp_path):
    """The aux-head, PSF-ramp and weight-average probes (probe3d.py) run in quality3d, together."""
    quality3d = _load("quality3d")
    quality3d.main(["--smoke", "--methods", "0", "1", "--aux-n2v", "1", "--psf-ramp", "1", "--ema", "0.9",
                    "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "quality3d.json").read_text())["results"]["0"]
    assert all(math.isfinite(rows[m][k]) for m in quality3d.METHODS[:2] for k in ("denoised", "deconvolved_last"))


def test_psf_spectrum_fit_recovers_a_model_spectrum():
    fit_sigma = _load("psf_spectrum").fit_sigma
    f = np.linspace(0.004, 0.5, 64)
    power = np.exp(3.0 - 1.2 * np.log(f) - 4 * np.pi**2 * 1.7**2 * f**2) + 1e-3
    got = fit_sigma(f, power)
    assert abs(got["sigma"] - 1.7) < 1e-3 and abs(got["alpha"] - 1.2) < 1e-2 and got["rms_log_residual"] < 1e-3


def test_psf_spectrum_finds_a_wide_blur_in_clean_data(tmp_path):
    rows = _load("psf_spectrum").main(["--datasets", "filaments", "--sigmas", "2.5", "--seeds", "0", "--clean",
                                       "--out", str(tmp_path)])
    assert abs(rows[0]["fits"][0]["sigma"] - 2.5) < 0.1  # 2.49 measured; the phantom's own width shows less there
    assert (tmp_path / "psf_spectrum.json").exists()


def test_speed_grad_layout_smoke(capsys):
    mod = _load("speed_grad_layout")
    mod.upsample(reps=1)
    mod.train("2d", rounds=1)
    out = capsys.readouterr().out
    assert "gradient as a channel slice" in out and "train 2d bf16: plain cat" in out
    # the benchmark swaps unet._merge per variant; it must leave the real one in place
    from napari_deconoising.core import unet

    assert unet._merge is mod.unet._merge and "register_hook" in unet._merge.__code__.co_names


def test_roofline_counts_what_the_layers_add_up_to():
    mod = _load("roofline")
    from napari_deconoising.core import TrainConfig, make_sample

    tr = Trainer(make_sample((128, 128), sigma=1.0, seed=0).noisy,
                 TrainConfig(depth=2, channels=8, patch_size=32, batch_size=2, psf_sigma=1.0, precision="fp32",
                             device="cpu"))
    counted = mod.count_step(tr)
    rows = mod.layer_rates(tr, rounds=1)
    assert len(rows) == 13  # 2 x 2 per level, 2 at the bottom, 2 up-sampling 1x1, the head
    # FlopCounterMode's count of a step is its convolutions, forward and backward, as the layers add them up
    assert sum(r["gflop"] for r in rows) * 1e9 == pytest.approx(counted, rel=0.02)
    assert all(v > 0 for v in mod.peak(rounds=1, sizes=(256,)).values())


def test_speed_heap_child_times_steps():
    out = _load("speed_heap").child("3d", "fp32", 3)
    assert len(out["times"]) == 2 and all(t > 0 for t in out["times"]) and out["faults_per_step"] >= 0


def test_auto_choice_smoke():
    lines = _load("auto_choice").main(["--smoke"])
    assert [line[:2] for line in lines] == ["2D", "3D"]
    assert all(" cpu fp32 " in line or " cpu bf16 " in line for line in lines)


def test_speed_gpu_layout_ab_smoke(tmp_path):
    summary = _load("speed_gpu").main(["--smoke", "--layout-ab", "1", "--out", str(tmp_path)])
    rows = summary["rows"]
    assert {(r["config"], r["layout"]) for r in rows} == {(c, lay) for c in ("paper", "paper3d")
                                                          for lay in ("channels-last", "contiguous")}
    assert all(r["steps_per_s"] > 0 for r in rows)


def test_beads_smoke(tmp_path):
    pytest.importorskip("psf")
    pytest.importorskip("matplotlib")  # the filaments data
    out = _load("beads").main(["--parts", "gaussian,optics,train", "--sigmas", "1.5", "--photons", "5000",
                               "--seeds", "0", "--train-sigmas", "1.5", "--steps", "10", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "beads.json").read_text())["rows"]
    assert len(out["rows"]) == len(saved) == 1 + 2 + 2 + 2  # 2D, two 3D stacks, two microscopes, two datasets
    two_d = saved[0]
    assert two_d["part"] == "gaussian 2D" and np.allclose(two_d["measured"], 1.5, atol=0.1)
    assert all(r["correlation"] > 0.99 for r in saved if r["part"] == "optics")
    assert all(math.isfinite(r["difference"]) for r in saved if r["part"] == "train")


def test_speed_train_whole_times_a_whole_training_of_ours():
    whole = _load("speed_train_whole")
    images = whole.stack(2, 64)
    assert images.shape == (2, 64, 64) and images.dtype == np.float32
    run = whole.train_ours(images, "tiny", "fp32", 20)
    assert run["steps"] == 20 and run["precision"] == "fp32"
    assert 0 < 19 * run["interval"] < run["seconds"]  # the whole run holds every step and more


def test_psf_sigma_seeds_smoke(tmp_path):
    pytest.importorskip("matplotlib")  # the text data's font
    rows = _load("psf_sigma_seeds").main(["--dataset", "filaments", "--true", "1.0", "--sigmas", "1.0", "0.8",
                                          "--seeds", "0", "1", "--steps", "10", "--size", "64", "--out",
                                          str(tmp_path)])
    assert [r["sigma"] for r in rows] == [1.0, 0.8] and rows[0]["diff"] == [0.0, 0.0]
    assert rows[1]["seeds"] == [0, 1] and math.isfinite(rows[1]["diff_mean"]) and math.isfinite(rows[1]["diff_se"])
    saved = json.loads((tmp_path / "psf_sigma_seeds_filaments_1.json").read_text())
    assert set(saved["psnr"]["0.8"]) == {"0", "1"}


def test_psf_estimation3d_smoke(tmp_path):
    bench = _load("psf_estimation3d")
    one = ["--slabs", "1", "--shape", "8", "64", "64", "--out", str(tmp_path)]  # one slab: the edge fit takes seconds
    edges = bench.main(["--edges-only", "--sigmas", "1.0", *one])
    assert len(edges) == 1 and edges[0]["lateral"] == 1.0 and (edges[0]["edges"] is None) == (edges[0]["error"] is None)
    from napari_deconoising.core import psf_check

    assert (psf_check.SLABS, psf_check.SLAB_PLANES) == (4, 8)  # the engine's values are back after --slabs 1
    rows = bench.main(["--sigmas", "1.0", "--steps", "10", "--patch", "8", "32", "32", "--batch", "2", "--retrain",
                       *one])
    assert len(rows) == 1 and math.isfinite(rows[0]["psnr_true"]) and math.isfinite(rows[0]["psnr_checked"])
    assert len(rows[0]["trail"]) == 1 and len(rows[0]["true"]) == 3


def test_speed_train_ideas_smoke(tmp_path):
    ideas = _load("speed_train_ideas")
    ideas.main(["flops", "adam", "pointwise", "wgrad", "--rounds", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "speed_train_ideas.json").read_text())["ideas"]
    assert set(saved) == {"flops", "adam", "pointwise", "wgrad"}
    wide, lean = saved["flops"]["wide"], saved["flops"]["lean"]
    # the lean decoder (CAREamics' layout) does about 11 % less work, with fewer parameters
    assert 1.08 < wide["demo step GFLOP"] / lean["demo step GFLOP"] < 1.16
    assert lean["demo parameters"] < wide["demo parameters"] and lean["paper parameters"] < wide["paper parameters"]
    assert all(v["fastest_ms"] > 0 for v in saved["adam"].values())
    # the nine products are a weight gradient, not just a timing
    assert all(row["relative difference"] < 1e-4 for row in saved["wgrad"].values())
    with pytest.raises(SystemExit):
        ideas.main(["nonsense"])


def test_speed_train_ideas_times_huge_pages_in_their_own_processes(tmp_path):
    ideas = _load("speed_train_ideas")
    ideas.main(["thp", "--rounds", "1", "--out", str(tmp_path)])
    thp = json.loads((tmp_path / "speed_train_ideas.json").read_text())["ideas"]["thp"]
    assert len(thp) == 2 and all(v["fastest_ms"] > 0 and len(v["huge_pages_mib"]) == 1 for v in thp.values())


_FWD_LINE = ("onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,"
             "src:f32::blocked:acdb::f0 wei:f32:a:blocked:Acdb32a::f0 dst:f32::blocked:acdb::f0,attr-scratchpad:user,"
             "alg:convolution_direct,mb16_ic32oc32_ih64oh64kh3sh1dh0ph1_iw64ow64kw3sw1dw0pw1,2.5")


def test_speed_train_limits_reads_onednn_verbose_lines():
    limits = _load("speed_train_limits")
    got = limits.parse_verbose([_FWD_LINE, _FWD_LINE.replace(",2.5", ",3.5"), "onednn_verbose,v1,info,x", "other"], 2)
    row = got["convolutions"]["forward_training 32->32 3x3 at 64x64"]
    # two calls of 2 * 16 * 32 * 32 * 9 * 64 * 64 operations in 6 ms over 2 steps
    assert row["ms a step"] == 3.0 and row["GFLOP/s"] == round(2 * 2 * 16 * 32 * 32 * 9 * 4096 / 6.0 / 1e6)
    assert row["kernel"] == ["brg_conv_fwd:avx512_core"] and got["by pass ms a step"] == {"forward_training": 3.0}


def test_speed_train_limits_smoke(tmp_path):
    limits = _load("speed_train_limits")
    limits.main(["layers", "fused", "--rounds", "1", "--out", str(tmp_path)])
    parts = json.loads((tmp_path / "speed_train_limits.json").read_text())["parts"]
    convs = parts["layers"]["convolutions"]
    assert set(parts["layers"]["by pass ms a step"]) == {"forward_training", "backward_data", "backward_weights"}
    # the network's input needs no gradient: its layer is the one without a data-gradient pass
    assert "forward_training 1->32 3x3 at 64x64" in convs and "backward_data 1->32 3x3 at 64x64" not in convs
    assert "backward_data 32->32 3x3 at 64x64" in convs and all(r["GFLOP/s"] >= 0 for r in convs.values())
    assert all(row["max difference"] == 0.0 for row in parts["fused"].values())  # the post-op is the same ReLU
    with pytest.raises(SystemExit):
        limits.main(["nonsense"])
