"""How well does ``deconoising beads`` measure a PSF? Synthetic bead images with a known PSF.

Three parts (``--parts``):

* ``gaussian``: 2D bead images (256², ``--beads`` beads, Poisson noise on a background of 100
  photons) with a Gaussian PSF of each ``--sigmas`` and each ``--photons`` per bead; the
  measured sigma against the truth over ``--seeds``. Also 3D stacks (40 x 128 x 128, 12 beads)
  with anisotropic sigmas.
* ``optics``: the diffraction-limited PSF of a widefield and a confocal microscope (the
  ``psf`` package, as ``--psf-optics``, at its default extent), beads on whole pixels, measured
  in a box 6 px wider; the measured kernel (its centre, the true one's size) against the true
  one (correlation, relative L2 error) and the Gaussian sigma against the optics' equivalent
  Gaussian.
* ``train``: DecoNoising on ``benchmarks/datasets.py`` filaments and text blurred with each
  ``--train-sigmas``, trained with the true Gaussian and with the PSF measured from a bead
  image of the same microscope (5000 photons per bead, 20 beads); the denoised PSNR of both.
  Issue 12's goal for a PSF from the data was the PSNR within 0.2 dB of the true PSF's.

Usage::

    python benchmarks/beads.py --out bench-output/beads
    python benchmarks/beads.py --parts train --seeds 0 1 2 --out bench-output/beads_train
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

from napari_deconoising.core import TrainConfig, Trainer  # noqa: E402
from napari_deconoising.core.bead_psf import fwhm  # noqa: E402
from napari_deconoising.core.beads import distill_psf  # noqa: E402
from napari_deconoising.core.gaussian_fit import fit_gaussian  # noqa: E402
from napari_deconoising.core.sample_beads import make_beads  # noqa: E402


def log(*a):
    print(*a, flush=True)


def gaussian_rows(a) -> list[dict]:
    rows = []
    for sigma in a.sigmas:
        for photons in a.photons:
            for seed in a.seeds:
                image, _ = make_beads((256, 256), sigma, n=a.beads, seed=seed, photons=photons)
                t0 = time.perf_counter()
                r = distill_psf(image)
                rows.append({"part": "gaussian 2D", "true": [sigma, sigma], "photons": photons, "seed": seed,
                             "measured": list(r.sigma), "beads": r.n_beads, "box": list(r.box),
                             "seconds": time.perf_counter() - t0})
                log(json.dumps(rows[-1]))
    for sig in ([2.0, 1.0, 1.0], [3.0, 1.5, 1.5]):
        for seed in a.seeds:
            image, _ = make_beads((40, 128, 128), sig, n=12, seed=seed, photons=20000, min_distance=14)
            t0 = time.perf_counter()
            r = distill_psf(image)
            rows.append({"part": "gaussian 3D", "true": sig, "photons": 20000, "seed": seed,
                         "measured": list(r.sigma), "beads": r.n_beads, "box": list(r.box),
                         "seconds": time.perf_counter() - t0})
            log(json.dumps(rows[-1]))
    return rows


def optics_rows(a) -> list[dict]:
    from napari_deconoising.core.optics import Optics, gaussian_sigma, optics_psf

    scopes = {
        "widefield NA 1.4 oil, 520 nm, 65 nm px": Optics(na=1.4, wavelength_nm=520, n_immersion=1.518, pixel_nm=65),
        "confocal NA 1.2 water, 488/520 nm, 1 AU, 50 nm px": Optics(
            na=1.2, wavelength_nm=520, n_immersion=1.333, pixel_nm=50, modality="confocal", excitation_nm=488),
    }
    rows = []
    for name, optics in scopes.items():
        kernel = optics_psf(optics, ndim=2)  # its default extent: three dark rings
        n = kernel.shape[0]
        for seed in a.seeds:
            # a box 6 px wider than the PSF, so that its faces see only background
            image, _ = make_beads((256, 256), psf=kernel, n=a.beads, seed=seed, photons=20000, min_distance=36)
            r = distill_psf(image, box=n + 6)
            measured = r.psf[3:-3, 3:-3] / r.psf[3:-3, 3:-3].sum()
            rows.append({"part": "optics", "microscope": name, "seed": seed, "beads": r.n_beads,
                         "correlation": float(np.corrcoef(measured.ravel(), kernel.ravel())[0, 1]),
                         "relative_l2": float(np.linalg.norm(measured - kernel) / np.linalg.norm(kernel)),
                         "measured": list(r.sigma), "kernel_gaussian": list(_kernel_sigma(kernel)),
                         "optics_gaussian": list(gaussian_sigma(optics)[1:]),
                         "fwhm_measured": list(fwhm(r.psf)), "fwhm_true": list(fwhm(kernel))})
            log(json.dumps(rows[-1]))
    return rows


def _kernel_sigma(kernel: np.ndarray) -> tuple[float, ...]:
    """The Gaussian sigma :func:`distill_psf` would report for a perfect measurement of ``kernel``."""
    return fit_gaussian(kernel / kernel.max(), centre=tuple(n // 2 for n in kernel.shape), fit_offset=False).sigma


def train_rows(a) -> list[dict]:
    rows = []
    for name in a.datasets.split(","):
        for sigma in a.train_sigmas:
            ds = datasets.make(name, 3, 256, seed=0, log=log, sigma=sigma)
            for seed in a.seeds:
                bead_image, _ = make_beads((256, 256), sigma, n=20, seed=100 + seed, photons=5000)
                measured = distill_psf(bead_image)
                base = TrainConfig(epochs=max(1, a.steps // 10), steps_per_epoch=10, batch_size=8, patch_size=64,
                                   depth=2, channels=16, seed=seed)
                row = {"part": "train", "dataset": name, "true_sigma": sigma, "seed": seed,
                       "bead_sigma": list(measured.sigma)}
                for key, cfg, psf in (("psnr_true", base.replace(psf_sigma=sigma), None),
                                      ("psnr_beads", base.replace(psf="measured"), measured.psf)):
                    trainer = Trainer(ds.noisy, cfg, axes="SYX", psf=psf)
                    for _ in trainer.run():
                        pass
                    den = trainer.model.predict(ds.noisy, axes="SYX", precision="fp32").denoised
                    row[key] = float(np.mean([common.psnr(ds.clean[i], den[i]) for i in range(len(den))]))
                row["difference"] = row["psnr_beads"] - row["psnr_true"]
                rows.append(row)
                log(json.dumps(row))
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="gaussian,optics", help="of gaussian,optics,train")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.7, 1.0, 1.5, 2.0, 2.5])
    ap.add_argument("--photons", type=float, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--beads", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--datasets", default="filaments,text")
    ap.add_argument("--train-sigmas", type=float, nargs="+", default=[0.7, 1.5, 2.5])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=common.ROOT / "bench-output" / "beads")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    log(common.machine_line(info))
    rows = []
    parts = {"gaussian": gaussian_rows, "optics": optics_rows, "train": train_rows}
    for part in a.parts.split(","):
        rows += parts[part](a)
        (a.out / "beads.json").write_text(json.dumps(
            {"machine": info, "args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=1))
    log("\n" + summary(rows))
    return {"rows": rows}


def summary(rows: list[dict]) -> str:
    out = []
    gauss = [r for r in rows if r["part"].startswith("gaussian")]
    keys = sorted({(r["part"], tuple(r["true"]), r["photons"]) for r in gauss})
    if keys:
        out += ["| image | true sigma | photons per bead | measured (mean over seeds) | largest error | beads used |",
                "|---|---|---:|---|---:|---|"]
    for part, true, photons in keys:
        sel = [r for r in gauss if (r["part"], tuple(r["true"]), r["photons"]) == (part, true, photons)]
        m = np.array([r["measured"] for r in sel])
        err = np.abs(m - np.array(true)).max()
        out.append(f"| {part} | {' / '.join(f'{v:g}' for v in true)} | {photons:g} | "
                   f"{' / '.join(f'{v:.3f}' for v in m.mean(axis=0))} | {err:.3f} | "
                   f"{', '.join(str(r['beads']) for r in sel)} |")
    for r in (r for r in rows if r["part"] == "optics"):
        out.append(f"optics {r['microscope']}, seed {r['seed']}: correlation {r['correlation']:.4f}, relative L2 "
                   f"{r['relative_l2']:.3f}, FWHM {r['fwhm_measured'][0]:.2f} px (true {r['fwhm_true'][0]:.2f}), "
                   f"sigma {r['measured'][0]:.2f} (fit to the true kernel {r['kernel_gaussian'][0]:.2f}, "
                   f"optics' Gaussian {r['optics_gaussian'][0]:.2f})")
    for r in (r for r in rows if r["part"] == "train"):
        out.append(f"train {r['dataset']} {r['true_sigma']} seed {r['seed']}: true {r['psnr_true']:.2f}, beads "
                   f"{r['psnr_beads']:.2f} ({r['difference']:+.2f} dB), bead sigma {r['bead_sigma'][0]:.2f}")
    return "\n".join(out)


if __name__ == "__main__":
    main()
