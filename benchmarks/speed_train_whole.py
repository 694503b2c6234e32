"""Whole trainings against CAREamics, as a user runs them: wall time for the same budget.

``speed_peer_ab.py`` compares single steps: ours from patch sampling to Adam, CAREamics'
from Lightning's batch start to batch end, which leaves out its data loader; the fastest
step of each counts. A user waits for the whole training instead: setup, every step,
the loading between steps, validation, keeping the best weights. This script times that,
at the budget of issue 8's report (a stack of 16 images of 256x256, 160 steps of 16
patches of 64 px, depth 2 / 32 channels), through each tool's Python API (ours
``core.train``, the function the CLI and the widget call; CAREamics ``CAREamist.train``),
in alternating rounds so that both see the same load. It reports, per tool and round,
the whole training's seconds and the median interval between the ends of consecutive
steps (everything between two steps included; validation is left out by the median).

Usage::

    python benchmarks/speed_train_whole.py [--emulate-no-bf16] [--rounds 3] [--steps 160]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import speed_emulate  # noqa: E402
import speed_measure  # noqa: E402


def stack(n: int = 16, size: int = 256) -> np.ndarray:
    """``n`` noisy sample images of ``size``², one seed each (the issue's 16-image stack)."""
    from napari_deconoising.core import make_sample

    return np.stack([make_sample((size, size), sigma=1.0, seed=i).noisy for i in range(n)]).astype(np.float32)


def train_ours(images: np.ndarray, cfgname: str, precision: str, steps: int,
               decoder: str | None = None) -> dict:
    """Seconds for a whole training (``core.train``) at ``steps`` steps (epochs of 10), and the median step interval."""
    from napari_deconoising.core import TrainConfig, Trainer

    c = speed_measure.CONFIGS[cfgname]
    cfg = TrainConfig(depth=c["depth"], channels=c["channels"], patch_size=c["patch"], batch_size=c["batch"],
                      epochs=max(1, steps // 10), steps_per_epoch=min(steps, 10), precision=precision,
                      psf="gaussian", psf_sigma=1.0, **({} if decoder is None else {"decoder": decoder}))
    ends: list[float] = []
    t0 = time.perf_counter()
    trainer = Trainer(images, cfg, axes="SYX")  # what core.train does, with the plan kept for the report
    for ev in trainer.run():
        if ev.kind == "step":
            ends.append(time.perf_counter())
    model = trainer.model
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "interval": float(np.median(np.diff(ends))), "steps": len(ends),
            "precision": trainer.plan.precision, "summary": model.summary()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="demo", choices=sorted(speed_measure.CONFIGS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--images", type=int, default=16, help="images of 256x256 in the stack")
    ap.add_argument("--emulate-no-bf16", action="store_true")
    ap.add_argument("--decoders", nargs="+", choices=["wide", "lean"],
                    help="time ours with each of these U-Net decoders (default: the default one)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "auto"], choices=["fp32", "bf16", "auto"])
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "speed-train-whole")
    a = ap.parse_args(argv)
    info, py = common.start_peer_run(__file__, argv, a.emulate_no_bf16)  # round 1 of auto probes
    c = speed_measure.CONFIGS[a.config]
    images = stack(a.images)
    tmp = Path(tempfile.mkdtemp())
    np.save(tmp / "stack.npy", images)
    job = {"mode": "speed", "noisy": str(tmp / "stack.npy"), "depth": c["depth"], "channels": c["channels"],
           "patch": c["patch"], "batch": c["batch"], "precision": "fp32", "steps": a.steps, "warmup": 0}
    ours = [(p, d) for d in (a.decoders or [None]) for p in a.precisions]
    rounds: dict[str, list[dict]] = {}
    for r in range(a.rounds):
        for prec, dec in ours:
            key = f"ours {prec}{dec and ' ' + dec or ''}"
            t = train_ours(images, a.config, prec, a.steps, dec)
            rounds.setdefault(key, []).append(t)
        p = common.run_peer(py, job)
        ivals = p.get("step_intervals") or []
        rounds.setdefault("CAREamics fp32", []).append(
            {"seconds": p["train_seconds"], "interval": float(np.median(ivals)) if ivals else None,
             "steps": p.get("steps_done"), "step_min": p.get("step_seconds_min")})
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]['seconds']:.1f} s ({v[-1]['interval']:.3f} s/step)"
                                             for k, v in rounds.items())
              + f"; load {os.getloadavg()[0]:.1f}", flush=True)
    peer = rounds["CAREamics fp32"]
    best_peer = min(v["seconds"] for v in peer)
    best_peer_ival = min(v["interval"] for v in peer)
    lines = []
    for key, runs in rounds.items():
        if key == "CAREamics fp32":
            continue
        s, iv = min(v["seconds"] for v in runs), min(v["interval"] for v in runs)
        lines.append(f"{a.config}, {a.steps} steps: {key} {s:.1f} s whole ({iv:.3f} s/step), CAREamics fp32 "
                     f"{best_peer:.1f} s ({best_peer_ival:.3f} s/step): ours/theirs {best_peer / s:.2f}x whole, "
                     f"{best_peer_ival / iv:.2f}x per step; ours trained in {runs[-1]['precision']}")
    lines.append(f"fastest of {a.rounds} alternating rounds; load at end {os.getloadavg()[0]:.1f}")
    print("\n".join(lines), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    name = f"{a.config}{'_emulated' if speed_emulate.active() else ''}.json"
    (a.out / name).write_text(json.dumps({"machine": info, "emulated": speed_emulate.active(), "args": {
        k: str(v) for k, v in vars(a).items()}, "rounds": rounds, "summary": lines}, indent=1))


if __name__ == "__main__":
    main()
