"""The benchmark scripts still run (tiny budget, no CAREamics); numbers are not checked."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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
    summary = quality.main(["--smoke", "--out", str(tmp_path)])
    assert (tmp_path / "bench_quality.png").stat().st_size > 0
    assert (tmp_path / "bench_sigma.png").stat().st_size > 0
    saved = json.loads((tmp_path / "quality.json").read_text())
    for name in ("text", "filaments"):
        methods = saved["results"][name]["methods"]
        assert {"raw", "N2V", "N2V conv", "DN lambda=0", "DN lambda=1"} <= set(methods)
        assert all(math.isfinite(m["psnr"]) and -1 <= m["ssim"] <= 1 for m in methods.values())
    assert len(summary["results"]["text"]["sweep"]) == 3


def test_speed_smoke(tmp_path):
    speed = _load("speed")
    summary = speed.main(["--smoke", "--out", str(tmp_path)])
    kinds = {r["what"] for r in summary["rows"]}
    assert kinds == {"train", "predict", "psf", "rss"}
    assert all(r["ours_step_s"] > 0 for r in summary["rows"] if r["what"] == "train")
    assert (tmp_path / "speed.md").read_text().count("|") > 10


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


def test_quality3d_summarise_merges_runs_split_by_method(tmp_path):
    quality3d = _load("quality3d")
    dn, n2v, sl = quality3d.METHODS
    runs = {  # two processes, one method each, two seeds
        "a": {"0": {"raw": {"denoised": 20.0, "deconvolved": 25.0}, dn: {"denoised": 40.0, "deconvolved": 30.0, "seconds": 10.0}},
              "1": {"raw": {"denoised": 22.0, "deconvolved": 27.0}, dn: {"denoised": 42.0, "deconvolved": 32.0, "seconds": 12.0}}},
        "b": {"0": {"raw": {"denoised": 20.0, "deconvolved": 25.0}, n2v: {"denoised": 41.0, "deconvolved": 28.0, "seconds": 8.0}},
              "1": {"raw": {"denoised": 22.0, "deconvolved": 27.0}, n2v: {"denoised": 41.5, "deconvolved": 28.0, "seconds": 8.0}}},
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
