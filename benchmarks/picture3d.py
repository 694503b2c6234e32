"""The 3D picture: XY and XZ views of raw, denoised, deconvolved and the ground truth.

Trains 3D DecoNoising on ``make_sample_3d((32, 160, 160), sigma=(2, 1, 1), seed=0)`` with the
3D quality benchmark's network (depth 2, 16 channels, 4 patches of 16 x 64 x 64 per step,
lr 1e-3, fp32, best weights by validation loss), predicts the whole stack and draws, for the
middle plane (XY) and the middle row (XZ, Z stretched by the stack's Z step of 2 pixels):
raw | denoised | clean (the truth for denoised) | deconvolved | phantom (the truth for
deconvolved). Each panel is scaled to its own 0.5-99.8 percentiles. The PSNRs over the
whole stack are written into the title and into ``picture3d.json``.

Usage::

    python benchmarks/picture3d.py --steps 300 --png docs/images/3d_views.png
    python benchmarks/picture3d.py --model m3d.pt --png x.png     # redraw with a trained model
    python benchmarks/picture3d.py --smoke --png /tmp/x.png       # seconds; for the test suite
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from napari_deconoising.core import DecoNoisingModel, TrainConfig, Trainer  # noqa: E402
from napari_deconoising.core.sample3d import make_sample_3d  # noqa: E402

SIGMA = (2.0, 1.0, 1.0)
Z_STEP = 2.0  # make_sample_3d's default Z spacing, in pixels: the XZ aspect ratio


def train_model(noisy: np.ndarray, steps: int, smoke: bool) -> DecoNoisingModel:
    """3D DecoNoising as in benchmarks/quality3d.py (fp32, best weights by validation)."""
    cfg = TrainConfig(ndim=3, psf="gaussian", psf_sigma=SIGMA, depth=2, channels=4 if smoke else 16,
                      patch_size=(8, 32, 32) if smoke else (16, 64, 64), batch_size=2 if smoke else 4,
                      lr=1e-3, seed=0, precision="fp32", device="cpu",
                      steps_per_epoch=min(10, steps), epochs=max(1, steps // 10))
    trainer = Trainer(noisy, cfg, axes="ZYX")
    for _ in trainer.run():
        pass
    return trainer.model


def draw(panels: dict[str, np.ndarray], title: str, png: Path) -> None:
    """Two rows (XY middle plane, XZ middle row) of one column per stack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z, y, x = next(iter(panels.values())).shape
    xz_h = z * Z_STEP
    fig, axes = plt.subplots(2, len(panels), figsize=(2.3 * len(panels), 2.3 * (y + xz_h) / x + 0.6),
                             gridspec_kw={"height_ratios": [y, xz_h]}, squeeze=False)
    for col, (name, vol) in enumerate(panels.items()):
        lo, hi = np.percentile(vol, [0.5, 99.8])
        for row, (view, aspect, label) in enumerate(
                [(vol[z // 2], 1.0, f"XY, z={z // 2}"), (vol[:, y // 2, :], Z_STEP, f"XZ, y={y // 2}")]):
            ax = axes[row, col]
            ax.imshow(view, cmap="magma", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed")
    ap.add_argument("--model", type=Path, help="a trained 3D model file: draw with it instead of training")
    ap.add_argument("--save-model", type=Path, help="write the trained model here")
    ap.add_argument("--png", type=Path, default=common.ROOT / "docs" / "images" / "3d_views.png")
    ap.add_argument("--smoke", action="store_true", help="a tiny stack and network (tests)")
    a = ap.parse_args(argv)
    info = common.machine_info()
    shape = (8, 40, 40) if a.smoke else (32, 160, 160)
    s = make_sample_3d(shape, sigma=SIGMA, seed=a.seed)
    t0 = time.perf_counter()
    if a.model:
        model, steps = DecoNoisingModel.load(a.model), None
    else:
        steps = 2 if a.smoke else a.steps
        model = train_model(s.noisy, steps, a.smoke)
        if a.save_model:
            model.save(a.save_model)
    pred = model.predict(s.noisy, "ZYX", device="cpu", precision="fp32")
    seconds = time.perf_counter() - t0
    scores = {"raw": common.psnr(s.clean, s.noisy), "denoised": common.psnr(s.clean, pred.denoised),
              "deconvolved": common.psnr(s.phantom, pred.deconvolved),
              "raw_vs_phantom": common.psnr(s.phantom, s.noisy)}
    title = (f"3D DecoNoising, {steps if steps is not None else 'given model'} steps; PSNR over the stack: raw "
             f"{scores['raw']:.1f} dB, denoised {scores['denoised']:.1f} dB (vs clean); deconvolved "
             f"{scores['deconvolved']:.1f} dB (vs phantom; raw {scores['raw_vs_phantom']:.1f} dB)")
    draw({"raw": s.noisy, "denoised": pred.denoised, "clean (truth)": s.clean, "deconvolved": pred.deconvolved,
          "phantom (truth)": s.phantom}, title, a.png)
    summary = {"machine": info, "steps": steps, "seed": a.seed, "psnr": scores, "seconds": seconds,
               "png": str(a.png), "png_bytes": a.png.stat().st_size}
    a.png.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    print(title, f"({seconds:.0f} s; {summary['png_bytes'] / 1024:.0f} KB)", flush=True)
    return summary


if __name__ == "__main__":
    main()
