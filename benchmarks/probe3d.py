"""Short 3D DecoNoising probes: one seed, PSNR of the current weights every few hundred steps.

The setup of ``quality3d.py`` (same stack, network, patches and batch), with one knob
changed per run, to find out why 3D DecoNoising starts slower than its Noise2Void mode
(issue 9). Variants that are not engine options are applied here, to the trainer:

* ``--head-lr-scale``: the phantom head (the U-Net's last 1x1 conv) learns at ``lr``
  times this (``TrainConfig.head_lr_scale``);
* ``--precond EPS``: Wiener-preconditioned phantom gradient. The forward pass is
  unchanged; on the way back the gradient reaching the phantom through the PSF is
  filtered with ``(1 + EPS) / (|H|**2 + EPS)`` (``H``: the PSF's transfer function), which
  undoes the ``|H|**2`` slow-down of the modes the PSF damps (see ``quality3d.py
  --attenuation``), at most by ``(1 + EPS) / EPS``;
* ``--truncate``: the Gaussian PSF's half-width in sigmas (the engine uses 4);
* ``--aux-n2v W`` (``quality3d.py``): a second output of the U-Net's 1x1 head fits the noisy
  input directly (Noise2Void's target, undamped by the PSF) at the same blind spots, with
  weight ``W`` in the training loss; the body is shared, so it learns at Noise2Void's pace
  while the phantom keeps the PSF. Validation and prediction use the phantom only;
* ``--psf-ramp STEPS`` (``quality3d.py``): the Gaussian PSF widens linearly from none (Noise2Void)
  to the configured sigma over the first ``STEPS`` optimiser steps, a continuation from the
  fast-learning Noise2Void problem to DecoNoising; the best model is chosen among the epochs
  after the ramp only;
* ``--wiener-phantom EPS`` (``quality3d.py``; the probe that became ``TrainConfig.wiener_eps``,
  which it turns off): the phantom is the U-Net's output passed through a fixed Wiener
  deconvolution, ``z = W u`` with ``W = (1 + EPS) conj(H) / (|H|**2 + EPS)`` (an FFT over the
  reflect-padded patch, where the engine cuts the kernel), so that ``s = h * z`` is ``u``
  low-passed by ``(1 + EPS) |H|**2 / (|H|**2 + EPS)``: the U-Net learns at Noise2Void's pace on
  the modes the PSF passes. Training and prediction both (the class is patched, in this process);
* ``--ema DECAY`` (``quality3d.py``, every method): validation, the best model and the last
  weights use an exponential moving average of the weights (``avg = DECAY * avg + (1 - DECAY)
  * w`` after every step); training continues from the raw weights.

Usage::

    python benchmarks/probe3d.py --steps 200 --every 100            # the default engine
    python benchmarks/probe3d.py --steps 200 --every 100 --lr 3e-3
    python benchmarks/probe3d.py --steps 200 --every 100 --head-lr-scale 10
    python benchmarks/probe3d.py --psf none                          # Noise2Void mode
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from quality3d import SIGMA  # noqa: E402

from napari_deconoising.core import TrainConfig, Trainer  # noqa: E402
from napari_deconoising.core import psf as psf_module  # noqa: E402
from napari_deconoising.core.model import DecoNoisingModel  # noqa: E402
from napari_deconoising.core.sample3d import make_sample_3d  # noqa: E402

# The module, not the train() function the package exports under the same name.
train_module = importlib.import_module("napari_deconoising.core.train")


class _WienerGradient(torch.autograd.Function):
    """Identity forward; backward filters the gradient with ``(1 + eps) / (|H|^2 + eps)``."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, kernel: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(kernel)
        ctx.eps = eps
        return z.view_as(z)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (kernel,) = ctx.saved_tensors
        dims = tuple(range(2, g.ndim))
        size = g.shape[2:]
        h2 = torch.fft.rfftn(kernel, s=size).abs() ** 2
        gain = (1 + ctx.eps) / (h2 + ctx.eps)
        return torch.fft.irfftn(torch.fft.rfftn(g, dim=dims) * gain, s=size, dim=dims), None, None


def _precondition(trainer: Trainer, eps: float) -> None:
    net, kernel = trainer.net, torch.from_numpy(trainer.psf)

    def forward(x: torch.Tensor):
        phantom = net.unet(x)
        z = _WienerGradient.apply(phantom.float(), kernel, eps) if net.training else phantom.float()
        return net.psf(z), phantom

    net.forward = forward


def _wiener_kernel(kernel: torch.Tensor, shape: tuple[int, ...], eps: float) -> torch.Tensor:
    """``(1 + eps) conj(H) / (|H|^2 + eps)`` on an FFT grid of ``shape`` (``kernel`` flipped, centred)."""
    k = torch.zeros(shape, dtype=torch.float32)
    k[tuple(slice(0, n) for n in kernel.shape)] = kernel.flip(tuple(range(kernel.ndim)))
    k = torch.roll(k, tuple(-(n // 2) for n in kernel.shape), tuple(range(kernel.ndim)))
    h = torch.fft.rfftn(k)
    return (1 + eps) * h.conj() / (h.abs() ** 2 + eps)


def wiener_phantom(eps: float) -> None:
    """Patch ``DecoNoisingNet`` so that its phantom is ``W`` applied to the U-Net output (see the docstring)."""
    from napari_deconoising.core.network import DecoNoisingNet

    if getattr(DecoNoisingNet, "_wiener_eps", None) is not None:
        raise RuntimeError("the Wiener phantom is already patched in")
    DecoNoisingNet._wiener_eps = eps
    orig_forward = DecoNoisingNet.forward
    orig_radius = DecoNoisingNet.receptive_radius

    def forward(self, x: torch.Tensor):
        if all(r == 0 for r in self.psf.radius):  # Noise2Void mode: nothing to undo
            return orig_forward(self, x)
        u = self.unet(x)
        with torch.autocast(x.device.type, enabled=False):
            u = u.float()
            kernel = self.psf.kernel[0, 0]  # stored flipped; _wiener_kernel flips it back
            pad = [min(r, n - 1) for r, n in zip(self.psf.radius, u.shape[2:])]
            up = torch.nn.functional.pad(u, [p for r in reversed(pad) for p in (r, r)], mode="reflect")
            size = tuple(up.shape[2:])
            w = _wiener_kernel(kernel.cpu(), size, eps).to(u.device)
            dims = tuple(range(2, up.ndim))
            z = torch.fft.irfftn(torch.fft.rfftn(up, dim=dims) * w, s=size, dim=dims)
            z = z[(slice(None), slice(None), *(slice(p, p + n) for p, n in zip(pad, u.shape[2:])))]
            return self.psf(z), z

    DecoNoisingNet.forward = forward
    # The fixed layer reaches about as far as the PSF again: tiles get that much more halo.
    DecoNoisingNet.receptive_radius = property(
        lambda self: tuple(r + p for r, p in zip(orig_radius.fget(self), self.psf.radius)))


def _aux_head(trainer: Trainer, weight: float) -> None:
    """Give the U-Net a second, directly supervised output (see the module docstring)."""
    from napari_deconoising.core.loss import deconoising_loss, masked_mse

    net = trainer.net
    old = net.unet.head
    head = type(old)(old.in_channels, 2, 1)
    with torch.no_grad():
        head.weight[:1].copy_(old.weight)
        head.bias[:1].copy_(old.bias)
        torch.nn.init.normal_(head.weight[1:], std=1e-2)
        head.bias[1:].zero_()
    net.unet.head = head
    cfg = trainer.config
    groups = net.param_groups(cfg.learning_rate, cfg.head_learning_rate_scale)
    trainer.optimizer = torch.optim.Adam(groups, lr=cfg.learning_rate)
    trainer.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        trainer.optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience)

    def forward(x: torch.Tensor):
        out = net.unet(x)
        net.aux_output = out[:, 1:]
        phantom = out[:, :1]
        return net.psf(phantom.float()), phantom

    def forward_loss(x, masked, mask, train=False):
        denoised, phantom = net(masked)
        total, mse, pos = deconoising_loss(denoised, phantom, x, mask, cfg.positivity, trainer._zero_level)
        if net.training:  # validation scores the phantom's denoised output only, as the engine does
            total = total + weight * masked_mse(net.aux_output, x, mask)
        return total, mse, pos

    net.forward = forward
    trainer._forward_loss = forward_loss


def phantom_only(state: dict) -> dict:
    """A state dict of ``_aux_head``'s network as the engine's one-output network."""
    return {k: (v[:1] if k in ("unet.head.weight", "unet.head.bias") else v) for k, v in state.items()}


def _psf_ramp(trainer: Trainer, steps: int) -> None:
    """Widen the Gaussian PSF from none to the configured sigma over the first ``steps`` steps."""
    from napari_deconoising.core.psf import PSFConvolution, gaussian_psf

    net, cfg, orig_step = trainer.net, trainer.config, trainer._step
    sigma = cfg.sigma_per_axis
    done = [0]

    def step() -> float:
        t = done[0]
        done[0] += 1
        if t <= steps:
            f = min(1.0, t / steps)
            psf = gaussian_psf(tuple(f * s for s in sigma), ndim=cfg.ndim)
            net.psf = PSFConvolution(psf).to(trainer.plan.device)
            if t == steps:  # epochs trained with a narrower PSF do not count as the best model
                trainer.best_val, trainer._best_state = math.inf, None
        return orig_step()

    trainer._step = step


def _ema(trainer: Trainer, decay: float) -> None:
    """Validate, choose and return an exponential moving average of the weights."""
    net = trainer.net
    avg = {k: v.detach().clone() for k, v in net.state_dict().items()}
    stash: list[dict] = []
    orig_step, orig_val = trainer._step, trainer.validation_loss

    def step() -> float:
        if stash:  # training goes on from the raw weights, not the average
            net.load_state_dict(stash.pop())
        loss = orig_step()
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if v.dtype.is_floating_point:
                    avg[k].mul_(decay).add_(v, alpha=1 - decay)
                else:
                    avg[k].copy_(v)
        return loss

    def validation_loss() -> float:
        # The average stays in the network until the next step, so that the trainer's
        # best-state copy (taken right after validation) is the average too.
        stash.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        net.load_state_dict(avg)
        return orig_val()

    trainer._step, trainer.validation_loss = step, validation_loss


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=100, help="evaluate every this many steps (a multiple of 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--psf", default="gaussian", choices=["gaussian", "none"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--head-lr-scale", type=float, default=1.0)
    ap.add_argument("--precond", type=float, default=None, metavar="EPS")
    ap.add_argument("--truncate", type=float, default=4.0)
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 160, 160])
    ap.add_argument("--smoke", action="store_true", help="a tiny run to check the script works")
    args = ap.parse_args(argv)
    patch, batch, channels = (16, 64, 64), 4, 16
    if args.smoke:
        args.steps, args.every, args.shape, patch, batch, channels = 10, 10, [8, 40, 40], (8, 32, 32), 2, 4
    if args.truncate != 4.0:
        train_module.gaussian_psf = functools.partial(psf_module.gaussian_psf, truncate=args.truncate)
    s = make_sample_3d(tuple(args.shape), sigma=SIGMA, seed=args.seed)
    cfg = TrainConfig(ndim=3, psf=args.psf, psf_sigma=SIGMA, patch_size=patch, batch_size=batch, depth=2,
                      channels=channels, seed=args.seed, precision="fp32", device="cpu", steps_per_epoch=10,
                      epochs=max(1, args.steps // 10), lr=args.lr,
                      head_lr_scale=args.head_lr_scale)
    trainer = Trainer(s.noisy, cfg, axes="ZYX")
    try:
        if args.precond is not None:
            _precondition(trainer, args.precond)
        rows: list[dict] = []
        cpu0 = time.process_time()
        for ev in trainer.run():
            if ev.kind != "epoch" or ev.step % args.every:
                continue
            train_cpu = time.process_time() - cpu0
            state = {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}
            current = DecoNoisingModel(config=trainer.config, state_dict=state, mean=trainer.mean,
                                       std=trainer.std, psf=None if trainer.psf is None else trainer.psf.copy())
            pred = current.predict(s.noisy, "ZYX", device="cpu", precision="fp32")
            rows.append({"step": ev.step, "denoised": common.psnr(s.clean, pred.denoised),
                         "deconvolved": common.psnr(s.phantom, pred.deconvolved), "val_loss": ev.val_loss,
                         "lr": ev.lr, "train_cpu_s": train_cpu})
            print(json.dumps(rows[-1]), flush=True)
            cpu0 += time.process_time() - cpu0 - train_cpu  # evaluation is not training time
    finally:
        train_module.gaussian_psf = psf_module.gaussian_psf
    return rows


if __name__ == "__main__":
    main()
