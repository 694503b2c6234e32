"""Quality benchmark: is DecoNoising better than Noise2Void (ours and CAREamics')?

Trains every method on the same noisy stack with the same network size, patch size,
batch size and number of optimiser steps, then compares with the known ground truth:

* denoising: PSNR / SSIM of the denoised image against the clean image
  (phantom * PSF), data range of the clean image (as in the paper);
* deconvolution: PSNR of the predicted phantom against the true phantom
  (DecoNoising runs; for Noise2Void its output is shown as the phantom estimate).

Methods: raw, N2V (ours, psf="none"), N2V conv (N2V output convolved with the PSF),
DecoNoising lambda=0 and lambda=1, and CAREamics' Noise2Void (pinned, own venv).
The PSF-mismatch sweep trains DecoNoising with sigma in {0, 0.5, 1, 1.5, 2} on data
made with sigma 1.

The work is split by job: ``quality_runs`` (presets, training, scores), ``quality_report``
(tables) and ``quality_figures`` (PNGs); this file is the command line.

Usage::

    python benchmarks/quality.py --quick      # < 10 min on a 2-core CPU
    python benchmarks/quality.py              # the numbers in docs/benchmarks.md
    python benchmarks/quality.py --full       # the paper's scale (GPU)
    python benchmarks/quality.py --smoke      # seconds; for the test suite
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import datasets  # noqa: E402
import seeds as seedstats  # noqa: E402
from quality_figures import figure_quality, figure_sigma  # noqa: E402
from quality_report import METHODS, fmt_table, fmt_targets  # noqa: E402
from quality_runs import PRESETS, Preset, log, run_dataset, scores, train_ours  # noqa: E402

__all__ = ["METHODS", "PRESETS", "Preset", "fmt_table", "fmt_targets", "main", "run_dataset", "scores",
           "train_ours"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small budget, text + filaments (< 10 min on 2 cores)")
    g.add_argument("--full", action="store_true", help="the paper's network and budget (use a GPU)")
    ap.add_argument("--smoke", action="store_true", help="tiny images, 2 steps, no CAREamics (for tests)")
    ap.add_argument("--steps", type=int, help="override the number of training steps")
    ap.add_argument("--datasets", help="comma-separated subset of text,filaments,nuclei")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--no-peer", action="store_true", help="do not run CAREamics")
    ap.add_argument("--no-install", action="store_true", help="do not install CAREamics if missing")
    ap.add_argument("--no-sweep", action="store_true", help="skip the PSF-mismatch sweep")
    ap.add_argument(
        "--peer-matched",
        action="store_true",
        help="also run CAREamics with our masked fraction (3.125 %% instead of its 0.2 %%)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the data (and of training without --seeds)")
    ap.add_argument("--data-sigma", type=float, default=1.0, metavar="PX",
                    help="PSF sigma of the synthetic data, which our DecoNoising runs are given (default 1)")
    ap.add_argument("--n2v2", action="store_true", help="train all our models with N2V2")
    ap.add_argument("--decoder", choices=["wide", "lean"], default="wide",
                    help="the U-Net decoder of all our models (TrainConfig.decoder)")
    common.add_val_voxels_arg(ap)
    ap.add_argument("--weight-average", type=float, default=0.0, metavar="DECAY",
                    help="train all our models with this weight average (TrainConfig.weight_average)")
    ap.add_argument("--wiener-phantom", type=float, default=None, metavar="EPS",
                    help="the phantom is a fixed Wiener deconvolution of the U-Net output (probe3d.py)")
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 1.0],
                    help="positivity weights of the DecoNoising runs (1 must be among them)")
    ap.add_argument("--seeds", type=int, nargs="+", metavar="S",
                    help="train every configuration once per seed (same data) and report mean ± sd")
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "quality")
    ap.add_argument(
        "--figures",
        type=Path,
        help="where the PNGs go (default docs/images, or --out with --smoke)",
    )
    ap.add_argument(
        "--replot-sigma",
        type=Path,
        metavar="QUALITY_JSON",
        help="only redraw bench_sigma.png from a saved quality.json",
    )
    a = ap.parse_args(argv)
    if a.replot_sigma:
        saved = json.loads(a.replot_sigma.read_text())
        for r in saved["results"].values():
            r.setdefault("sigma", 1.0)
        out = a.figures or common.ROOT / "docs" / "images"
        figure_sigma(saved["results"], out / "bench_sigma.png", saved["machine"])
        return saved

    if a.wiener_phantom is not None:
        from probe3d import wiener_phantom

        wiener_phantom(a.wiener_phantom)  # DecoNoising runs only: Noise2Void's PSF is one pixel
    name = "smoke" if a.smoke else "quick" if a.quick else "full" if a.full else "default"
    p = PRESETS[name]
    if a.steps:
        p.steps = a.steps
    if a.datasets:
        p.datasets = tuple(a.datasets.split(","))
    from napari_deconoising.core import execution_plan

    precision = execution_plan("auto", a.precision).precision
    info = common.machine_info()
    info["preset"] = name
    a.out.mkdir(parents=True, exist_ok=True)
    figs = a.figures or (a.out if a.smoke else common.ROOT / "docs" / "images")
    figs.mkdir(parents=True, exist_ok=True)
    log(f"quality benchmark ({name}): {p}; precision {precision}")
    log(common.machine_line(info))

    peer_py, peer_note = None, "CAREamics not run (--no-peer/--smoke)"
    if p.peer and not a.no_peer and not a.smoke:
        peer_py, peer_note = common.peer_python(install=not a.no_install, log=log)
    log(peer_note)

    results = {}
    t0 = time.perf_counter()
    for dname in p.datasets:
        ds = datasets.make(dname, p.n_images, p.size, seed=a.seed, log=log, sigma=a.data_sigma)
        if ds is None:
            continue
        log(f"{dname}: {ds.description}; {ds.noisy.shape}")
        runs = []
        for seed in a.seeds or [a.seed]:
            log(f"{dname}: training seed {seed}")
            with common.validation_voxels(a.val_voxels):  # our trainers only: the peer runs in its own process
                runs.append(run_dataset(
                    ds,
                    p,
                    precision,
                    peer_py,
                    seed,
                    sweep=not a.no_sweep and dname in p.sweep,
                    sigmas=p.sigmas,
                    peer_matched=a.peer_matched,
                    lambdas=tuple(a.lambdas),
                    n2v2=a.n2v2,
                    weight_average=a.weight_average,
                    decoder=a.decoder,
                ))
        r = seedstats.combine(runs)
        r["_ds"] = ds
        r["sigma"] = ds.sigma
        results[dname] = r
        partial = {k: {kk: vv for kk, vv in v.items() if kk not in ("_ds", "images")} for k, v in results.items()}
        # Written after every dataset, so an interrupted run keeps what it measured.
        (a.out / "quality.partial.json").write_text(
            json.dumps({"machine": info, "results": partial}, indent=1, default=str)
        )
    elapsed = time.perf_counter() - t0

    table, targets = fmt_table(results), fmt_targets(results)
    diffs = seedstats.fmt_differences(results, [("DN lambda=1", "N2V"), ("DN lambda=0", "N2V"),
                                                ("DN lambda=1", "CAREamics N2V")])
    table = f"Training seeds: {a.seeds or [a.seed]} (data seed {a.seed})\n\n{table}\n\n{diffs}"
    log("\n" + table + "\n\n" + targets)
    figure_quality(results, figs / "bench_quality.png", info, crop=min(96, p.size))
    figure_sigma(results, figs / "bench_sigma.png", info)

    summary = {
        "machine": info,
        "preset": p.__dict__,
        "precision": precision,
        "peer": peer_note,
        "elapsed_s": elapsed,
        "results": {k: {kk: vv for kk, vv in v.items() if kk not in ("_ds", "images")} for k, v in results.items()},
    }
    (a.out / "quality.json").write_text(json.dumps(summary, indent=1, default=str))
    (a.out / "quality.md").write_text(
        "Command: `python benchmarks/quality.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`\n\n"
        f"{common.machine_line(info)}\n\nPreset {name}: {p}; precision {precision}; {peer_note}; "
        f"took {elapsed / 60:.1f} min\n\n{table}\n\n{targets}\n"
    )
    log(
        f"done in {elapsed / 60:.1f} min; wrote {a.out / 'quality.json'}, "
        f"{figs / 'bench_quality.png'}, "
        f"{figs / 'bench_sigma.png'}"
    )
    return summary


if __name__ == "__main__":
    main()
