"""3D speed and peak memory: our 3D DecoNoising next to CAREamics' 3D Noise2Void.

At equal network size (U-Net depth and initial channels), patch and batch:

* training: seconds per step after warm-up steps (median and fastest), on the 3D
  quality benchmark's stack (``make_sample_3d((32, 160, 160), sigma=(2, 1, 1))``), and the
  peak resident memory (``VmHWM``) of the fresh process that trained;
* prediction: megavoxels per second on a larger stack (the quality stack tiled to
  64 x 512 x 512 by default), and the peak resident memory of that fresh process, next
  to a process that only imported torch and loaded the stack.

Ours runs in fp32 and with ``precision="auto"`` (decided in this run, fresh cache);
CAREamics in fp32 (its default). Each measurement is its own subprocess and the tools
alternate (ours, CAREamics, ours, CAREamics, ...; ``--rounds``) so that both see the same
load on a shared CPU. CAREamics pools Z at every level; ours pools Z when the Z patch
has at least ``4 * 2**depth`` planes (``pool_z=None``), so at depth 3 with 16 planes ours
is also run with ``pool_z=True`` (the same architecture as CAREamics). CAREamics
predicts in tiles (``--peer-tile``, overlap ``--peer-overlap``); ours picks its tiles
from free memory.

Usage::

    python benchmarks/speed3d.py --out bench-output/speed3d            # both sizes
    python benchmarks/speed3d.py --configs q3d --steps 10 --rounds 1
    python benchmarks/speed3d.py --smoke                               # seconds; no CAREamics
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SIGMA = (2.0, 1.0, 1.0)
CONFIGS = {
    # the 3D quality benchmark's network (quality3d.py, peer3d.py)
    "q3d": dict(depth=2, channels=16, patch=[16, 64, 64], batch=4),
    # paper-like: the paper's depth 3 at half its 64 channels, to fit a shared 2-core CPU
    "paper3d": dict(depth=3, channels=32, patch=[16, 64, 64], batch=4),
    "tiny": dict(depth=2, channels=8, patch=[8, 32, 32], batch=2),
}


def log(*a) -> None:
    print(*a, flush=True)


# -- children (fresh processes) -----------------------------------------------------
def _config(c: dict, precision: str, pool_z: bool | None):
    from napari_deconoising.core import TrainConfig

    return TrainConfig(ndim=3, depth=c["depth"], channels=c["channels"], patch_size=tuple(c["patch"]),
                       batch_size=c["batch"], precision=precision, pool_z=pool_z, psf="gaussian",
                       psf_sigma=SIGMA, lr=1e-3, device="cpu")


def child_train(spec: dict) -> dict:
    """Time ``steps`` training steps after ``warmup``; save the model if asked."""
    from napari_deconoising.core import Trainer
    from napari_deconoising.core.heap import retained_heap
    from napari_deconoising.core.predict import peak_rss_bytes

    tr = Trainer(np.load(spec["stack"]), _config(spec["config"], spec["precision"], spec["pool_z"]), axes="ZYX")
    times = []
    with retained_heap(True):  # the allocator as Trainer.run sets it on the CPU (core/heap.py)
        for _ in range(spec["warmup"]):
            tr._step()
        for _ in range(spec["steps"]):
            t0 = time.perf_counter()
            tr._step()
            times.append(time.perf_counter() - t0)
    if spec.get("save"):
        tr.model.save(spec["save"])
    return {"median": float(np.median(times)), "min": float(np.min(times)), "all": times,
            "picked": tr.plan.precision, "reason": tr.plan.reason, "pool_z": tr.config.pools_z(),
            "peak_rss_bytes": peak_rss_bytes()}


def child_predict(spec: dict) -> dict:
    """Predict the big stack with a saved model (after a warm-up on a crop), or only load it."""
    from napari_deconoising.core import DecoNoisingModel
    from napari_deconoising.core.predict import peak_rss_bytes

    big = np.load(spec["big"])
    if spec.get("baseline"):
        import torch  # noqa: F401 - the baseline process holds torch and the stack, nothing else

        return {"peak_rss_bytes": peak_rss_bytes()}
    model = DecoNoisingModel.load(spec["model"])
    before = peak_rss_bytes()
    plans: list = []
    model.predict(big[:16, :128, :128], "ZYX", device="cpu", precision=spec["precision"])  # warm-up
    t0 = time.perf_counter()
    model.predict(big, "ZYX", device="cpu", precision=spec["precision"], on_plan=plans.append)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "picked": plans[0].precision, "reason": plans[0].reason,
            "peak_rss_bytes": peak_rss_bytes(), "rss_before_predict_bytes": before}


def run_child(kind: str, spec: dict) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(spec)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# -- the run -----------------------------------------------------------------------
def _load() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["q3d", "paper3d"], choices=list(CONFIGS))
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per measurement")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="A/B repetitions (ours, CAREamics) per measurement")
    ap.add_argument("--big", type=int, nargs=3, default=[64, 512, 512], help="prediction stack ZYX")
    ap.add_argument("--peer-tile", type=int, nargs=3, default=[64, 256, 256],
                    help="CAREamics' prediction tile (ZYX); 0 0 0: the whole stack at once, its default")
    ap.add_argument("--peer-overlap", type=int, nargs=3, default=[8, 48, 48])
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-predict", action="store_true")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "speed3d")
    ap.add_argument("--smoke", action="store_true", help="tiny network and stacks, no CAREamics (tests)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps((child_train if a.child[0] == "train" else child_predict)(json.loads(a.child[1]))))
        return {}
    if a.smoke:
        a.configs, a.steps, a.rounds, a.big, a.no_peer = ["tiny"], 1, 1, [8, 48, 48], True
    # "auto" decides in this run: a fresh precision cache, never the user's.
    cache = tempfile.TemporaryDirectory()
    os.environ["NAPARI_DECONOISING_CACHE"] = cache.name
    from napari_deconoising.core.sample3d import make_sample_3d

    info = common.machine_info()
    a.out.mkdir(parents=True, exist_ok=True)
    log(common.machine_line(info))
    peer_py, peer_note = None, "CAREamics not run"
    if not a.no_peer:
        peer_py, peer_note = common.peer_python(install=not a.no_install, log=log)
    log(peer_note)
    tmp = tempfile.TemporaryDirectory()
    stack = Path(tmp.name) / "stack.npy"
    big = Path(tmp.name) / "big.npy"
    s = make_sample_3d((16, 48, 48) if a.smoke else (32, 160, 160), sigma=SIGMA, seed=0).noisy
    np.save(stack, s)
    reps = [-(-n // m) for n, m in zip(a.big, s.shape)]
    np.save(big, np.tile(s, reps)[: a.big[0], : a.big[1], : a.big[2]].astype(np.float32))
    rows: list[dict] = []

    def save() -> dict:
        """Write what was measured so far: a run stopped early on a busy CPU still leaves its rows."""
        summary = {"machine": info, "peer": peer_note, "args": {k: str(v) for k, v in vars(a).items()},
                   "configs": CONFIGS, "rows": rows}
        (a.out / "speed3d.json").write_text(json.dumps(summary, indent=1, default=str))
        return summary

    def peer(c: dict, job: dict) -> dict | None:
        if peer_py is None:
            return None
        job = {"ndim": 3, "noisy": str(stack), "depth": c["depth"], "channels": c["channels"],
               "patch": c["patch"], "batch": c["batch"], "threads": 1, "n_val_patches": 1, "drop_last": True,
               "lr": 1e-3, "mode": "speed", **job}
        try:
            return common.run_peer(peer_py, job)
        except Exception as e:  # noqa: BLE001 - reported in the row, the run goes on
            log(f"CAREamics failed: {str(e)[-600:]}")
            return {"error": str(e)[-1000:]}

    for name in a.configs:
        c = CONFIGS[name]
        # The smoke run skips "auto": its precision probe is the slow part on a busy CPU.
        variants = [("fp32", None)] + ([] if a.smoke else [("auto", None)]) + (
            [("fp32", True)] if c["depth"] >= 3 else [])
        model_path = Path(tmp.name) / f"{name}.pt"
        for rnd in range(a.rounds):
            if a.no_train:
                break
            for prec, pool_z in variants:
                load0 = _load()
                spec = {"stack": str(stack), "config": c, "precision": prec, "pool_z": pool_z, "warmup": a.warmup,
                        "steps": a.steps, "save": str(model_path) if (prec, pool_z, rnd) == ("fp32", None, 0) else None}
                t = run_child("train", spec)
                rows.append({"what": "train", "tool": "ours", "config": name, "round": rnd, "precision": prec,
                             "pool_z_asked": pool_z, "load": [load0, _load()], **t})
                save()
                log(f"[{name} r{rnd}] ours train {prec} (pool_z {t['pool_z']}, ran {t['picked']}): "
                    f"{t['median']:.3f} s/step (min {t['min']:.3f}), peak RSS {t['peak_rss_bytes'] / 2**30:.2f} GiB; "
                    f"load {load0} -> {_load()}; {t['reason']}")
            load0 = _load()
            r = peer(c, {"steps": a.steps, "warmup": a.warmup})
            if r is not None:
                rows.append({"what": "train", "tool": "CAREamics", "config": name, "round": rnd, "precision": "fp32",
                             "load": [load0, _load()], **{k: v for k, v in r.items() if k != "step_intervals"}})
                save()
                if "step_seconds" in r:
                    log(f"[{name} r{rnd}] CAREamics train fp32: {r['step_seconds']:.3f} s/step (min "
                        f"{r['step_seconds_min']:.3f}), peak RSS {r['vmhwm_bytes'] / 2**30:.2f} GiB; load {load0} -> "
                        f"{_load()}")
        if a.no_predict:
            continue
        if not model_path.exists():  # --no-train: a model trained for a few steps
            run_child("train", {"stack": str(stack), "config": c, "precision": "fp32", "pool_z": None,
                                "warmup": 0, "steps": a.steps, "save": str(model_path)})
        mvox = float(np.prod(a.big)) / 1e6
        base = run_child("predict", {"big": str(big), "baseline": True})
        rows.append({"what": "baseline", "config": name, **base})
        save()
        for rnd in range(a.rounds):
            for prec in ("fp32",) if a.smoke else ("fp32", "auto"):
                load0 = _load()
                p = run_child("predict", {"big": str(big), "model": str(model_path), "precision": prec})
                rows.append({"what": "predict", "tool": "ours", "config": name, "round": rnd, "precision": prec,
                             "shape": a.big, "mvox_per_s": mvox / p["seconds"], "load": [load0, _load()], **p})
                save()
                log(f"[{name} r{rnd}] ours predict {a.big} {prec} (ran {p['picked']}): {p['seconds']:.1f} s = "
                    f"{mvox / p['seconds']:.3f} MVox/s, peak RSS {p['peak_rss_bytes'] / 2**30:.2f} GiB (torch + stack "
                    f"{base['peak_rss_bytes'] / 2**30:.2f}); load {load0} -> {_load()}; {p['reason']}")
            load0 = _load()
            tiles = {"tile": a.peer_tile, "tile_overlap": a.peer_overlap} if a.peer_tile[0] else {}
            r = peer(c, {"steps": 1, "warmup": 0, "predict": str(big), **tiles})
            if r is not None and "predict_big_seconds" not in r:
                rows.append({"what": "predict", "tool": "CAREamics", "config": name, "round": rnd, **r})
                save()
            elif r is not None:
                sec = r["predict_big_seconds"]
                rows.append({"what": "predict", "tool": "CAREamics", "config": name, "round": rnd, "precision": "fp32",
                             "shape": a.big, "mvox_per_s": mvox / sec, "load": [load0, _load()],
                             **{k: v for k, v in r.items() if k not in ("step_intervals", "step_durations")}})
                save()
                log(f"[{name} r{rnd}] CAREamics predict {a.big} fp32 (tiles {a.peer_tile if tiles else 'none'}): "
                    f"{sec:.1f} s = "
                    f"{mvox / sec:.3f} MVox/s, peak RSS {r['vmhwm_bytes'] / 2**30:.2f} GiB (after its 1 training step: "
                    f"{r['vmhwm_before_predict_bytes'] / 2**30:.2f}); load {load0} -> {_load()}")
    tmp.cleanup()
    cache.cleanup()
    info["load_avg_1min_at_end"] = _load()
    return save()


if __name__ == "__main__":
    main()
