"""The DecoNoising network: a U-Net that predicts the phantom, then the PSF."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .precondition import wiener_kernel, wiener_radius
from .psf import PSFConvolution
from .unet import UNet, unet_receptive_radius

__all__ = ["DecoNoisingNet"]


class DecoNoisingNet(nn.Module):
    """U-Net followed by a fixed PSF convolution, trained end to end.

    Parameters
    ----------
    psf : numpy.ndarray or None
        Normalised PSF. ``None`` (or a 1-pixel kernel) makes the network plain
        Noise2Void: the denoised signal *is* the U-Net output.
    depth, channels, ndim, pool_z, n2v2, decoder :
        See :class:`~napari_deconoising.core.unet.UNet`.
    wiener_eps : float
        > 0: the phantom is the U-Net output through the fixed Wiener filter of the PSF
        with this regularisation (:mod:`~napari_deconoising.core.precondition`); 0: the
        U-Net output is the phantom. No effect without a PSF.

    The forward pass returns ``(denoised, phantom)``, both shaped like the input.
    """

    def __init__(self, psf: np.ndarray | None, depth: int = 3, channels: int = 64,
                 ndim: int = 2, pool_z: bool = True, n2v2: bool = False, wiener_eps: float = 0.0,
                 decoder: str | None = None) -> None:
        super().__init__()
        self.unet = UNet(depth=depth, channels=channels, ndim=ndim, pool_z=pool_z, n2v2=n2v2, decoder=decoder)
        if psf is None:
            psf = np.ones((1,) * ndim, dtype=np.float32)
        self.psf = PSFConvolution(psf)
        self.wiener_eps = float(wiener_eps)
        self.precondition = (PSFConvolution(wiener_kernel(psf, wiener_eps))
                             if any(wiener_radius(psf.shape, wiener_eps)) else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phantom = self.unet(x)
        # The PSF in fp32 (one channel: cheap) so that reduced precision stays in the U-Net's body.
        with torch.autocast(x.device.type, enabled=False):
            if self.precondition is not None:
                phantom = self.precondition(phantom.float())
            return self.psf(phantom.float()), phantom

    def param_groups(self, lr: float, head_lr_scale: float = 1.0) -> list[dict]:
        """Optimiser parameter groups: the phantom head at ``lr * head_lr_scale``, the rest at ``lr``.

        One group when the scale is 1. See ``TrainConfig.head_lr_scale``.
        """
        if head_lr_scale == 1:
            return [{"params": list(self.parameters()), "lr": lr}]
        head = list(self.unet.head.parameters())
        ids = {id(p) for p in head}
        return [{"params": [p for p in self.parameters() if id(p) not in ids], "lr": lr},
                {"params": head, "lr": lr * head_lr_scale}]

    @property
    def receptive_radius(self) -> tuple[int, ...]:
        """Per spatial axis, how far an output pixel (denoised or phantom) can see into the input."""
        u = self.unet
        extra = (0,) * u.ndim if self.precondition is None else self.precondition.radius
        return tuple(unet_receptive_radius(u.depth, pooled=m > 1, n2v2=u.n2v2) + r + e
                     for m, r, e in zip(u.multiples, self.psf.radius, extra))
