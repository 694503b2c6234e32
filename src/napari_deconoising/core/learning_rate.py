"""The default learning rate, by the width of the network's widest convolution."""

from __future__ import annotations

__all__ = ["default_head_lr_scale", "default_lr"]


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


def default_head_lr_scale(ndim: int, channels: int) -> float:
    """The default ratio of the phantom head's learning rate to the rest of the network's.

    The head is a 1x1 convolution over ``channels`` inputs, far fewer than the 3x3(x3)
    convolutions that :func:`default_lr` scales down for, so the same fan-in rule gives
    it ``1e-3 * min(1, 576 / channels)``: the paper's 1e-3 up to 576 channels. The
    ratio is 1 wherever the body already trains at that rate (every 2D network up to 64
    channels, 3D up to 21), 1.5 for 3D at 32 channels and 3 for the 3D default of 64.
    Measured at the 3D default (docs/benchmarks.md, "the phantom head at the paper's
    rate"): 3D DecoNoising ahead of its Noise2Void mode on four seeds of four, where one
    rate left it behind on one of them.

    Parameters
    ----------
    ndim : {2, 3}
        Spatial dimensions of the convolutions.
    channels : int
        First-layer channels of the U-Net (the head's inputs).

    Returns
    -------
    float
        ``1e-3 * min(1, 576 / channels) / default_lr(ndim, channels)``, at least 1.
    """
    return max(1.0, 1e-3 * min(1.0, 576 / channels) / default_lr(ndim, channels))
