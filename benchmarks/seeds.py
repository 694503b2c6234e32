"""Benchmark results over several training seeds: mean, spread and every seed's value.

A single training run is one draw: the seed picks the initial weights, the patches and
the blind spots. ``quality.py --seeds 0 1 2`` trains every configuration once per seed
on the *same* data and combines the runs here. The spread is the sample standard
deviation (``ddof=1``) and the range over seeds; differences between two methods are
taken per seed (paired: both saw the same seed) before averaging.
"""

from __future__ import annotations

import math

import numpy as np


def combine(runs: list[dict]) -> dict:
    """Merge the per-seed results of one dataset into mean / sd / per-seed values.

    ``runs`` are ``quality_runs.run_dataset`` results in seed order. Images are kept from the
    first seed only (the figures show one run).
    """
    first = runs[0]
    out = {k: v for k, v in first.items() if k not in ("methods", "sweep")}
    out["n_seeds"] = len(runs)
    out["methods"] = {m: _stats([r["methods"][m] for r in runs if m in r["methods"]]) for m in first["methods"]}
    out["sweep"] = {s: _stats([r["sweep"][s] for r in runs if s in r["sweep"]]) for s in first["sweep"]}
    out["per_seed_methods"] = [r["methods"] for r in runs]
    return out


def _stats(rows: list[dict]) -> dict:
    out: dict = {}
    for key, v0 in rows[0].items():
        vals = [r.get(key) for r in rows]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[key] = v0  # e.g. CAREamics' reported configuration: the first seed's
            continue
        a = np.asarray(vals, dtype=float)
        out[key] = float(a.mean())
        out[key + "_sd"] = float(a.std(ddof=1)) if a.size > 1 else 0.0
        out[key + "_runs"] = [float(v) for v in a]
    return out


def paired_difference(r: dict, a: str, b: str, key: str = "psnr") -> tuple[float, float, list[float]]:
    """Mean and sd over seeds of ``a - b`` (same seed), and the per-seed differences."""
    diffs = [m[a][key] - m[b][key] for m in r.get("per_seed_methods", [r["methods"]]) if a in m and b in m]
    if not diffs:
        return math.nan, math.nan, []
    d = np.asarray(diffs)
    return float(d.mean()), float(d.std(ddof=1)) if d.size > 1 else 0.0, [float(x) for x in d]


def pm(stats: dict, key: str, fmt: str = ".2f") -> str:
    """``mean ± sd`` (just the mean for one seed); empty when the key is missing."""
    if key not in stats:
        return ""
    sd = stats.get(key + "_sd")
    runs = stats.get(key + "_runs", [])
    if sd is None or len(runs) < 2:
        return format(stats[key], fmt)
    return f"{stats[key]:{fmt}} ± {sd:{fmt}}"


def fmt_differences(results: dict, pairs: list[tuple[str, str]]) -> str:
    """Per-dataset paired differences ``a - b`` in PSNR: mean ± sd and every seed's value."""
    lines = ["| dataset | difference | mean ± sd over seeds (dB) | per seed (dB) |", "|---|---|---:|---|"]
    for name, r in results.items():
        for a, b in pairs:
            mean, sd, diffs = paired_difference(r, a, b)
            if not diffs:
                continue
            per = ", ".join(f"{d:+.2f}" for d in diffs)
            lines.append(f"| {name} | {a} − {b} | {mean:+.2f} ± {sd:.2f} | {per} |")
    return "\n".join(lines)
