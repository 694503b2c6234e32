"""The quality benchmark's figures: image crops per method, and PSNR against the PSF sigma."""

from __future__ import annotations

from pathlib import Path


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
