"""PSF width from the data (``--psf-sigma auto``): sigma as a trainable parameter.

:class:`LearnableGaussianPSF` replaces the fixed :class:`~.psf.PSFConvolution` inside a
:class:`~.network.DecoNoisingNet`; its sigma (one per spatial axis) is trained with the
weights by the same blind-spot loss.

What the estimate is, and its limits (measured in docs/benchmarks.md, "PSF width from
the data"): the blind-spot loss is steep above the true sigma (a PSF wider than the
truth cannot produce the image's sharpest detail) and nearly flat below it (a narrower
PSF only asks for a blurrier phantom), and at a few hundred steps its minimum lies
*below* the truth: a sigma free to move (``param="log"``, rate 2e-2) settled at 0.5 to
0.67 times the true sigma in all six benchmark cases. The loss alone therefore does not
identify sigma. What is used instead is a *descent at limited speed* from a wide start
(:data:`INIT_SIGMA`, sigmoid parameter, rate 1e-2), taking the sigma of the best
validation epoch: it walks down the steep side and slows where the loss flattens, near
the truth, but keeps sinking in longer runs (1.19 px after 2000 steps where 300 steps
gave 1.43, true 1.5). A weak pull towards wider PSFs (:data:`SIGMA_PULL`, a prior for the
widest sigma that explains the data) holds it nearer the truth: within 0.15 px in 11 of 18
benchmark runs instead of 7; its best weight depends on the data (0.01 with a free sigma
was right on filaments and too strong on text). Hence the learning run always has :data:`ESTIMATE_STEPS` steps
(:func:`estimation_config`), the budget the accuracy was measured with, and the model
is then trained in full with the estimate fixed. Started at 1 px on data blurred with
1.5 px it went *down* to 0.8 px, which is why the start is wide. The validation-loss
search of :mod:`.psf_search` picks about 1 px whatever the truth, for the same reason.
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
from .psf import _reflect_pad, gaussian_psf
from .train import Trainer

__all__ = ["DEFAULT_SIGMA", "ESTIMATE_STEPS", "INIT_SIGMA", "SIGMA_PULL", "LearnableGaussianPSF", "LearnedSigmaTrainer",
           "estimation_config", "learned_sigma_model", "learned_sigma_trainer", "sigma_text"]


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
    param : {"sigmoid", "log"}
        The trained parameter: a logit of sigma's place in its range, or log(sigma)
        (clamped to the range).
    """

    def __init__(self, sigma: float | Sequence[float] = 1.0, ndim: int = 2, min_sigma: float = 0.2,
                 max_sigma: float = 4.0, param: str = "sigmoid") -> None:
        super().__init__()
        sig = [float(sigma)] * ndim if isinstance(sigma, (int, float)) else [float(s) for s in sigma]
        if len(sig) != ndim or not all(min_sigma < s < max_sigma for s in sig):
            raise ValueError(f"sigma must be {ndim} values in ({min_sigma}, {max_sigma}), got {sigma}")
        self.ndim, self.min_sigma, self.max_sigma, self.param = ndim, min_sigma, max_sigma, param
        frac = [(s - min_sigma) / (max_sigma - min_sigma) for s in sig]
        raw = [math.log(f / (1 - f)) for f in frac] if param == "sigmoid" else [math.log(s) for s in sig]
        self.raw = nn.Parameter(torch.tensor(raw, dtype=torch.float32))
        r = int(math.ceil(4 * max_sigma))
        self.radius = (r,) * ndim
        self.register_buffer("taps", torch.arange(-r, r + 1, dtype=torch.float32), persistent=False)

    @property
    def sigma(self) -> torch.Tensor:
        """Current sigma per axis, in pixels."""
        return self.sigma_of(self.raw)

    def sigma_of(self, raw: torch.Tensor) -> torch.Tensor:
        """Sigma per axis for parameter values ``raw`` (e.g. a saved best state)."""
        if self.param == "log":
            return torch.clamp(torch.exp(raw), self.min_sigma, self.max_sigma)
        return self.min_sigma + (self.max_sigma - self.min_sigma) * torch.sigmoid(raw)

    def sigma_values(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.sigma.detach().cpu())

    def log_sigma_slope(self) -> torch.Tensor:
        """d ln(sigma) / d raw per axis, at the current parameter (0 where clamped)."""
        raw = self.raw.detach()
        if self.param == "log":
            s = torch.exp(raw)
            return ((s > self.min_sigma) & (s < self.max_sigma)).to(raw.dtype)
        s = torch.sigmoid(raw)
        return (self.max_sigma - self.min_sigma) * s * (1 - s) / self.sigma_of(raw)

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
            out = conv(_reflect_pad(out, pad), g.reshape(shape))  # repeats the reflection on thin axes
        return out.to(dtype)


#: Where sigma starts: above the blur of most data, see the module docstring.
INIT_SIGMA = 3.0
#: Used when the learned sigma is not trustworthy (the TrainConfig default).
DEFAULT_SIGMA = 1.0
#: Weight of the pull towards wider PSFs (``-SIGMA_PULL * ln(sigma)`` in the loss): with it
#: the estimate was within 0.15 px in 11 of 18 benchmark runs, without it in 7.
SIGMA_PULL = 0.003
#: Optimiser steps of the learning run, whatever the user's budget: sigma keeps sinking
#: below the truth in longer runs (module docstring), so the estimate is taken after the
#: budget it was measured with.
ESTIMATE_STEPS = 300


def estimation_config(config: TrainConfig, steps: int = ESTIMATE_STEPS) -> TrainConfig:
    """``config`` for the learning run: ``config`` itself if it has at most ``steps`` steps,
    else ``steps`` steps in epochs of 10, as measured (the best epoch's sigma is the
    estimate, so the epoch length sets how finely it is picked).
    """
    if config.total_steps <= steps:
        return config
    return config.replace(epochs=max(1, steps // 10), steps_per_epoch=min(10, steps))


class LearnedSigmaTrainer(Trainer):
    """A :class:`Trainer` whose network learns the Gaussian PSF sigma (per axis).

    Every epoch's sigma is added to :attr:`history` (``"psf_sigma"``). :attr:`model`
    is an ordinary model with the sigma of its best epoch fixed (the U-Net weights were
    trained with exactly that blur, so no retraining is needed), and :meth:`estimate`
    says whether that sigma can be trusted.

    Parameters
    ----------
    images, config, axes :
        As for :class:`Trainer`; ``config``'s PSF fields are replaced and its weight average is off.
    init_sigma : float
        Starting sigma in pixels.
    sigma_lr : float
        Learning rate of sigma (its own Adam parameter group): at the weights' rate one
        step moves sigma by about 1e-3 px, too slow for a run of a few hundred steps.
    param : {"sigmoid", "log"}
        Sigma's parameter, see :class:`LearnableGaussianPSF`.
    sigma_pull : float
        Weight of a ``-sigma_pull * ln(sigma)`` term (a pull towards wider PSFs); 0 = off.
        The default, :data:`SIGMA_PULL`, was measured at the default ``param`` and ``sigma_lr``.
    """

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], config: TrainConfig, *,
                 axes: str | None = None, init_sigma: float = INIT_SIGMA, sigma_lr: float = 1e-2,
                 param: str = "sigmoid", sigma_pull: float = SIGMA_PULL) -> None:
        # No weight average: sigma's trail and the best epoch were measured on the raw weights.
        # No preconditioned phantom: its filter belongs to one PSF, and this one moves.
        super().__init__(images, config.replace(psf="gaussian", psf_sigma=init_sigma, weight_average=0.0,
                                                wiener_eps=0.0), axes=axes)
        self.init_sigma = init_sigma
        psf = LearnableGaussianPSF(init_sigma, ndim=self.config.ndim, param=param).to(self.plan.device)
        self.net.psf = psf
        if sigma_pull:
            # Adds -sigma_pull * ln(sigma) to the loss (per backward pass): a prior for the
            # widest sigma that explains the data, since the loss is flat below the truth.
            # The hook sees the gradient as the GradScaler scaled it (fp16), and its step divides
            # by that scale: the pull is scaled alike, or it would be 65536 times too weak.
            scale = sigma_pull / self.config.micro_batches
            psf.raw.register_hook(lambda g: g - scale * self._loss_scale() * psf.log_sigma_slope())
        weights = [p for n, p in self.net.named_parameters() if not n.startswith("psf.")]
        self.optimizer = self._adam([{"params": weights, "lr": self.config.learning_rate},
                                     {"params": list(psf.parameters()), "lr": sigma_lr}])
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=self.config.lr_factor, patience=self.config.lr_patience)

    def _loss_scale(self) -> float:
        """The factor the backward pass's gradients carry: the GradScaler's scale, 1 without one."""
        return 1.0 if self.scaler is None else self.scaler.get_scale()

    def run(self):
        """As :meth:`Trainer.run`, recording sigma after every epoch."""
        gen = super().run()
        try:
            while True:
                ev = next(gen)
                if ev.kind == "epoch":
                    self.history[-1]["psf_sigma"] = [round(v, 4) for v in self.net.psf.sigma_values()]
                yield ev
        except StopIteration as stop:
            return stop.value
        finally:
            gen.close()

    @property
    def model(self) -> DecoNoisingModel:
        """The best model so far, with its learned sigma fixed."""
        model = super().model
        state = dict(model.state_dict)
        raw = state.pop("psf.raw")
        psf: LearnableGaussianPSF = self.net.psf
        per_axis = tuple(round(float(v), 4) for v in psf.sigma_of(raw.float()))
        # One value when the axes agree within the accuracy the estimate has (0.15 px).
        value = round(sum(per_axis) / len(per_axis), 4) if max(per_axis) - min(per_axis) <= 0.15 else per_axis
        config = model.config.replace(psf="gaussian", psf_sigma=value)
        return DecoNoisingModel(config=config, state_dict=state, mean=model.mean, std=model.std,
                                psf=gaussian_psf(config.sigma_per_axis, ndim=config.ndim), history=model.history)

    def estimate(self, default: float = DEFAULT_SIGMA, check_edges: bool = True) -> dict:
        """How far to trust the learned sigma, as plain data for the model file.

        Judged on the sigma trail over the last fifth of the epochs (at least two), not
        on one epoch, which can be a blip. Not clear when sigma spent that part of the run
        near or above its start (median within 0.1 px of it: the data did not pull it
        down), or when the exported sigma, the best validation epoch's, is itself still
        at the start (that epoch came before sigma moved); then ``sigma`` is ``default``.
        A sigma still moving by more than 0.1 px over that part is kept, with a note that
        it is less firm (a longer run would not help: sigma sinks below the truth, see
        the module docstring). With ``check_edges`` the estimate is then checked against
        the width of the data's sharpest lines and edges (:func:`~.psf_check.cross_check`;
        in 3D its lateral sigma).
        """
        found = self._learned_estimate(default)
        if not check_edges:
            return found
        from .psf_check import cross_check, edge_sigma  # scipy, and seconds per image: only when asked

        return cross_check(found, edge_sigma(self.slices), ndim=self.config.ndim)

    def _learned_estimate(self, default: float) -> dict:
        sigma = self.model.config.psf_sigma
        trail = [h["psf_sigma"] for h in self.history if "psf_sigma" in h]
        shown = sigma_text(sigma)
        sigma = sigma if isinstance(sigma, float) else list(sigma)
        near_start = self.init_sigma - 0.1
        tail = trail[-max(2, len(trail) // 5):]
        why = None
        if not trail:
            why = "no epoch finished"
        elif float(np.median([max(t) for t in tail])) > near_start:
            why = f"sigma stayed near or above its start value {self.init_sigma:g} px over the last {len(tail)} epochs"
        elif (max(sigma) if isinstance(sigma, list) else sigma) > near_start:
            why = f"the best validation epoch came before sigma left its start value {self.init_sigma:g} px"
        if why is None:
            moved = max(abs(a - b) for a, b in zip(tail[0], tail[-1]))
            note = (f" (still moving: {moved:.2f} px over the last {len(tail)} epochs of the learning run, "
                    "so less firm)") if moved > 0.1 else ""
            return {"method": "learned", "clear": True, "sigma": sigma, "learned": sigma,
                    "message": f"PSF sigma learned from the data: {shown} px{note}"}
        return {"method": "learned", "clear": False, "sigma": default, "learned": sigma,
                "message": f"PSF sigma: the data gave no clear answer ({why}; learned {shown} px); "
                           f"using the default {default:g} px. A PSF measured on beads avoids the guess "
                           "('deconoising beads', or Measure PSF from beads in napari)"}


def sigma_text(sigma: float | Sequence[float]) -> str:
    """A sigma for messages: ``"1.57"``, or ``"2.09 x 2.25"`` per axis."""
    return f"{sigma:.2f}" if isinstance(sigma, (int, float)) else " x ".join(f"{v:.2f}" for v in sigma)


def learned_sigma_trainer(images: np.ndarray | Sequence[np.ndarray], config: TrainConfig, *,
                          axes: str | None = None, init_sigma: float = INIT_SIGMA,
                          sigma_lr: float = 1e-2, param: str = "sigmoid",
                          sigma_pull: float = SIGMA_PULL) -> LearnedSigmaTrainer:
    """Same as ``LearnedSigmaTrainer(images, config, ...)`` (kept for the benchmark script)."""
    return LearnedSigmaTrainer(images, config, axes=axes, init_sigma=init_sigma, sigma_lr=sigma_lr, param=param,
                               sigma_pull=sigma_pull)


def learned_sigma_model(trainer: LearnedSigmaTrainer) -> DecoNoisingModel:
    """The trainer's best model with the learned sigma fixed (``trainer.model``)."""
    return trainer.model
