"""The rules a :class:`~.config.TrainConfig` must satisfy, checked once when it is made."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import TrainConfig

# The U-Net decoder layouts (see :class:`~.unet.UNet`'s ``decoder``).
DECODERS = ("wide", "lean")
PSF_KINDS = ("gaussian", "measured", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class ConfigError(ValueError):
    """A configuration value is out of range or of the wrong kind."""


def check(c: TrainConfig) -> None:
    """Raise :class:`ConfigError` naming the first invalid field of ``c``."""

    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{name}={getattr(c, name)!r}: {what}")

    need(_is_int(c.ndim) and c.ndim in (2, 3), "ndim", "must be 2 or 3")
    need(c.psf in PSF_KINDS, "psf", f"must be one of {PSF_KINDS}")
    sig = c.psf_sigma if isinstance(c.psf_sigma, tuple) else (c.psf_sigma,)
    need(
        len(sig) in (1, c.ndim)
        and all(_is_real(s) and math.isfinite(s) and 0 <= s <= 50 for s in sig),
        "psf_sigma",
        f"must be a number (or {c.ndim} numbers) between 0 and 50 pixels",
    )
    need(_is_real(c.positivity) and math.isfinite(c.positivity) and c.positivity >= 0, "positivity",
         "must be a finite number >= 0")
    for name in ("epochs", "steps_per_epoch", "batch_size", "micro_batches", "depth",
                 "channels", "lr_patience"):
        need(_is_int(getattr(c, name)) and getattr(c, name) >= 1, name,
             "must be a whole number >= 1")
    need(c.depth <= 6, "depth", "must be <= 6")
    need(c.micro_batches <= c.batch_size, "micro_batches", "must be <= batch_size")
    need(c.pool_z is None or isinstance(c.pool_z, bool), "pool_z", "must be True, False or None")
    need(_is_real(c.val_fraction) and 0 < c.val_fraction < 1, "val_fraction",
         "must be between 0 and 1 (exclusive)")
    need(c.lr is None or _is_real(c.lr) and 0 < c.lr < 1, "lr",
         "must be between 0 and 1, or None for the default")
    need(c.head_lr_scale is None or _is_real(c.head_lr_scale) and 0 < c.head_lr_scale <= 100
         and c.learning_rate * c.head_lr_scale < 1, "head_lr_scale",
         "must be in (0, 100], with lr * head_lr_scale below 1, or None for the default")
    need(_is_real(c.weight_average) and 0 <= c.weight_average < 1, "weight_average",
         "must be in [0, 1): 0 is off, 0.99 averages over about the last 100 steps")
    need(_is_real(c.lr_factor) and 0 < c.lr_factor < 1, "lr_factor",
         "must be between 0 and 1")
    need(_is_real(c.mask_fraction) and 0 < c.mask_fraction <= 0.25, "mask_fraction",
         "must be in (0, 0.25]")
    need(_is_int(c.mask_radius) and 1 <= c.mask_radius <= 10, "mask_radius",
         "must be a whole number from 1 to 10")
    _check_patch(c, need)
    need(_is_int(c.seed) and c.seed >= 0, "seed", "must be a whole number >= 0")
    need(c.device in DEVICES, "device", f"must be one of {DEVICES}")
    need(c.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}")
    need(c.optics is None or c.psf == "measured", "optics",
         "is the record of a PSF computed from optics: needs psf='measured'")
    need(isinstance(c.n2v2, bool), "n2v2", "must be True or False")
    need(c.decoder is None or c.decoder in DECODERS, "decoder",
         f"must be one of {', '.join(map(repr, DECODERS))}")
    need(isinstance(c.cuda_graph, bool), "cuda_graph", "must be True or False")
    need(c.wiener_eps is None or (_is_real(c.wiener_eps) and 0 <= c.wiener_eps <= 1), "wiener_eps",
         "must be in [0, 1] (0: off) or None (auto)")


def _check_patch(c: TrainConfig, need: Callable[[bool, str, str], None]) -> None:
    p = c.patch_size
    sizes = p if isinstance(p, tuple) else (p,)
    axes = "ZYX"[-c.ndim:]
    need(len(sizes) in (1, c.ndim) and all(_is_int(n) for n in sizes), "patch_size",
         f"must be a whole number or {c.ndim} whole numbers ({' '.join(axes)})")
    pooled = 2 ** c.depth * 2
    unpooled = 2 * c.mask_radius + 1
    for ax, n in zip(axes, c.patch_per_axis):
        # An unpooled Z axis only needs room for the blind-spot neighbourhood.
        smallest = unpooled if ax == "Z" and c.pool_z is not True else max(pooled, unpooled)
        need(n >= smallest, "patch_size",
             f"must be >= {smallest} px along {ax} for depth {c.depth} and mask radius "
             f"{c.mask_radius}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
