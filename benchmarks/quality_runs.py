"""The quality benchmark's runner: presets, one training, scores, one dataset's methods.

Used by ``quality.py`` (the command line); see its docstring for what is compared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import common
import datasets
import numpy as np

from napari_deconoising.core import TrainConfig, Trainer


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


_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0)
_ALL = ("text", "filaments", "nuclei")
PRESETS = {
    "smoke": Preset(64, 2, 2, 8, 32, 4, 2, 2, ("text", "filaments"), ("text",), (0.0, 1.0, 2.0), False),
    "quick": Preset(256, 3, 2, 32, 64, 16, 150, 10, ("text", "filaments"), ("text",), _SIGMAS, True),
    "default": Preset(256, 3, 2, 32, 64, 16, 600, 10, _ALL, ("text", "filaments"), _SIGMAS, True),
    "full": Preset(512, 4, 3, 64, 100, 20, 2000, 10, _ALL, ("text", "filaments"), _SIGMAS, True),
}


def log(*a):
    print(*a, flush=True)


def train_ours(noisy: np.ndarray, p: Preset, precision: str, seed: int, n2v2: bool = False,
               **cfg) -> tuple[dict, float]:
    """Train one of our models on ``noisy`` (S, Y, X); its predictions and training seconds."""
    config = TrainConfig(
        n2v2=n2v2,
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
    """PSNR, SSIM and checkerboard energy against the clean image (and the phantom, if given)."""
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
    n2v2: bool = False,
    weight_average: float = 0.0,
    decoder: str = "wide",
) -> dict:
    """Every method (and the sigma sweep) on one dataset with one training seed."""
    res: dict = {"description": ds.description, "methods": {}, "sweep": {}, "images": {}}

    def train(**cfg) -> tuple[dict, float]:
        return train_ours(ds.noisy, p, precision, seed, n2v2, weight_average=weight_average, decoder=decoder, **cfg)

    m = res["methods"]
    img = res["images"]
    m["raw"] = scores(ds, ds.noisy, ds.noisy) | {"train_s": 0.0}
    img["raw"] = ds.noisy

    out, s = train(psf="none", positivity=0.0)
    m["N2V"] = scores(ds, out["denoised"], out["denoised"]) | {"train_s": s}
    img["N2V"] = out["denoised"]
    conv = datasets.gaussian_blur(out["denoised"], ds.sigma)
    m["N2V conv"] = scores(ds, conv, None) | {"train_s": s}
    img["N2V conv"] = conv
    log(f"  {ds.name}: N2V {m['N2V']['psnr']:.2f} dB, N2V conv {m['N2V conv']['psnr']:.2f} dB ({s:.0f} s)")

    for lam in lambdas:
        key = f"DN lambda={lam:g}"
        out, s = train(psf="gaussian", psf_sigma=ds.sigma, positivity=lam)
        m[key] = scores(ds, out["denoised"], out["phantom"]) | {"train_s": s}
        img[key] = out["denoised"]
        img[key + " phantom"] = out["phantom"]
        log(f"  {ds.name}: {key} {m[key]['psnr']:.2f} dB, phantom {m[key]['phantom_psnr']:.2f} dB ({s:.0f} s)")
    if "DN lambda=1" in m:
        res["sweep"][ds.sigma] = {k: m["DN lambda=1"][k] for k in ("psnr", "phantom_psnr", "ssim")}

    if peer_py is not None:
        _run_peer(ds, p, precision, peer_py, seed, peer_matched, res)

    if sweep:
        for sg in sigmas:
            if sg == ds.sigma:
                continue
            # sigma 0 with lambda=1 is Noise2Void with the positivity term on its output
            out, s = train(psf="gaussian", psf_sigma=sg, positivity=1.0)
            r = scores(ds, out["denoised"], out["phantom"])
            res["sweep"][sg] = r
            log(f"  {ds.name}: sweep sigma={sg:g}: {r['psnr']:.2f} dB, phantom {r['phantom_psnr']:.2f} dB ({s:.0f} s)")
        res["sweep"] = dict(sorted(res["sweep"].items()))
    return res


def _run_peer(ds: datasets.Dataset, p: Preset, precision: str, peer_py, seed: int, peer_matched: bool,
              res: dict) -> None:
    """CAREamics' Noise2Void in its own venv; results (or the error) go into ``res``."""
    m, img = res["methods"], res["images"]
    peer_runs = [("CAREamics N2V", None)]
    if peer_matched:
        # CAREamics' default masks 0.2 % of the pixels per patch, ours 1/32 = 3.125 %.
        peer_runs.append(("CAREamics N2V 3.1% masked", 100 / 32))
    for key, mask_pct in peer_runs:
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
