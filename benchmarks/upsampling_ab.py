"""A/B test of the U-Net's upsampling: checkerboard in the deconvolved image.

Usage::

    python benchmarks/upsampling_ab.py {transpose,bilinear} {nuclei,filaments} STEPS

Trains the demo-size network (depth 2, 32 channels, 16 patches of 64 px) for STEPS steps on a
sample and prints the PSNR of the denoised image (vs clean) and of the deconvolved image (vs the
phantom), and the checkerboard energy of the deconvolved image: mean |z00 + z11 - z01 - z10| over
2x2 blocks divided by mean |z|. Numbers in docs/engine.md ("Bilinear upsampling") come from
``nuclei 300`` with both modes.
"""

import functools
import sys
import time

import numpy as np

import napari_deconoising.core.network as network
from napari_deconoising._sample_data import NUCLEI_SIGMA, load_nuclei_crop, make_noisy
from napari_deconoising.core import TrainConfig, make_sample, psnr, train
from napari_deconoising.core.unet import UNet


def main() -> None:
    mode, which, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    network.UNet = functools.partial(UNet, upsampling=mode)
    if which == "nuclei":
        noisy, clean, phantom = make_noisy(load_nuclei_crop(), NUCLEI_SIGMA, seed=0)
        sigma = NUCLEI_SIGMA
    else:
        s = make_sample((256, 256), sigma=1.5, seed=0)
        noisy, clean, phantom, sigma = s.noisy, s.clean, s.phantom, 1.5
    cfg = TrainConfig(depth=2, channels=32, patch_size=64, batch_size=16, steps_per_epoch=10,
                      epochs=max(1, steps // 10), psf_sigma=sigma)
    t = time.time()
    model = train(noisy, cfg)
    pred = model.predict(noisy, device="cpu")
    z = pred.deconvolved
    cb = np.abs(z[0:-1:2, 0:-1:2] + z[1::2, 1::2] - z[0:-1:2, 1::2] - z[1::2, 0:-1:2]).mean() / np.abs(z).mean()
    print(f"{which} {mode}: denoised {psnr(clean, pred.denoised):.2f} dB, deconvolved vs phantom "
          f"{psnr(phantom, z):.2f} dB, checkerboard {cb:.4f}, {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
