"""The DecoNoising training objective."""

from __future__ import annotations

import math

import torch

__all__ = ["masked_mse", "positivity_penalty", "deconoising_loss", "finite_loss"]


def masked_mse(denoised: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between prediction and noisy input at blind spots only."""
    # Weighted by the mask rather than indexed with it: the same mean without a result of
    # data-dependent size, which a CUDA graph cannot record (:mod:`.cuda_graph`).
    diff = denoised.float() - target.float()
    weight = mask.to(diff.dtype)
    return (diff * diff * weight).sum() / weight.sum()


def positivity_penalty(phantom: torch.Tensor, zero_level: float = 0.0) -> torch.Tensor:
    """``mean(max(0, -(phantom + zero_level)))`` over all pixels.

    Training works on normalised data ``(x - mean) / std``, where intensity 0 sits at
    ``-mean / std``; pass ``zero_level = mean / std`` so that the penalty acts on
    physically negative fluorophore density, measured in units of the data's std
    (independent of the image's intensity units).
    """
    return torch.relu(-(phantom.float() + zero_level)).mean()


def deconoising_loss(
    denoised: torch.Tensor,
    phantom: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    positivity: float = 1.0,
    zero_level: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total loss, and its two parts (masked MSE, positivity penalty)."""
    mse = masked_mse(denoised, target, mask)
    pos = positivity_penalty(phantom, zero_level) if positivity > 0 else mse.new_zeros(())
    return mse + positivity * pos, mse, pos


def finite_loss(loss: float) -> float:
    """``loss``, or a clear error when training has diverged (it is not finite)."""
    if not math.isfinite(loss):
        raise FloatingPointError(
            "training diverged (loss is not finite); try a lower learning rate or precision='fp32'")
    return loss
