"""The network as bioimage.io's ``pytorch_state_dict`` weights need it.

A bioimage.io consumer builds the architecture from keyword arguments written into
``rdf.yaml`` and then loads the state dict. :class:`DecoNoisingNet` keeps its PSF in a
non-persistent buffer (the ``.pt`` file stores the PSF separately), so this subclass adds
the PSF as a persistent buffer: the weights file alone then restores the whole model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..core.network import DecoNoisingNet

__all__ = ["BioimageioDecoNoisingNet", "PSF_KEY", "ARCHITECTURE", "CONFIG_KEY"]

PSF_KEY = "psf_kernel"
#: Key of our own data (training config, normalisation, history) in rdf.yaml's ``config``.
CONFIG_KEY = "napari_deconoising"


class BioimageioDecoNoisingNet(DecoNoisingNet):
    """:class:`DecoNoisingNet` whose state dict includes the PSF.

    Parameters
    ----------
    depth, channels, ndim :
        The U-Net's; see :class:`~napari_deconoising.core.unet.UNet`.
    psf_shape : sequence of int, optional
        Shape of the PSF (odd sizes). The values come from the state dict's
        ``psf_kernel`` entry; until it is loaded the PSF is a delta (identity).
        Omitted or all ones: a Noise2Void model without PSF.

    The forward pass returns ``(denoised, deconvolved)`` like :class:`DecoNoisingNet`.
    """

    def __init__(self, depth: int = 3, channels: int = 64, ndim: int = 2,
                 psf_shape: Sequence[int] | None = None) -> None:
        shape = tuple(int(n) for n in psf_shape) if psf_shape else (1,) * ndim
        delta = np.zeros(shape, np.float32)
        delta[tuple(n // 2 for n in shape)] = 1.0
        super().__init__(delta, depth=depth, channels=channels, ndim=ndim)
        self.register_buffer(PSF_KEY, torch.from_numpy(delta))
        self.register_load_state_dict_post_hook(_sync_psf)

    @classmethod
    def from_parts(cls, state_dict: dict[str, torch.Tensor], psf: np.ndarray | None, *,
                   depth: int, channels: int, ndim: int) -> BioimageioDecoNoisingNet:
        """Build the network from a model's weights and PSF (``None``: Noise2Void)."""
        kernel = np.ones((1,) * ndim, np.float32) if psf is None else np.asarray(psf, np.float32)
        net = cls(depth=depth, channels=channels, ndim=ndim, psf_shape=kernel.shape)
        net.load_state_dict({**state_dict, PSF_KEY: torch.from_numpy(kernel.copy())})
        return net.eval()

    def network_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights as :class:`DecoNoisingNet` (and the ``.pt`` file) hold them."""
        return {k: v for k, v in self.state_dict().items() if k != PSF_KEY}


def _sync_psf(module: BioimageioDecoNoisingNet, incompatible_keys) -> None:
    # The convolution keeps its own flipped copy (torch's conv is a correlation).
    # (A PSF of another shape never gets here: load_state_dict reports the size mismatch.)
    kernel = getattr(module, PSF_KEY)
    with torch.no_grad():
        module.psf.kernel.copy_(torch.flip(kernel, tuple(range(kernel.ndim)))[None, None])


#: ``import_from`` and ``callable`` of the pytorch_state_dict architecture in rdf.yaml.
ARCHITECTURE = (BioimageioDecoNoisingNet.__module__, BioimageioDecoNoisingNet.__name__)
