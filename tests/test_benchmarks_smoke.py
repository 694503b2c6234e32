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


def test_large_data_smoke(tmp_path):
    large_data = _load("large_data")
    assert large_data.main(["--smoke", "--dir", str(tmp_path / "scratch"), "--out", str(tmp_path / "r.json")]) == 0
    (run,) = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert run["shape"][1:] == [256, 256] and run["workers"] == 0
    assert run["mp_per_s"] > 0 and run["cpu_s"] > 0 and run["main_rss"] > 0
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == ["model.pt"]  # volumes deleted
