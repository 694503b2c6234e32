"""The quality benchmark's tables (Markdown): every method's scores, and the targets."""

from __future__ import annotations

import seeds as seedstats

METHODS = (
    "raw",
    "N2V",
    "N2V conv",
    "DN lambda=0",
    "DN lambda=1",
    "CAREamics N2V",
    "CAREamics N2V 3.1% masked",
)


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
