"""Speed and memory benchmark: can my machine run it, next to CAREamics' Noise2Void?

Measured in one run on the same machine:

* training steps/s and patches/s at the paper's configuration (U-Net depth 3, 64
  channels, 100 px patches, batch 20) and at the demo configuration (depth 2, 32
  channels, 64 px patches, batch 16), in fp32 and (where the CPU has native bf16)
  bf16, for DecoNoising (sigma 1) and for CAREamics' Noise2Void at the same network
  size, patch and batch size; and with our default ``precision="auto"``, with the
  precision it picked and why (decided in this run, in a fresh cache);
* prediction megapixels/s on a 2048 x 2048 image at both tools' defaults: ours tiles
  automatically; CAREamics 0.3.5's ``CAREamist.predict`` without ``tile_size`` predicts
  the whole image in one pass (its default), has no test-time augmentation, and runs in
  the training's precision (``32-true`` unless bf16 is asked for);
* peak resident memory while predicting a 4096 x 4096 image with our tiled
  prediction, in a fresh subprocess (``resource.getrusage`` max RSS), next to the
  RSS of a process that only imported torch and loaded the same image.

Usage::

    python benchmarks/speed.py --quick    # demo config prediction only; a few minutes
    python benchmarks/speed.py            # the numbers in docs/benchmarks.md
    python benchmarks/speed.py --smoke    # seconds; for the test suite
    python benchmarks/speed.py --emulate-no-bf16 ...   # as on a CPU without bf16 units (speed_emulate.py)

The measurements themselves are in ``speed_measure.py``, the tables in ``speed_report.py``.
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
import speed_report  # noqa: E402
from speed_measure import CONFIGS, log, measure_rss, predict_ours, train_ours  # noqa: E402
from speed_psf import psf_methods  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="fewer steps, demo config prediction only")
    g.add_argument(
        "--smoke", action="store_true", help="tiny network and images, no CAREamics (tests)"
    )
    ap.add_argument("--steps", type=int, help="timed training steps per configuration")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "speed")
    ap.add_argument("--configs", help="comma-separated configurations to run (default: all of the mode's)")
    ap.add_argument("--precisions", help="comma-separated explicit precisions (default: fp32, and bf16 where the "
                                         "CPU has native bf16); our default, auto, is run too")
    ap.add_argument("--no-auto", action="store_true",
                    help="skip the auto rows; prediction models then stay untrained (the cost does not "
                         "depend on the weights, only auto's error check does)")
    ap.add_argument("--model-steps", type=int, default=20,
                    help="training steps of the models whose prediction is timed (auto's and int8's error "
                         "checks see their outputs; 20 by default, users' models train 2000)")
    ap.add_argument("--model-file", action="append", default=[], metavar="CONFIG=PATH",
                    help="predict with this trained model file for CONFIG (same depth and channels) instead of "
                         "training one for --model-steps")
    ap.add_argument("--no-train", action="store_true", help="skip the training timings")
    ap.add_argument("--no-predict", action="store_true", help="skip the prediction timings")
    ap.add_argument("--no-psf", action="store_true", help="skip the PSF convolution timings")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--emulate-no-bf16", action="store_true",
                    help="run everything (ours, CAREamics, memory children) with oneDNN limited to AVX-512 + "
                         "VNNI, as on a CPU without bf16 units")
    a = ap.parse_args(argv)
    if a.emulate_no_bf16 and not speed_emulate.active():  # the variables must be set before torch loads
        rc = speed_emulate.rerun(__file__, sys.argv[1:] if argv is None else list(argv))
        if rc:
            raise SystemExit(rc)
        return json.loads((a.out / "speed.json").read_text())
    # "auto" decides in this run: a fresh precision cache, never the user's.
    cache = tempfile.TemporaryDirectory()
    os.environ["NAPARI_DECONOISING_CACHE"] = cache.name

    from napari_deconoising.core import make_sample
    from napari_deconoising.core.device import cpu_has_bf16

    mode = "smoke" if a.smoke else "quick" if a.quick else "default"
    train_cfgs = ["tiny"] if a.smoke else ["paper", "paper104", "demo"]
    no_peer_cfgs = {"paper"}  # 100 px patches are not allowed by CAREamics at depth 3
    pred_cfgs = ["tiny"] if a.smoke else ["demo"] if a.quick else ["demo", "paper104"]
    if a.configs:
        keep = set(a.configs.split(","))
        train_cfgs = [c for c in train_cfgs if c in keep]
        pred_cfgs = [c for c in pred_cfgs if c in keep]
    train_cfgs, pred_cfgs = [] if a.no_train else train_cfgs, [] if a.no_predict else pred_cfgs
    precisions = ["fp32", "bf16"] if cpu_has_bf16() and not a.smoke else ["fp32"]
    precisions = a.precisions.split(",") if a.precisions else precisions
    variants = precisions if a.no_auto else [*precisions, "auto"]
    steps = a.steps or (1 if a.smoke else 3 if a.quick else 5)
    model_files = dict(m.split("=", 1) for m in a.model_file)
    pred_size, rss_size = (128, 512) if a.smoke else (2048, 4096)
    rss_cfg = "tiny" if a.smoke else "demo" if a.quick else "paper"

    info = common.machine_info()
    info["mode"] = mode
    from napari_deconoising.core.precision import cpu_info, native_bf16

    cpu = cpu_info()
    info["cpu_flags"] = (" ".join(sorted(f for f in cpu.flags if f.startswith(("avx", "amx", "sve", "bf16"))))
                         + f"; native bf16: {'yes' if native_bf16(cpu) else 'no'}"
                         + (f"; {speed_emulate.describe()}" if speed_emulate.active() else ""))
    a.out.mkdir(parents=True, exist_ok=True)
    log(common.machine_line(info))
    peer_py, peer_note = None, "CAREamics not run"
    if not (a.smoke or a.no_peer):
        peer_py, peer_note = common.peer_python(install=not a.no_install, log=log)
    log(peer_note)

    train_img = make_sample((1024, 1024) if not a.smoke else (64, 64), sigma=1.0, seed=0).noisy
    rng = np.random.default_rng(1)
    big = np.tile(
        make_sample((512, 512), sigma=1.0, seed=0).noisy, (max(1, pred_size // 512),) * 2
    )[:pred_size, :pred_size]
    big = (big + rng.normal(0, 0.01, big.shape)).astype(np.float32)
    rows = []
    tmp = tempfile.TemporaryDirectory()
    np.save(Path(tmp.name) / "train.npy", train_img)
    np.save(Path(tmp.name) / "big.npy", big)

    def peer(job: dict, row: dict, what: str) -> dict | None:
        """Run one CAREamics job for ``row`` (same configuration and precision)."""
        if peer_py is None:
            return None
        c = CONFIGS[row["config"]]
        job = {"mode": "speed", "noisy": str(Path(tmp.name) / "train.npy"), "depth": c["depth"],
               "channels": c["channels"], "patch": c["patch"], "batch": c["batch"],
               "precision": row["precision"], **job}
        try:
            return common.run_peer(peer_py, job)
        except Exception as e:  # noqa: BLE001
            row["peer_error"] = str(e)[-1000:]
            log(f"CAREamics failed ({what}): {str(e)[-400:]}")
            return None

    # "auto" (our default) is timed too and compared with CAREamics' default, fp32.
    for cfg in train_cfgs:
        c = CONFIGS[cfg]
        for prec in variants:
            t = train_ours(cfg, prec, steps, train_img)
            s = t["median"]
            row = {"what": "train", "config": cfg, "precision": prec, "ours_step_s": s,
                   "ours_step_s_min": t["min"], "ours_all": t["all"], "picked": t["picked"],
                   "reason": t["reason"]}
            log(f"train {cfg} {prec} ({t['picked']}): ours {s:.3f} s/step (min {t['min']:.3f}) = "
                f"{c['batch'] / s:.1f} patches/s; {t['reason']}")
            r = None if prec == "auto" or cfg in no_peer_cfgs else peer(
                {"steps": steps + 1, "warmup": 2}, row, "train")
            if r is not None:
                row.update(peer_step_s=r["step_seconds"], peer_step_s_min=r["step_seconds_min"], peer_info=r)
                log(f"train {cfg} {prec}: CAREamics {r['step_seconds']:.3f} s/step (min "
                    f"{r['step_seconds_min']:.3f}) -> ours/theirs throughput {r['step_seconds'] / s:.2f}x")
            rows.append(row)

    for cfg in pred_cfgs:
        mp = big.size / 1e6
        for prec in variants:
            s, plan = predict_ours(cfg, big, prec, None if a.smoke or a.no_auto else train_img, a.model_steps,
                                   model_files.get(cfg))
            row = {"what": "predict", "config": cfg, "precision": prec, "size": pred_size, "ours_s": s, **plan}
            log(f"predict {cfg} {pred_size}^2 {prec} ({plan['picked']}): ours {s:.2f} s = {mp / s:.3f} MP/s; "
                f"{plan['reason']}")
            # CAREamics has no int8: its fp32 row of the same run is the comparison.
            r = None if prec in ("auto", "int8") else peer(
                {"steps": 1, "warmup": 0, "predict": str(Path(tmp.name) / "big.npy")}, row, "predict")
            if r is not None:
                row.update(peer_s=r["predict_big_seconds"], peer_info=r)
                log(f"predict {cfg} {pred_size}^2 {prec}: CAREamics {r['predict_big_seconds']:.2f} s "
                    f"-> ours/theirs {r['predict_big_seconds'] / s:.2f}x")
            rows.append(row)

    if not a.no_psf:
        psf_rows = psf_methods(sizes=(5,) if a.smoke else (5, 9, 15, 21, 31), repeats=1 if a.smoke else 5)
        for r in psf_rows:
            log(f"PSF {r['size']}x{r['size']}: direct {r['direct'] * 1e3:.1f} ms, FFT {r['fft'] * 1e3:.1f} ms")
        rows += psf_rows

    # Memory in every precision measured (auto picks one of them).
    # The child's model is untrained, so it is given the precisions explicitly.
    rss_precisions = ["fp32"] if a.smoke else precisions
    base = None if a.no_rss else measure_rss(rss_cfg, rss_size, baseline=True)
    for prec in [] if a.no_rss else rss_precisions:
        peak = measure_rss(rss_cfg, rss_size, baseline=False, precision=prec)
        rows.append({"what": "rss", "config": rss_cfg, "size": rss_size, "precision": prec,
                     "peak_rss_bytes": peak["peak_rss_bytes"], "baseline_rss_bytes": base["peak_rss_bytes"],
                     "seconds": peak["seconds"]})
        log(f"peak RSS predicting {rss_size}^2 ({rss_cfg}, {prec}): {peak['peak_rss_bytes'] / 2**30:.2f} GiB "
            f"(process with torch + image only: {base['peak_rss_bytes'] / 2**30:.2f} GiB; "
            f"took {peak['seconds']:.0f} s)")
    tmp.cleanup()
    cache.cleanup()
    info["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)

    md = speed_report.fmt(rows, info, peer_note, argv if argv is not None else sys.argv[1:], CONFIGS)
    log("\n" + md)
    summary = {"machine": info, "peer": peer_note, "rows": rows}
    (a.out / "speed.json").write_text(json.dumps(summary, indent=1, default=str))
    (a.out / "speed.md").write_text(md + "\n")
    return summary


if __name__ == "__main__":
    main()
