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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import datasets  # noqa: E402
import seeds as seedstats  # noqa: E402

from napari_deconoising.core import TrainConfig, Trainer  # noqa: E402


@dataclass
class Preset:
    size: int
    n_images: int
    depth: int
    channels: int
    patch: int
    batch: int
    steps: int
    steps_per_epoch: int
    datasets: tuple[str, ...]
    sweep: tuple[str, ...]
    sigmas: tuple[float, ...]
    peer: bool


PRESETS = {
    "smoke": Preset(64, 2, 2, 8, 32, 4, 2, 2, ("text", "filaments"), ("text",), (0.0, 1.0, 2.0), False),
    "quick": Preset(
        256,
        3,
        2,
        32,
        64,
        16,
        150,
        10,
        ("text", "filaments"),
        ("text",),
        (0.0, 0.5, 1.0, 1.5, 2.0),
        True,
    ),
    "default": Preset(
        256,
        3,
        2,
        32,
        64,
        16,
        600,
        10,
        ("text", "filaments", "nuclei"),
        ("text", "filaments"),
        (0.0, 0.5, 1.0, 1.5, 2.0),
        True,
    ),
    "full": Preset(
        512,
        4,
        3,
        64,
        100,
        20,
        2000,
        10,
        ("text", "filaments", "nuclei"),
        ("text", "filaments"),
        (0.0, 0.5, 1.0, 1.5, 2.0),
        True,
    ),
}

METHODS = (
    "raw",
    "N2V",
    "N2V conv",
    "DN lambda=0",
    "DN lambda=1",
    "CAREamics N2V",
    "CAREamics N2V 3.1% masked",
)


def log(*a):
    print(*a, flush=True)


N2V2 = False  # --n2v2: every training of ours uses N2V2


def train_ours(noisy: np.ndarray, p: Preset, precision: str, seed: int, **cfg) -> tuple[dict, float]:
    config = TrainConfig(
        n2v2=N2V2,
        epochs=max(1, p.steps // p.steps_per_epoch),
        steps_per_epoch=min(p.steps, p.steps_per_epoch),
        batch_size=p.batch,
        patch_size=p.patch,
        depth=p.depth,
        channels=p.channels,
        seed=seed,
        precision=precision,
        **cfg,
    )
    t0 = time.perf_counter()
    trainer = Trainer(noisy, config, axes="SYX")
    for _ in trainer.run():
        pass
    model = trainer.model
    seconds = time.perf_counter() - t0
    pred = model.predict(noisy, axes="SYX", precision="fp32")
    return {"denoised": pred.denoised, "phantom": pred.deconvolved}, seconds


def scores(ds: datasets.Dataset, denoised: np.ndarray, phantom: np.ndarray | None) -> dict:
    n = ds.noisy.shape[0]
    out = {
        "psnr": float(np.mean([common.psnr(ds.clean[i], denoised[i]) for i in range(n)])),
        "ssim": float(np.mean([common.ssim(ds.clean[i], denoised[i]) for i in range(n)])),
        "checker_db": float(np.mean([common.checkerboard_db(ds.clean[i], denoised[i]) for i in range(n)])),
    }
    if phantom is not None:
        out["phantom_psnr"] = float(np.mean([common.psnr(ds.phantom[i], phantom[i]) for i in range(n)]))
        out["phantom_checker_db"] = float(np.mean([common.checkerboard_db(ds.phantom[i], phantom[i])
                                                   for i in range(n)]))
    return out


def run_dataset(
    ds: datasets.Dataset,
    p: Preset,
    precision: str,
    peer_py,
    seed: int,
    sweep: bool,
    sigmas,
    peer_matched: bool = False,
    lambdas: tuple[float, ...] = (0.0, 1.0),
) -> dict:
    res: dict = {"description": ds.description, "methods": {}, "sweep": {}, "images": {}}
    m = res["methods"]
    img = res["images"]
    m["raw"] = scores(ds, ds.noisy, ds.noisy) | {"train_s": 0.0}
    img["raw"] = ds.noisy

    out, s = train_ours(ds.noisy, p, precision, seed, psf="none", positivity=0.0)
    m["N2V"] = scores(ds, out["denoised"], out["denoised"]) | {"train_s": s}
    img["N2V"] = out["denoised"]
    conv = datasets.gaussian_blur(out["denoised"], ds.sigma)
    m["N2V conv"] = scores(ds, conv, None) | {"train_s": s}
    img["N2V conv"] = conv
    log(f"  {ds.name}: N2V {m['N2V']['psnr']:.2f} dB, N2V conv {m['N2V conv']['psnr']:.2f} dB ({s:.0f} s)")

    for lam in lambdas:
        key = f"DN lambda={lam:g}"
        out, s = train_ours(ds.noisy, p, precision, seed, psf="gaussian", psf_sigma=ds.sigma, positivity=lam)
        m[key] = scores(ds, out["denoised"], out["phantom"]) | {"train_s": s}
        img[key] = out["denoised"]
        img[key + " phantom"] = out["phantom"]
        log(f"  {ds.name}: {key} {m[key]['psnr']:.2f} dB, phantom {m[key]['phantom_psnr']:.2f} dB ({s:.0f} s)")
    if "DN lambda=1" in m:
        res["sweep"][ds.sigma] = {k: m["DN lambda=1"][k] for k in ("psnr", "phantom_psnr", "ssim")}

    peer_runs = [("CAREamics N2V", None)]
    if peer_matched:
        # CAREamics' default masks 0.2 % of the pixels per patch, ours 1/32 = 3.125 %.
        peer_runs.append(("CAREamics N2V 3.1% masked", 100 / 32))
    for key, mask_pct in peer_runs if peer_py is not None else []:
        with common.tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "noisy.npy", Path(tmp) / "out.npy"
            np.save(src, ds.noisy)
            job = {
                "mode": "quality",
                "noisy": str(src),
                "out": str(dst),
                "steps": p.steps,
                "depth": p.depth,
                "channels": p.channels,
                "patch": p.patch,
                "batch": p.batch,
                "seed": seed,
                "precision": "bf16" if precision == "bf16" else "fp32",
                "masked_pixel_percentage": mask_pct,
            }
            try:
                r = common.run_peer(peer_py, job)
                den = np.load(dst).reshape(ds.noisy.shape)
                m[key] = scores(ds, den, den) | {"train_s": r["train_seconds"], "peer": r}
                img[key] = den
                log(f"  {ds.name}: {key} {m[key]['psnr']:.2f} dB ({r['train_seconds']:.0f} s)")
            except Exception as e:  # noqa: BLE001 - report and go on
                res["peer_error"] = str(e)[-1500:]
                log(f"  {ds.name}: {key} failed: {str(e)[-500:]}")

    if sweep:
        for sg in sigmas:
            if sg == ds.sigma:
                continue
            # sigma 0 with lambda=1 is Noise2Void with the positivity term on its output
            out, s = train_ours(ds.noisy, p, precision, seed, psf="gaussian", psf_sigma=sg, positivity=1.0)
            r = scores(ds, out["denoised"], out["phantom"])
            res["sweep"][sg] = r
            log(f"  {ds.name}: sweep sigma={sg:g}: {r['psnr']:.2f} dB, phantom {r['phantom_psnr']:.2f} dB ({s:.0f} s)")
        res["sweep"] = dict(sorted(res["sweep"].items()))
    return res


def fmt_table(results: dict) -> str:
    lines = [
        "| dataset | method | PSNR (dB) | SSIM | phantom PSNR (dB) | checkerboard (dB) | phantom checkerboard (dB) "
        "| train time (s, mean) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        for meth in METHODS:
            if meth not in r["methods"]:
                if meth == "CAREamics N2V":  # the matched-masking run is optional
                    lines.append(f"| {name} | {meth} | n/a | n/a | | | | not run |")
                continue
            s = r["methods"][meth]
            ph = seedstats.pm(s, "phantom_psnr") if meth != "raw" else ""
            t = f"{s['train_s']:.0f}" if s.get("train_s") else ""
            cb = seedstats.pm(s, "checker_db", ".1f")
            pcb = seedstats.pm(s, "phantom_checker_db", ".1f") if meth != "raw" else ""
            lines.append(f"| {name} | {meth} | {seedstats.pm(s, 'psnr')} | {seedstats.pm(s, 'ssim', '.3f')} "
                         f"| {ph} | {cb} | {pcb} | {t} |")
    return "\n".join(lines)


def fmt_targets(results: dict) -> str:
    lines = [
        "| dataset | DN(lambda=1) - N2V (dB) | DN(lambda=1) - CAREamics N2V (dB) "
        "| best DN - N2V (dB) | sweep peak at sigma |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        m = r["methods"]
        dn = m["DN lambda=1"]["psnr"]
        best = max(m.get("DN lambda=0", m["DN lambda=1"])["psnr"], dn)
        peer = f"{dn - m['CAREamics N2V']['psnr']:+.2f}" if "CAREamics N2V" in m else "n/a"
        sw = r["sweep"]
        peak = f"{max(sw, key=lambda k: sw[k]['psnr']):g}" if len(sw) > 1 else "-"
        lines.append(f"| {name} | {dn - m['N2V']['psnr']:+.2f} | {peer} | {best - m['N2V']['psnr']:+.2f} | {peak} |")
    return "\n".join(lines)


def figure_quality(results: dict, path: Path, info: dict, crop: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [
        "raw",
        "N2V",
        "N2V conv",
        "CAREamics N2V",
        "DN lambda=0",
        "DN lambda=1",
        "DN lambda=1 phantom",
        "clean",
        "phantom",
    ]
    names = list(results)
    fig, axes = plt.subplots(len(names), len(cols), figsize=(1.9 * len(cols), 2.1 * len(names) + 0.6), squeeze=False)
    for i, name in enumerate(names):
        r = results[name]
        ds = r["_ds"]
        h = ds.noisy.shape[1]
        y0 = x0 = max(0, (h - crop) // 2)
        sl = (0, slice(y0, y0 + crop), slice(x0, x0 + crop))
        lo, hi = float(ds.clean[sl].min()), float(ds.clean[sl].max())
        plo, phi = float(ds.phantom[sl].min()), float(ds.phantom[sl].max())
        for j, c in enumerate(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == "clean":
                a, title = ds.clean, "clean (truth)"
            elif c == "phantom":
                a, title = ds.phantom, "phantom (truth)"
            elif c in r["images"]:
                a = r["images"][c]
                if c.endswith("phantom"):
                    title = f"{c}\n{r['methods']['DN lambda=1']['phantom_psnr']:.1f} dB vs phantom"
                else:
                    title = f"{c}\n{r['methods'][c]['psnr']:.1f} dB"
            else:
                ax.set_title(f"{c}\nnot run", fontsize=7)
                ax.axis("off")
                continue
            vlo, vhi = (plo, phi) if c.endswith("phantom") else (lo, hi)
            ax.imshow(a[sl], cmap="magma", vmin=vlo, vmax=vhi, interpolation="nearest")
            ax.set_title(title, fontsize=7)
        axes[i, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(
        f"{crop}x{crop} crops; PSNR vs clean image (phantom column: vs true phantom). "
        f"{info['command']}; {info['date']}; {info['cpu']}, {info['cores']} cores; "
        f"torch {info['torch']}",
        fontsize=7,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_sigma(results: dict, path: Path, info: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, r in results.items():
        sw = {float(k): v for k, v in r["sweep"].items()}
        if len(sw) < 2:
            continue
        s = sorted(sw)
        l1 = a1.plot(s, [sw[k]["psnr"] for k in s], "o-", label=f"{name}: DecoNoising")[0]
        a1.axhline(
            r["methods"]["N2V"]["psnr"],
            color=l1.get_color(),
            ls=":",
            lw=1,
            label=f"{name}: N2V (ours)",
        )
        if "CAREamics N2V" in r["methods"]:
            a1.axhline(
                r["methods"]["CAREamics N2V"]["psnr"],
                color=l1.get_color(),
                ls="--",
                lw=1,
                label=f"{name}: CAREamics N2V",
            )
        a2.plot(s, [sw[k]["phantom_psnr"] for k in s], "o-", color=l1.get_color(), label=name)
        a1.axvline(r["sigma"], color="grey", lw=0.5)
        a2.axvline(r["sigma"], color="grey", lw=0.5)
    a1.set_xlabel("PSF sigma used in training (px); data made with 1.0")
    a1.set_ylabel("denoising PSNR vs clean (dB)")
    a2.set_xlabel("PSF sigma used in training (px)")
    a2.set_ylabel("phantom PSNR vs true phantom (dB)")
    a1.legend(fontsize=6)
    a2.legend(fontsize=6)
    fig.suptitle(
        f"PSF mismatch, lambda=1.\n{info['command']}; {info['date']}; {info['cpu']}, "
        f"{info['cores']} cores; torch {info['torch']}",
        fontsize=7,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    ap.add_argument("--n2v2", action="store_true", help="train all our models with N2V2")
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

    global N2V2
    N2V2 = a.n2v2
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
        ds = datasets.make(dname, p.n_images, p.size, seed=a.seed, log=log)
        if ds is None:
            continue
        log(f"{dname}: {ds.description}; {ds.noisy.shape}")
        runs = []
        for seed in a.seeds or [a.seed]:
            log(f"{dname}: training seed {seed}")
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
