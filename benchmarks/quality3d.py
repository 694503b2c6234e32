"""3D quality benchmark: 3D DecoNoising vs its Noise2Void mode vs 2D slice by slice.

All methods see the same synthetic stack (core/sample3d.py: filaments and vesicles,
anisotropic Gaussian PSF, Poisson + read noise), the same U-Net size and the same
number of voxels per optimiser step (the 2D run takes ``batch * Z-patch`` 2D patches
of the same Y/X size). Scores against the known ground truth, over the whole stack:

* denoised: PSNR of the denoised stack against the clean stack (phantom * PSF);
* deconvolved: PSNR of the predicted phantom against the true phantom (for
  Noise2Void its output is shown as the phantom estimate).

The returned model is the best by validation loss (the engine's default).

Usage::

    python benchmarks/quality3d.py                 # 300 steps, one seed, 32x160x160
    python benchmarks/quality3d.py --steps 600 --seeds 0 1 2
    python benchmarks/quality3d.py --smoke         # seconds; for the test suite
    python benchmarks/quality3d.py --device cuda --depth 3 --channels 64 --steps 600
                                                   # the engine's default network, on a GPU
    python benchmarks/quality3d.py --summarise a/quality3d.json b/quality3d.json
                                                   # one table from runs split by method/seed
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from napari_deconoising.core import TrainConfig, Trainer  # noqa: E402
from napari_deconoising.core.sample import make_sample  # noqa: E402
from napari_deconoising.core.sample3d import make_sample_3d  # noqa: E402

SIGMA = (2.0, 1.0, 1.0)


def log(*a) -> None:
    print(*a, flush=True)


def run_method(noisy: np.ndarray, name: str, args: argparse.Namespace, seed: int) -> tuple[dict, float]:
    pz, py, px = args.patch
    common_cfg = dict(depth=args.depth, channels=args.channels, seed=seed, precision=args.precision,
                      device=args.device, steps_per_epoch=min(10, args.steps), epochs=max(1, args.steps // 10),
                      lr=args.lr, head_lr_scale=args.head_lr_scale, positivity=args.positivity,
                      # the probe's filter replaces the engine's, never on top of it
                      wiener_eps=0.0 if args.wiener_phantom is not None else args.wiener_eps)
    if name == "2D slice-by-slice DecoNoising":
        cfg = TrainConfig(ndim=2, psf_sigma=SIGMA[1:], patch_size=(py, px), batch_size=args.batch * pz,
                          **common_cfg)
    else:
        psf = "none" if "Noise2Void" in name else "gaussian"
        cfg = TrainConfig(ndim=3, psf=psf, psf_sigma=SIGMA, patch_size=(pz, py, px), batch_size=args.batch,
                          pool_z=args.pool_z, **common_cfg)
    if args.wiener_phantom is not None and "Noise2Void" not in name:
        from probe3d import wiener_phantom

        wiener_phantom(args.wiener_phantom)  # before the trainer builds the network; also for prediction
    t0, c0 = time.perf_counter(), time.process_time()
    with common.validation_voxels(args.val_voxels):  # the validation set is drawn when the trainer is built
        trainer = Trainer(noisy, cfg, axes="ZYX")
    if args.precond is not None and trainer.psf is not None and trainer.psf.size > 1:
        from probe3d import _precondition

        _precondition(trainer, args.precond)
    if args.aux_n2v and "Noise2Void" not in name:
        from probe3d import _aux_head

        _aux_head(trainer, args.aux_n2v)
    if args.ema:
        from probe3d import _ema

        _ema(trainer, args.ema)
    if args.psf_ramp and "Noise2Void" not in name:
        from probe3d import _psf_ramp

        _psf_ramp(trainer, args.psf_ramp)
    for _ in trainer.run():
        pass
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0  # on a shared CPU the wall time says more about the neighbours
    best = trainer.model  # the engine's result: the weights with the lowest validation loss
    last_state = {k: v.detach().cpu().clone() for k, v in trainer.net.state_dict().items()}
    if args.aux_n2v and "Noise2Void" not in name:
        from probe3d import phantom_only

        best = dataclasses.replace(best, state_dict=phantom_only(best.state_dict))
        last_state = phantom_only(last_state)
    pred = best.predict(noisy, "ZYX", device=args.device, precision="fp32")
    # The last weights too: whether validation picks worse weights than the end of training.
    last = dataclasses.replace(best, state_dict=last_state)
    pred_last = last.predict(noisy, "ZYX", device=args.device, precision="fp32")
    return {"denoised": pred.denoised, "phantom": pred.deconvolved, "denoised_last": pred_last.denoised,
            "phantom_last": pred_last.deconvolved, "best_epoch": _best_epoch(best.history),
            "pool_z": trainer.config.pool_z, "cpu_seconds": cpu_seconds}, seconds


def _best_epoch(history: list[dict]) -> int | None:
    vals = [h.get("val_loss") for h in history]
    return None if not vals or None in vals else 1 + int(np.argmin(vals))


METHODS = ("3D DecoNoising", "3D Noise2Void mode", "2D slice-by-slice DecoNoising")


def gradient_attenuation(clean: np.ndarray, noisy: np.ndarray, sigma: tuple[float, ...]) -> dict:
    """How strongly a Gaussian PSF damps the training signal that reaches the phantom.

    The loss sees the phantom only through the PSF, so in Fourier mode ``f`` the gradient
    on the phantom is scaled by ``H(f)`` and gradient descent there is slowed by
    ``|H(f)|**2`` relative to Noise2Void (which fits the denoised image directly).
    Over the modes a denoiser can recover (clean power above the flat noise power),
    reports the signal-weighted mean of ``|H|**2`` and the signal share in modes damped
    more than 10x and 100x.
    """
    c = np.abs(np.fft.fftn(clean - clean.mean())) ** 2
    noise_power = float(np.mean(np.abs(np.fft.fftn(noisy - clean - (noisy - clean).mean())) ** 2))
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in clean.shape], indexing="ij")
    h2 = np.exp(-4 * np.pi**2 * sum((s * f) ** 2 for s, f in zip(sigma, freqs)))
    w = c[c > noise_power]
    h2 = h2[c > noise_power]
    return {"recoverable_signal_share": float(w.sum() / c.sum()), "mean_H2": float((w * h2).sum() / w.sum()),
            "share_H2_below_0.1": float(w[h2 < 0.1].sum() / w.sum()),
            "share_H2_below_0.01": float(w[h2 < 0.01].sum() / w.sum())}


def merged_results(paths: list[str]) -> dict[str, dict]:
    """The ``results`` of several ``quality3d.json`` files, merged by seed (runs split by method or seed)."""
    per_seed: dict[str, dict] = {}
    for path in paths:
        for seed, row in json.loads(Path(path).read_text())["results"].items():
            per_seed.setdefault(seed, {}).update(row)
    return per_seed


def summarise(paths: list[str], per_seed: dict[str, dict] | None = None) -> str:
    """One markdown table (mean ± sd over seeds) from one or more ``quality3d.json`` files.

    Runs may be split by method or seed (e.g. one process per method); a method's seeds
    are merged over all files (or given merged as ``per_seed``). Differences to 3D
    DecoNoising are paired by seed.
    """
    per_seed = merged_results(paths) if per_seed is None else per_seed
    seeds = sorted(per_seed, key=int)

    def stat(values: list[float], fmt: str = ".2f") -> str:
        a = np.asarray(values, dtype=float)
        if a.size < 2:
            return format(a.mean(), fmt)
        return f"{a.mean():{fmt}} ± {a.std(ddof=1):{fmt}} ({a.min():{fmt}}..{a.max():{fmt}})"

    lines = [f"seeds: {', '.join(seeds)}", "",
             "| method | denoised PSNR (dB) | deconvolved vs phantom (dB) | wall s | CPU s |",
             "|---|---:|---:|---:|---:|"]
    for name in ("raw", *METHODS):
        rows = [per_seed[s][name] for s in seeds if name in per_seed[s]]
        if not rows:
            continue
        secs = [stat([r[k] for r in rows], ".0f") if all(k in r for r in rows) else ""
                for k in ("seconds", "cpu_seconds")]
        lines.append(f"| {name} (n={len(rows)}) | {stat([r['denoised'] for r in rows])} | "
                     f"{stat([r['deconvolved'] for r in rows])} | {secs[0]} | {secs[1]} |")
    lines += ["", "| paired by seed | denoised difference (dB) | per seed |", "|---|---:|---|"]
    for other in METHODS[1:]:
        d = [per_seed[s][METHODS[0]]["denoised"] - per_seed[s][other]["denoised"]
             for s in seeds if METHODS[0] in per_seed[s] and other in per_seed[s]]
        if d:
            lines.append(f"| {METHODS[0]} − {other} | {stat(d)} | {', '.join(f'{x:+.2f}' for x in d)} |")
    return "\n".join(lines)


def run_parallel(args: argparse.Namespace, argv: list[str]) -> dict:
    """One child process per (seed, method), ``args.jobs`` at a time; then the merged table."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(seed, m) for seed in args.seeds for m in args.methods]

    def child(job: tuple[int, int]) -> Path:
        seed, m = job
        out = Path(args.out) / f"seed{seed}_m{m}"
        # argparse keeps the last value of a repeated option: the child's own override the parent's.
        cmd = [sys.executable, __file__, *argv, "--jobs", "1", "--seeds", str(seed), "--methods", str(m),
               "--out", str(out)]
        with open(Path(args.out) / f"seed{seed}_m{m}.log", "w") as logf:
            subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=True)
        return out / "quality3d.json"

    Path(args.out).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        paths = [str(p) for p in pool.map(child, jobs)]
    merged = merged_results(paths)
    table = summarise(paths, merged)
    log(table)
    (Path(args.out) / "quality3d.md").write_text(table + "\n")
    # One file with every run, for machines that send back only a few files (the GPU lender).
    common.write_summary(args.out, "quality3d.json", {"machine": common.machine_info(), "args": vars(args),
                                                      "results": merged, "table": table})
    return {"paths": paths, "table": table, "results": merged}


def _lr_arg(text: str) -> float | None:
    return None if text == "auto" else float(text)


def add_budget_args(ap: argparse.ArgumentParser, steps: int, seeds: list[int]) -> None:
    """The stack, network and budget options this script shares with ``peer3d.py``."""
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--seeds", type=int, nargs="+", default=seeds)
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 160, 160])
    ap.add_argument("--patch", type=int, nargs=3, default=[16, 64, 64])
    ap.add_argument("--batch", type=int, default=4, help="3D patches per step")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--lr", type=_lr_arg, default=1e-3,
                    help="Adam's learning rate, or 'auto' for the engine's default for this network (default 1e-3)")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_budget_args(ap, steps=300, seeds=[0])
    ap.add_argument("--head-lr-scale", type=_lr_arg, default=1.0,
                    help="the phantom head learns at lr times this (TrainConfig.head_lr_scale), every method; "
                         "'auto' for the engine's default (3 for depth 3 / 64 channels; default 1, as before stop 21)")
    ap.add_argument("--positivity", type=float, default=1.0, metavar="LAMBDA",
                    help="weight of the phantom's positivity term (TrainConfig.positivity), every method")
    common.add_val_voxels_arg(ap)
    ap.add_argument("--precond", type=float, default=None, metavar="EPS",
                    help="Wiener-preconditioned phantom gradient (probe3d.py), DecoNoising methods only")
    ap.add_argument("--wiener-eps", type=float, default=None, metavar="EPS",
                    help="TrainConfig.wiener_eps, the engine's preconditioned phantom (default: the engine's "
                         "choice, 0.01 in 3D and 0 in 2D; 0: off, the engine before stop 13)")
    ap.add_argument("--wiener-phantom", type=float, default=None, metavar="EPS",
                    help="the phantom is a fixed Wiener deconvolution of the U-Net output (probe3d.py), "
                         "DecoNoising methods only")
    ap.add_argument("--aux-n2v", type=float, default=0.0, metavar="W",
                    help="a second head output fits the noisy input directly, loss weight W (probe3d.py), "
                         "DecoNoising methods only")
    ap.add_argument("--psf-ramp", type=int, default=0, metavar="STEPS",
                    help="widen the PSF from none to its sigma over the first STEPS steps (probe3d.py), "
                         "DecoNoising methods only")
    ap.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                    help="use a moving average of the weights (probe3d.py), every method")
    ap.add_argument("--pool-z", default=None, choices=["auto", "yes", "no"])
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"])
    ap.add_argument("--device", default="cpu", help="training and prediction device (cpu, cuda, mps, auto)")
    ap.add_argument("--out", default="bench-output", help="folder for quality3d.json")
    ap.add_argument("--methods", nargs="+", choices=range(len(METHODS)), type=int, default=list(range(len(METHODS))),
                    help="which methods to run: " + ", ".join(f"{i} = {m}" for i, m in enumerate(METHODS)))
    ap.add_argument("--jobs", type=int, default=1,
                    help="run each (seed, method) in its own process, this many at once (a GPU is mostly idle "
                         "at this batch size), then print the merged table")
    ap.add_argument("--smoke", action="store_true", help="a tiny run to check the script works")
    ap.add_argument("--summarise", nargs="+", metavar="JSON", help="print the table of earlier runs and exit")
    ap.add_argument("--attenuation", action="store_true",
                    help="print how much the 3D and the 2D (per-slice) PSF damp the phantom's gradient, and exit")
    args = ap.parse_args(argv)
    if args.attenuation:
        s = make_sample_3d(tuple(args.shape), sigma=SIGMA, seed=args.seeds[0])
        mid = s.clean.shape[0] // 2
        out = {"3D": gradient_attenuation(s.clean, s.noisy, SIGMA),
               "2D slice": gradient_attenuation(s.clean[mid], s.noisy[mid], SIGMA[1:])}
        for sig in (1.0, 2.0):  # the 2D engine's own sample (filaments), at the 2D benchmarks' sigma and wider
            s2 = make_sample((256, 256), sigma=sig, photons=100.0, seed=args.seeds[0])
            out[f"2D sample, sigma {sig:g}"] = gradient_attenuation(s2.clean, s2.noisy, (sig, sig))
        log(json.dumps(out, indent=2))
        return out
    if args.summarise:
        log(summarise(args.summarise))
        return {}
    if args.jobs > 1:
        return run_parallel(args, argv if argv is not None else sys.argv[1:])
    args.pool_z = {None: None, "auto": None, "yes": True, "no": False}[args.pool_z]
    if args.smoke:
        args.steps, args.shape, args.patch, args.batch, args.channels = 2, [8, 40, 40], [8, 32, 32], 2, 4
    info = common.machine_info()
    log(common.machine_line(info))
    results: dict = {}
    for seed in args.seeds:
        s = make_sample_3d(tuple(args.shape), sigma=SIGMA, seed=seed)
        row = {"raw": {"denoised": common.psnr(s.clean, s.noisy), "deconvolved": common.psnr(s.phantom, s.noisy)}}
        log(f"seed {seed}: raw {row['raw']['denoised']:.2f} dB (vs clean), {row['raw']['deconvolved']:.2f} dB "
            "(vs phantom)")
        for name in (METHODS[i] for i in args.methods):
            out, seconds = run_method(s.noisy, name, args, seed)
            row[name] = {"denoised": common.psnr(s.clean, out["denoised"]),
                         "deconvolved": common.psnr(s.phantom, out["phantom"]),
                         "denoised_last": common.psnr(s.clean, out["denoised_last"]),
                         "deconvolved_last": common.psnr(s.phantom, out["phantom_last"]),
                         "best_epoch": out["best_epoch"], "seconds": seconds,
                         "cpu_seconds": out["cpu_seconds"], "pool_z": out["pool_z"]}
            log(f"seed {seed}: {name:32s} denoised {row[name]['denoised']:.2f} dB, deconvolved "
                f"{row[name]['deconvolved']:.2f} dB (best epoch {out['best_epoch']}; last weights "
                f"{row[name]['denoised_last']:.2f} / {row[name]['deconvolved_last']:.2f} dB; {seconds:.0f} s)")
        results[str(seed)] = row
    summary = {"machine": info, "args": {k: v for k, v in vars(args).items()}, "results": results}
    common.write_summary(args.out, "quality3d.json", summary)
    return summary


if __name__ == "__main__":
    main()
