"""The PSF convolution's algorithms timed per kernel size (part of ``benchmarks/speed.py``)."""

from __future__ import annotations

import time

import numpy as np


def psf_methods(
    sizes=(5, 9, 15, 21, 31), batch: int = 20, side: int = 100, repeats: int = 5
) -> list[dict]:
    """Forward+backward time of the PSF convolution per algorithm and kernel size.

    A non-separable kernel (a Gaussian times a ring) stands for a measured PSF; this
    is the measurement behind ``core.psf.FFT_MIN_TAPS`` (direct below, FFT above).
    """
    import torch

    from napari_deconoising.core import PSFConvolution

    rows = []
    for n in sizes:
        r = np.hypot(*np.mgrid[-(n // 2) : n // 2 + 1, -(n // 2) : n // 2 + 1])
        k = np.exp(-0.5 * (r / max(1.0, n / 6)) ** 2) * (1 + 0.3 * np.cos(r))
        row = {"what": "psf", "size": n, "taps": n * n}
        for method in ("direct", "fft"):
            conv = PSFConvolution(k / k.sum(), method=method)
            x = torch.randn(batch, 1, side, side, requires_grad=True)
            conv(x).sum().backward()
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                conv(x).sum().backward()
                best = min(best, time.perf_counter() - t0)
            row[method] = best
        rows.append(row)
    return rows
