"""Route (a) to the PSF width: sigma as a trainable parameter of the network.

:class:`LearnableGaussianPSF` replaces the fixed :class:`~.psf.PSFConvolution` inside a
:class:`~.network.DecoNoisingNet`; its sigma (one per spatial axis) is trained with the
weights by the same blind-spot loss. A sigma that shrinks to 0 would make the model
plain Noise2Void, the trivial solution of blind deconvolution; two things keep it away:
sigma lives in ``[min_sigma, max_sigma]`` through a sigmoid, and an optional prior
``prior_weight * mean(log(sigma))^-`` ... is *not* used by default, because the
measurements in docs/benchmarks.md ("PSF width from the data") decide between this
route and the validation-loss search of :mod:`.psf_search`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .model import DecoNoisingModel
from .psf import gaussian_psf
from .train import Trainer

__all__ = ["LearnableGaussianPSF", "learned_sigma_model", "learned_sigma_trainer"]


class LearnableGaussianPSF(nn.Module):
    """Separable Gaussian blur whose sigma (per axis) is a trainable parameter.

    Parameters
    ----------
    sigma : float or sequence of float
        Initial sigma in pixels, one for all axes or one per axis.
    ndim : int
        Number of spatial axes (2 or 3).
    min_sigma, max_sigma : float
        Range sigma is confined to; the kernel radius is ``ceil(4 * max_sigma)``.
    """

    def __init__(self, sigma: float | Sequence[float] = 1.0, ndim: int = 2, min_sigma: float = 0.2,
                 max_sigma: float = 4.0) -> None:
        super().__init__()
        sig = [float(sigma)] * ndim if isinstance(sigma, (int, float)) else [float(s) for s in sigma]
        if len(sig) != ndim or not all(min_sigma < s < max_sigma for s in sig):
            raise ValueError(f"sigma must be {ndim} values in ({min_sigma}, {max_sigma}), got {sigma}")
        self.ndim, self.min_sigma, self.max_sigma = ndim, min_sigma, max_sigma
        frac = [(s - min_sigma) / (max_sigma - min_sigma) for s in sig]
        self.raw = nn.Parameter(torch.tensor([math.log(f / (1 - f)) for f in frac], dtype=torch.float32))
        r = int(math.ceil(4 * max_sigma))
        self.radius = (r,) * ndim
        self.register_buffer("taps", torch.arange(-r, r + 1, dtype=torch.float32), persistent=False)

    @property
    def sigma(self) -> torch.Tensor:
        """Current sigma per axis, in pixels."""
        return self.min_sigma + (self.max_sigma - self.min_sigma) * torch.sigmoid(self.raw)

    def sigma_values(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.sigma.detach().cpu())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blur ``x`` of shape (N, 1, *spatial) along every spatial axis (reflect padding)."""
        dtype = x.dtype
        out = x.float()  # a sigma gradient in bf16 is too coarse to move it
        conv = F.conv2d if self.ndim == 2 else F.conv3d
        r = self.radius[0]
        for ax, s in enumerate(self.sigma):
            g = torch.exp(-0.5 * (self.taps / s) ** 2)
            g = g / g.sum()
            shape = [1, 1] + [1] * self.ndim
            shape[2 + ax] = g.numel()
            pad = [0, 0] * self.ndim
            pad[2 * (self.ndim - 1 - ax)] = pad[2 * (self.ndim - 1 - ax) + 1] = r
            out = conv(F.pad(out, pad, mode="reflect"), g.reshape(shape))
        return out.to(dtype)


def learned_sigma_trainer(images: np.ndarray | Sequence[np.ndarray], config: TrainConfig, *,
                          axes: str | None = None, init_sigma: float = 1.0,
                          sigma_lr: float = 1e-2) -> Trainer:
    """A :class:`Trainer` whose network learns the PSF sigma, starting at ``init_sigma``.

    The optimiser gets a separate parameter group for sigma (``sigma_lr``): at the
    weights' learning rate one step moves sigma by about 1e-3 px, too slow for a short run.
    """
    trainer = Trainer(images, config.replace(psf="gaussian", psf_sigma=init_sigma), axes=axes)
    psf = LearnableGaussianPSF(init_sigma, ndim=config.ndim).to(trainer.plan.device)
    trainer.net.psf = psf
    weights = [p for n, p in trainer.net.named_parameters() if not n.startswith("psf.")]
    trainer.optimizer = torch.optim.Adam([{"params": weights, "lr": config.lr},
                                          {"params": list(psf.parameters()), "lr": sigma_lr}])
    trainer.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        trainer.optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience)
    return trainer


def learned_sigma_model(trainer: Trainer) -> DecoNoisingModel:
    """The trainer's best model as an ordinary model with a fixed Gaussian PSF.

    The sigma is the one learned at the best epoch; the U-Net weights were trained
    with exactly that blur, so no retraining is needed.
    """
    model = trainer.model
    state = dict(model.state_dict)
    raw = state.pop("psf.raw")
    psf: LearnableGaussianPSF = trainer.net.psf
    sigma = psf.min_sigma + (psf.max_sigma - psf.min_sigma) * torch.sigmoid(raw.float())
    per_axis = tuple(round(float(s), 4) for s in sigma)
    value = per_axis[0] if len(set(per_axis)) == 1 else per_axis
    config = model.config.replace(psf="gaussian", psf_sigma=value)
    return DecoNoisingModel(config=config, state_dict=state, mean=model.mean, std=model.std,
                            psf=gaussian_psf(per_axis, ndim=config.ndim), history=model.history)
