"""The network as bioimage.io's ``pytorch_state_dict`` weights need it.

A bioimage.io consumer builds the architecture from keyword arguments written into
``rdf.yaml`` and then loads the state dict. :class:`DecoNoisingNet` keeps its PSF in a
non-persistent buffer (the ``.pt`` file stores the PSF separately), so this subclass adds
the PSF as a persistent buffer: the weights file alone then restores the whole model.
:class:`BioimageioChannelNet` holds one such network per channel, for a model per channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.network import DecoNoisingNet
from ..core.precondition import wiener_kernel

__all__ = ["BioimageioDecoNoisingNet", "BioimageioChannelNet", "PSF_KEY", "ARCHITECTURE", "CHANNEL_ARCHITECTURE",
           "CONFIG_KEY"]

PSF_KEY = "psf_kernel"
#: Key of our own data (training config, normalisation, history) in rdf.yaml's ``config``.
CONFIG_KEY = "napari_deconoising"


class BioimageioDecoNoisingNet(DecoNoisingNet):
    """:class:`DecoNoisingNet` whose state dict includes the PSF.

    Parameters
    ----------
    depth, channels, ndim, pool_z, n2v2, decoder :
        The U-Net's; see :class:`~napari_deconoising.core.unet.UNet`. ``pool_z``, ``n2v2``
        and ``decoder`` change the computation without changing the weights' shapes (pooling
        over Z) or with (N2V2, the decoder), so they are part of the architecture's arguments.
    psf_shape : sequence of int, optional
        Shape of the PSF (odd sizes). The values come from the state dict's
        ``psf_kernel`` entry; until it is loaded the PSF is a delta (identity).
        Omitted or all ones: a Noise2Void model without PSF.
    wiener_eps : float
        The preconditioned phantom's regularisation (``TrainConfig.wiener_eps``; 0: off).
        Its filter is computed from the PSF whenever the PSF is loaded.

    The forward pass returns ``(denoised, deconvolved)`` like :class:`DecoNoisingNet`.
    """

    def __init__(self, depth: int = 3, channels: int = 64, ndim: int = 2,
                 psf_shape: Sequence[int] | None = None, pool_z: bool = True, n2v2: bool = False,
                 wiener_eps: float = 0.0, decoder: str = "wide") -> None:
        shape = tuple(int(n) for n in psf_shape) if psf_shape else (1,) * ndim
        delta = np.zeros(shape, np.float32)
        delta[tuple(n // 2 for n in shape)] = 1.0
        super().__init__(delta, depth=depth, channels=channels, ndim=ndim, pool_z=pool_z, n2v2=n2v2,
                         wiener_eps=wiener_eps, decoder=decoder)
        self.register_buffer(PSF_KEY, torch.from_numpy(delta))
        self.register_load_state_dict_post_hook(_sync_psf)

    @classmethod
    def from_parts(cls, state_dict: dict[str, torch.Tensor], psf: np.ndarray | None, *, depth: int, channels: int,
                   ndim: int, pool_z: bool = True, n2v2: bool = False,
                   wiener_eps: float = 0.0, decoder: str = "wide") -> BioimageioDecoNoisingNet:
        """Build the network from a model's weights and PSF (``None``: Noise2Void)."""
        kernel = np.ones((1,) * ndim, np.float32) if psf is None else np.asarray(psf, np.float32)
        net = cls(depth=depth, channels=channels, ndim=ndim, psf_shape=kernel.shape, pool_z=pool_z, n2v2=n2v2,
                  wiener_eps=wiener_eps, decoder=decoder)
        net.load_state_dict({**state_dict, PSF_KEY: torch.from_numpy(kernel.copy())})
        return net.eval()

    def network_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights as :class:`DecoNoisingNet` (and the ``.pt`` file) hold them."""
        return {k: v for k, v in self.state_dict().items() if k != PSF_KEY}


def _sync_psf(module: BioimageioDecoNoisingNet, incompatible_keys) -> None:
    # The convolution keeps its own flipped copy (torch's conv is a correlation).
    # (A PSF of another shape never gets here: load_state_dict reports the size mismatch.)
    kernel = getattr(module, PSF_KEY)
    dims = tuple(range(kernel.ndim))
    with torch.no_grad():
        module.psf.kernel.copy_(torch.flip(kernel, dims)[None, None])
        if module.precondition is not None:
            w = torch.from_numpy(wiener_kernel(kernel.cpu().numpy(), module.wiener_eps))
            module.precondition.kernel.copy_(torch.flip(w, dims)[None, None])


class BioimageioChannelNet(nn.Module):
    """One :class:`BioimageioDecoNoisingNet` per channel: channel k of the input goes through network k.

    Parameters
    ----------
    nets : sequence of dict
        Each channel's :class:`BioimageioDecoNoisingNet` keyword arguments, in channel order.

    The forward pass takes ``(batch, C, ...)`` and returns ``(denoised, deconvolved)``, each
    ``(batch, C, ...)``. The state dict holds network k's entries under ``nets.k.``.
    """

    def __init__(self, nets: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        if not nets:
            raise ValueError("BioimageioChannelNet needs at least one channel's network")
        self.nets = nn.ModuleList(BioimageioDecoNoisingNet(**dict(kw)) for kw in nets)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [net(x[:, k:k + 1]) for k, net in enumerate(self.nets)]
        return torch.cat([d for d, _ in outs], dim=1), torch.cat([p for _, p in outs], dim=1)


#: ``import_from`` and ``callable`` of the pytorch_state_dict architecture in rdf.yaml.
ARCHITECTURE = (BioimageioDecoNoisingNet.__module__, BioimageioDecoNoisingNet.__name__)
#: The same for a model per channel.
CHANNEL_ARCHITECTURE = (BioimageioChannelNet.__module__, BioimageioChannelNet.__name__)
