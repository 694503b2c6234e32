"""The Markdown tables of ``benchmarks/speed.py``."""

from __future__ import annotations

import common


def _peer_for(rows: list[dict], what: str, config: str, precision: str) -> dict | None:
    """The measured row (with a CAREamics result) of a configuration and precision."""
    for r in rows:
        if r["what"] == what and r["config"] == config and r["precision"] == precision and (
            "peer_step_s" in r or "peer_s" in r
        ):
            return r
    return None


def _auto_note(r: dict) -> str:
    return f"auto → **{r['picked']}**" if r["precision"] == "auto" else r["precision"]


def train_table(rows: list[dict], configs: dict) -> list[str]:
    out = [
        "| training | precision | ours s/step | ours patches/s | CAREamics s/step "
        "| CAREamics patches/s | ours/theirs |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["what"] != "train":
            continue
        c = configs[r["config"]]
        b = c["batch"]
        name = f"{r['config']} (depth {c['depth']}, {c['channels']} ch, {c['patch']} px, batch {b})"
        peer_row = r if "peer_step_s" in r else None
        label = _auto_note(r)
        if r["precision"] == "auto":
            # Compared with CAREamics at its default (fp32) and, if different, at the picked precision.
            peer_row = _peer_for(rows, "train", r["config"], "fp32")
            label += " vs CAREamics fp32"
        if peer_row is not None:
            ps = peer_row["peer_step_s"]
            peer = f"{ps:.3f} ({peer_row['peer_step_s_min']:.3f}) | {b / ps:.1f} | {ps / r['ours_step_s']:.2f}x"
        elif r["config"] == "paper":
            peer = "not allowed (patch must be a multiple of 8) | | see paper104"
        else:
            peer = "n/a | n/a | n/a"
        out.append(
            f"| {name} | {label} | {r['ours_step_s']:.3f} ({r['ours_step_s_min']:.3f}) | "
            f"{b / r['ours_step_s']:.1f} | {peer} |"
        )
    return out


def predict_table(rows: list[dict]) -> list[str]:
    out = [
        "| prediction | precision | image | ours s | ours MP/s | CAREamics s | CAREamics MP/s "
        "| ours/theirs |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["what"] != "predict":
            continue
        mp = r["size"] ** 2 / 1e6
        peer_row = r if "peer_s" in r else None
        label = _auto_note(r)
        if r["precision"] == "auto":
            peer_row = _peer_for(rows, "predict", r["config"], "fp32")
            label += " vs CAREamics fp32"
        if peer_row is not None:
            ps = peer_row["peer_s"]
            peer = f"{ps:.2f} | {mp / ps:.3f} | {ps / r['ours_s']:.2f}x"
        else:
            peer = "n/a | n/a | n/a"
        out.append(
            f"| {r['config']} | {label} | {r['size']}x{r['size']} | {r['ours_s']:.2f} | "
            f"{mp / r['ours_s']:.3f} | {peer} |"
        )
    return out


def fmt(rows: list[dict], info: dict, peer_note: str, argv: list[str], configs: dict) -> str:
    """The whole report: machine line, training, prediction, auto's reasons, PSF, memory."""
    out = [
        f"Command: `python benchmarks/speed.py {' '.join(argv)}`",
        "",
        common.machine_line(info) + f"; 1-min load average at end {info['load_avg_1min_at_end']}",
        "",
        f"CPU flags: {info.get('cpu_flags', '?')}",
        "",
        peer_note,
        "",
        "Training: median of the timed steps (fastest in brackets); ours: patch sampling, "
        "masking, forward, backward, Adam; CAREamics: Lightning's batch start to batch end "
        "(masking, forward, backward, optimiser), full batches only. `auto` rows: our default "
        "(`precision=\"auto\"`), compared with CAREamics' default (fp32).",
        "",
        *train_table(rows, configs),
        "",
        *predict_table(rows),
    ]
    autos = [r for r in rows if r["what"] in ("train", "predict") and r["precision"] == "auto"]
    if autos:
        out += ["", "What `precision=\"auto\"` picked, and why (its own probe, in this run):", ""]
        out += [f"* {r['what']} {r['config']}: {r['picked']}: {r['reason']}" for r in autos]
    psf = [r for r in rows if r["what"] == "psf"]
    if psf:
        out += [
            "",
            "PSF convolution inside the network (non-separable kernel, batch 20 of 100x100, forward + "
            "backward, fp32, fastest of 5); `auto` uses FFT from 225 taps (15x15) on:",
            "",
            "| kernel | taps | direct ms | FFT ms |",
            "|---|---:|---:|---:|",
        ]
        out += [
            f"| {r['size']}x{r['size']} | {r['taps']} | {r['direct'] * 1e3:.1f} | {r['fft'] * 1e3:.1f} |"
            for r in psf
        ]
    for r in rows:
        if r["what"] == "rss":
            out += [
                "",
                f"Peak resident memory predicting {r['size']}x{r['size']} "
                f"({r['config']} config, {r.get('precision', 'fp32')}, "
                f"automatic tiles, fresh process): **{r['peak_rss_bytes'] / 2**30:.2f} GiB** "
                f"(a process that only imports torch and holds the image: "
                f"{r['baseline_rss_bytes'] / 2**30:.2f} GiB); {r['seconds']:.0f} s.",
            ]
    return "\n".join(out)
