"""Ours against CAREamics in alternating rounds, for a CPU too busy for one-shot comparisons.

``benchmarks/speed.py`` times ours and then CAREamics once each; on a shared CPU whose load
swings 2x within minutes that pair can come out either way. Here the two take turns for
several rounds (ours in this process, CAREamics in its own venv, one job per round) and the
fastest round of each counts, so both get the machine's quietest moments alike.

Usage::

    python benchmarks/speed_peer_ab.py [--emulate-no-bf16] [--config demo] [--rounds 3] [--steps 6]
                                       [--decoders wide lean]

Prediction: a 2048x2048 image at both tools' defaults (ours ``precision="auto"`` with
automatic tiles; CAREamics 0.3.5 whole-image in ``32-true``, see ``speed.py``); the model
is trained 20 steps first so that ``auto``'s error check sees a trained network. Training:
fp32 for both, and ours at ``auto``; ``steps`` timed steps per round, fastest counts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import speed_emulate  # noqa: E402
import speed_measure  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="demo", choices=sorted(speed_measure.CONFIGS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--emulate-no-bf16", action="store_true")
    ap.add_argument("--decoders", nargs="+", choices=["wide", "lean"],
                    help="time our training with each of these U-Net decoders (default: the default one)")
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "speed-peer-ab")
    a = ap.parse_args(argv)
    info, py = common.start_peer_run(__file__, argv, a.emulate_no_bf16)
    from napari_deconoising.core import make_sample

    c = speed_measure.CONFIGS[a.config]
    tmp = Path(tempfile.mkdtemp())
    train_img = make_sample((1024, 1024), sigma=1.0, seed=0).noisy
    big = np.tile(make_sample((512, 512), sigma=1.0, seed=0).noisy, (4, 4)).astype(np.float32)
    np.save(tmp / "train.npy", train_img)
    np.save(tmp / "big.npy", big)
    job = {"mode": "speed", "noisy": str(tmp / "train.npy"), "depth": c["depth"], "channels": c["channels"],
           "patch": c["patch"], "batch": c["batch"], "precision": "fp32"}
    res: dict[str, list[float]] = {}
    picked = {}
    ours = [(prec, dec) for dec in (a.decoders or [None]) for prec in ("fp32", "auto")]
    for r in range(a.rounds):
        s, plan = speed_measure.predict_ours(a.config, big, "auto", train_img)  # auto decided first, not timed
        res.setdefault("predict ours auto", []).append(s)
        picked["predict"] = f"{plan['picked']}: {plan['reason']}"
        p = common.run_peer(py, {**job, "steps": 1, "warmup": 0, "predict": str(tmp / "big.npy")})
        res.setdefault("predict CAREamics fp32", []).append(p["predict_big_seconds"])
        if not a.no_train:
            for prec, dec in ours:
                t = speed_measure.train_ours(a.config, prec, a.steps, train_img, dec)
                res.setdefault(f"train ours {prec}{dec and ' ' + dec or ''}", []).append(t["min"])
                picked[f"train {prec}{dec and ' ' + dec or ''}"] = f"{t['picked']}: {t['reason']}"
            p = common.run_peer(py, {**job, "steps": a.steps + 1, "warmup": 2})
            res.setdefault("train CAREamics fp32", []).append(p["step_seconds_min"])
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in res.items())
              + f"; load {os.getloadavg()[0]:.1f}", flush=True)
    best = {k: min(v) for k, v in res.items()}
    mp = big.size / 1e6
    lines = [f"predict {a.config} 2048^2: ours auto {best['predict ours auto']:.2f} s "
             f"({mp / best['predict ours auto']:.3f} MP/s), CAREamics fp32 {best['predict CAREamics fp32']:.2f} s "
             f"({mp / best['predict CAREamics fp32']:.3f} MP/s): ours/theirs "
             f"{best['predict CAREamics fp32'] / best['predict ours auto']:.2f}x"]
    if not a.no_train:
        for prec, dec in ours:
            key = f"{prec}{dec and ' ' + dec or ''}"
            lines.append(f"train {a.config} ours {key} {best[f'train ours {key}']:.3f} s/step, CAREamics fp32 "
                         f"{best['train CAREamics fp32']:.3f} s/step: ours/theirs "
                         f"{best['train CAREamics fp32'] / best[f'train ours {key}']:.2f}x")
    lines += [f"auto {k}: {v}" for k, v in picked.items()]
    lines.append(f"fastest of {a.rounds} alternating rounds; load at end {os.getloadavg()[0]:.1f}")
    print("\n".join(lines), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.config}.json").write_text(json.dumps({"machine": info, "emulated": speed_emulate.active(),
                                                        "rounds": res, "summary": lines}, indent=1))


if __name__ == "__main__":
    main()
