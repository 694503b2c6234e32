"""The default learning rate, by the width of the network's widest convolution."""

from __future__ import annotations

__all__ = ["default_lr"]


def default_lr(ndim: int, channels: int) -> float:
    """The default Adam learning rate for a U-Net of ``channels`` first-layer channels.

    The paper's 1e-3 belongs to its 2D network, whose widest first-level convolution
    sums ``64 * 3**2 = 576`` inputs. Adam moves every weight by about the learning rate
    per step, so a layer summing more inputs changes its output more per step; the rate
    is scaled down by that fan-in and never raised: 1e-3 for every 2D network up to 64
    channels and 3D networks up to 21, 6.7e-4 for 3D at 32 channels, 3.3e-4 for 3D at 64
    (the 3D default). Measured in 3D (docs/benchmarks.md, "the learning rate of wide 3D
    networks"): at 64 channels 3e-4 gave 4.3 dB more than 1e-3 after 600 steps; at 16
    channels 1e-3 was the better of the two.

    Parameters
    ----------
    ndim : {2, 3}
        Spatial dimensions of the convolutions.
    channels : int
        First-layer channels of the U-Net.

    Returns
    -------
    float
        ``1e-3 * min(1, 576 / (channels * 3**ndim))``.
    """
    return 1e-3 * min(1.0, 576 / (channels * 3**ndim))
