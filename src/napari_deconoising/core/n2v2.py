"""The two N2V2 building blocks (Hoeck et al., 2022), for 2D and 3D.

Blind-spot networks leave high-frequency artefacts (checkerboards). N2V2 traces them
to max pooling, which aliases, to the top-level skip connection, which hands the
un-masked input's pixel grid straight to the output, and to blind spots replaced by a
random neighbour, whose value the network can learn to undo. The remedies:

* :class:`MaxBlurPool`: a max over 2-pixel windows at stride 1, then a [1, 2, 1] blur
  that subsamples by 2 (Zhang 2019, "Making convolutional networks shift-invariant
  again"), instead of 2x2 max pooling;
* no top-level skip connection (in :class:`~napari_deconoising.core.unet.UNet`);
* :func:`median_blind_spots`: each blind spot takes the median of its neighbourhood
  (without itself and without other blind spots).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .masking import blind_spot_mask

__all__ = ["MaxBlurPool", "median_blind_spots"]


class MaxBlurPool(nn.Module):
    """Anti-aliased max pooling by 2 along the chosen axes.

    Parameters
    ----------
    ndim : int
        Spatial dimensions (2 or 3).
    factor : int or sequence of int
        2 (every axis) or per axis 1 or 2; an axis with 1 is left alone (Z of a 3D
        U-Net that does not pool Z).

    Inputs must have an even size along every pooled axis (the U-Net pads to that).
    """

    def __init__(self, ndim: int = 2, factor: int | Sequence[int] = 2) -> None:
        super().__init__()
        f = (factor,) * ndim if isinstance(factor, int) else tuple(factor)
        if len(f) != ndim or any(v not in (1, 2) for v in f):
            raise ValueError(f"factor must be 2 or {ndim} values of 1 or 2, got {factor}")
        self.ndim, self.pooled = ndim, tuple(v == 2 for v in f)
        self.register_buffer("taps", torch.tensor([0.25, 0.5, 0.25]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_end = []
        for p in reversed(self.pooled):
            pad_end += [0, 1 if p else 0]
        window = tuple(2 if p else 1 for p in self.pooled)
        pool = F.max_pool2d if self.ndim == 2 else F.max_pool3d
        x = pool(F.pad(x, pad_end, mode="replicate"), window, stride=1)
        conv = F.conv2d if self.ndim == 2 else F.conv3d
        channels = x.shape[1]
        for ax, p in enumerate(self.pooled):
            if not p:
                continue
            shape = [channels, 1] + [1] * self.ndim
            shape[2 + ax] = 3
            stride = [1] * self.ndim
            stride[ax] = 2
            pad = [0, 0] * self.ndim
            pad[2 * (self.ndim - 1 - ax)] = pad[2 * (self.ndim - 1 - ax) + 1] = 1
            w = self.taps.to(x.dtype).reshape([1, 1] + shape[2:]).expand(shape)
            x = conv(F.pad(x, pad, mode="reflect"), w, stride=tuple(stride), groups=channels)
        return x


def median_blind_spots(
    x: torch.Tensor,
    fraction: float = 0.03125,
    radius: int = 2,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blind spots replaced by the median of their neighbourhood (N2V2).

    Same spots and return values as :func:`~napari_deconoising.core.masking.apply_blind_spots`;
    the neighbourhood is the ``(2 * radius + 1)``-wide box around the spot, mirrored at
    the patch border, without the spot itself and without other blind spots (their
    true values must not enter the network).
    """
    spots, sources = blind_spot_mask((x.shape[0], *x.shape[2:]), fraction, radius, generator=generator,
                                     device=x.device)
    return median_spots(x, spots, sources, radius)


def median_spots(x: torch.Tensor, spots: torch.Tensor, sources: torch.Tensor,
                 radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the ``spots`` of ``x`` (from :func:`.masking.blind_spot_mask`) by the median of their
    neighbourhood; ``sources`` serve only where every neighbour is a spot. Returns ``(masked, mask)``."""
    batch, spatial = x.shape[0], tuple(x.shape[2:])
    ndim = len(spatial)
    b, pos = spots[:, 0], spots[:, 1:]
    is_spot = torch.zeros((batch, *spatial), dtype=torch.bool, device=x.device)
    is_spot[(b, *pos.unbind(1))] = True
    r = torch.arange(-radius, radius + 1, device=x.device)
    off = torch.stack(torch.meshgrid(*([r] * ndim), indexing="ij"), dim=-1).reshape(-1, ndim)
    off = off[(off != 0).any(dim=1)]  # (M, ndim), not the spot itself
    cand = pos[:, None, :] + off[None]
    size = torch.tensor(spatial, device=x.device)
    cand = torch.where((cand < 0) | (cand >= size), pos[:, None, :] - off[None], cand)
    bb = b[:, None].expand(-1, off.shape[0])
    idx = (bb, *cand.unbind(-1))
    vals = x[:, 0][idx].float()
    vals = torch.where(is_spot[idx], torch.full_like(vals, float("nan")), vals)
    med = torch.nanmedian(vals, dim=1).values
    fallback = x[:, 0][(sources[:, 0], *sources[:, 1:].unbind(1))].float()
    med = torch.where(torch.isnan(med), fallback, med)  # every neighbour a spot: not seen, but safe
    masked = x.clone()
    zero = torch.zeros_like(b)
    spot_idx = (b, zero, *pos.unbind(1))
    masked[spot_idx] = med.to(x.dtype)
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[spot_idx] = True
    return masked, mask
