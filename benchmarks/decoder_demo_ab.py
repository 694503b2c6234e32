"""The two U-Net decoders on the demo's own sample and budget, seed by seed.

For each seed S: ``make_sample((256, 256), sigma=1.5, seed=S)`` (the demo's data; seed 0 is what
``deconoising demo`` shows), then Noise2Void and DecoNoising with the demo's network and 600
steps in bf16, training seed S, once with the wide and once with the lean decoder. Prints one
JSON line per seed and decoder: PSNR of the denoised images against the noise-free image, of
the deconvolved image against the phantom, and the seconds each training took.

Usage::

    python benchmarks/decoder_demo_ab.py 0 1 2 3 4
"""

from __future__ import annotations

import json
import sys
import time

from napari_deconoising._console import run_training
from napari_deconoising.core.sample import make_sample, psnr
from napari_deconoising.demo import DEMO_CONFIG


def main(seeds: list[int]) -> None:
    for seed in seeds:
        s = make_sample((256, 256), sigma=1.5, seed=seed)
        rng, prng = float(s.clean.max() - s.clean.min()), float(s.phantom.max() - s.phantom.min())
        for dec in ("wide", "lean"):
            base = DEMO_CONFIG.replace(seed=seed, epochs=60, decoder=dec, precision="bf16", device="cpu")
            row: dict = {"seed": seed, "decoder": dec}
            for name, cfg in (("n2v", base.replace(psf="none")),
                              ("dn", base.replace(psf="gaussian", psf_sigma=s.sigma))):
                t = time.perf_counter()
                model, _ = run_training(s.noisy, cfg, label=f"[{dec} {name} {seed}] ")
                pred = model.predict(s.noisy, device="cpu")
                row[name] = round(psnr(s.clean, pred.denoised, rng), 2)
                if name == "dn":
                    row["deconv"] = round(psnr(s.phantom, pred.deconvolved, prng), 2)
                row[name + "_s"] = round(time.perf_counter() - t, 1)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [0])
