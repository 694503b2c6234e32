"""The benchmark scripts still run (tiny budget, no CAREamics); numbers are not checked."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

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
