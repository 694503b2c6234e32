"""Prediction quality at the image border under each border contract (issue 9/8).

Prediction sees, beyond the image border, ``margin`` mirrored pixels and then the network's
zero padding (:mod:`napari_deconoising.core.tiles`). This trains one 2D model (the
``filaments`` benchmark data) and one 3D model (the 3D quality stack,
``make_sample_3d((32, 160, 160), sigma=(2, 1, 1))``) and predicts with

* ``0``: no mirrored context (the network zero-pads right at the aligned image border),
* ``1``, ``2``: one or two pooling multiples mirrored, then zeros,
* ``yx1``, ``yx2``: the same in Y and X only, none in Z,
* ``halo``: a full halo mirrored, which gives exactly the old contract's outputs,

reporting PSNR against the ground truth over the whole image and over the border band
(pixels within ``--band`` px of a Y or X edge; in 3D also the ``--zband`` planes at each
Z end). Denoised is compared with the clean image, deconvolved with the phantom.

Usage::

    python benchmarks/border_quality.py --out bench-output/border
    python benchmarks/border_quality.py --smoke
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
import datasets  # noqa: E402

from napari_deconoising.core import DecoNoisingModel, TrainConfig, Trainer, tile_plan  # noqa: E402
from napari_deconoising.core.sample3d import make_sample_3d  # noqa: E402

# Pooling multiples of mirrored context (capped at the halo): (Y and X, Z).
MARGINS = {"0": (0, 0), "1": (1, 1), "2": (2, 2), "yx1": (1, 0), "yx2": (2, 0), "halo": (10**6, 10**6)}


def log(*a) -> None:
    print(*a, flush=True)


def band_mask(shape: tuple[int, ...], band: int, zband: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels within ``band`` of a Y/X edge (last two axes); in 3D also the ``zband`` end planes."""
    yx = np.zeros(shape[-2:], bool)
    yx[:band], yx[-band:], yx[:, :band], yx[:, -band:] = True, True, True, True
    mask = np.broadcast_to(yx, shape)
    if len(shape) == 2 or zband == 0:
        return mask, None
    z = np.zeros(shape, bool)
    z[:zband], z[-zband:] = True, True
    return mask, z


def scores(truth: np.ndarray, est: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """PSNR over the whole image and each mask, all with the whole truth's data range."""
    rng = float(truth.max() - truth.min())
    out = {"whole": common.psnr(truth, est)}
    for name, m in masks.items():
        mse = float(np.mean((truth[m].astype(np.float64) - est[m]) ** 2))
        out[name] = 10 * np.log10(rng**2 / mse)
    return out


def train(noisy: np.ndarray, cfg: TrainConfig, axes: str, path: Path) -> DecoNoisingModel:
    if path.exists():
        return DecoNoisingModel.load(path)
    t0 = time.process_time()
    tr = Trainer(noisy, cfg, axes=axes)
    for _ in tr.run():
        pass
    log(f"trained {path.name}: {time.process_time() - t0:.0f} CPU s")
    tr.model.save(path)
    return tr.model


def evaluate(model: DecoNoisingModel, noisy: np.ndarray, axes: str, clean: np.ndarray, phantom: np.ndarray,
             masks: dict[str, np.ndarray], margins: list[str], save: Path | None) -> dict:
    rows = {}
    defaults = tile_plan._MARGIN_MULTIPLES, tile_plan._MARGIN_MULTIPLES_Z
    for name in margins:
        # the contract's knob, for this measurement
        tile_plan._MARGIN_MULTIPLES, tile_plan._MARGIN_MULTIPLES_Z = MARGINS[name]
        pred = model.predict(noisy, axes, device="cpu", precision="fp32")
        rows[name] = {"margin_px": list(tile_plan.tile_margins(model)),
                      "denoised": scores(clean, pred.denoised, masks),
                      "deconvolved": scores(phantom, pred.deconvolved, masks)}
        if save is not None:
            np.savez(save.with_name(f"{save.name}-{name}.npz"), denoised=pred.denoised, deconvolved=pred.deconvolved)
        log(f"  margin {name} {rows[name]['margin_px']}: " + "; ".join(
            f"{k} " + ", ".join(f"{m} {v:.2f}" for m, v in rows[name][k].items()) for k in ("denoised", "deconvolved")))
    tile_plan._MARGIN_MULTIPLES, tile_plan._MARGIN_MULTIPLES_Z = defaults
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "border")
    ap.add_argument("--steps2d", type=int, default=400)
    ap.add_argument("--steps3d", type=int, default=300)
    ap.add_argument("--band", type=int, default=16)
    ap.add_argument("--zband", type=int, default=4)
    ap.add_argument("--margins", nargs="+", default=list(MARGINS), choices=list(MARGINS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["2d", "3d"], help="one of the two models")
    ap.add_argument("--smoke", action="store_true", help="tiny data and a few steps (tests)")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    log(common.machine_line(info))
    summary: dict = {"machine": info, "args": {k: str(v) for k, v in vars(a).items()}}

    if a.only != "3d":
        summary["2d"] = run_2d(a)
    if a.only != "2d":
        summary["3d"] = run_3d(a)
    (a.out / f"border_quality{'-' + a.only if a.only else ''}-s{a.seed}.json").write_text(
        json.dumps(summary, indent=1, default=str))
    return summary


def run_2d(a: argparse.Namespace) -> dict:
    """Filaments (no download), a demo-sized network."""
    n, size = (2, 64) if a.smoke else (4, 256)
    d = datasets.make("filaments", n, size, seed=a.seed)
    cfg = TrainConfig(ndim=2, depth=2, channels=16, patch_size=64, batch_size=16, psf_sigma=1.0, seed=a.seed,
                      precision="fp32", device="cpu", steps_per_epoch=min(10, a.steps2d),
                      epochs=max(1, (2 if a.smoke else a.steps2d) // 10))
    model = train(d.noisy, cfg, "SYX", a.out / f"model2d-{a.steps2d}-s{a.seed}.pt")
    band, _ = band_mask(d.noisy.shape, a.band, 0)
    log(f"2D filaments {d.noisy.shape}, band {a.band} px ({band.mean():.0%} of the pixels)")
    return evaluate(model, d.noisy, "SYX", d.clean, d.phantom, {"band": band}, a.margins,
                    a.out / f"pred2d-s{a.seed}")


def run_3d(a: argparse.Namespace) -> dict:
    """The 3D quality benchmark's stack and network."""
    s = make_sample_3d((8, 48, 48) if a.smoke else (32, 160, 160), sigma=(2.0, 1.0, 1.0), seed=a.seed)
    cfg = TrainConfig(ndim=3, depth=2, channels=16, patch_size=(8, 32, 32) if a.smoke else (16, 64, 64),
                      batch_size=4, psf="gaussian", psf_sigma=(2.0, 1.0, 1.0), seed=a.seed, precision="fp32",
                      device="cpu", steps_per_epoch=min(10, a.steps3d),
                      epochs=max(1, (2 if a.smoke else a.steps3d) // 10))
    model = train(s.noisy, cfg, "ZYX", a.out / f"model3d-{a.steps3d}-s{a.seed}.pt")
    band, zband = band_mask(s.noisy.shape, a.band, a.zband)
    log(f"3D stack {s.noisy.shape}, Y/X band {a.band} px ({band.mean():.0%}), Z band {a.zband} planes")
    return evaluate(model, s.noisy, "ZYX", s.clean, s.phantom, {"band": band, "zband": zband}, a.margins,
                    a.out / f"pred3d-s{a.seed}")


if __name__ == "__main__":
    main()
