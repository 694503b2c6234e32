"""The one training configuration, validated once and saved with every model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .config_checks import DECODERS, DEVICES, PRECISIONS, PSF_KINDS, ConfigError, check
from .learning_rate import default_head_lr_scale, default_lr
from .precondition import DEFAULT_WIENER_EPS_3D

__all__ = ["DECODERS", "DEVICES", "PRECISIONS", "PSF_KINDS", "ConfigError", "TrainConfig", "default_decoder"]


def default_decoder(ndim: int) -> str:
    """The U-Net decoder a new ``ndim``-D network gets: the wide one in 2D and 3D. The lean one
    trains 6-13 % faster steps in 2D with the same PSNR on the quality benchmark, but its
    DecoNoising came out 0.14 ± 0.31 dB behind on 18 seeds of the demo sample (standard error
    0.07 dB; docs/benchmarks.md, "the lean decoder"), and it is not measured in 3D."""
    return "wide"


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars, also inside a list or tuple, as the Python numbers they hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


if TYPE_CHECKING:
    from .optics import Optics

@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a DecoNoising training run.

    The defaults are the paper's setup (Goncharova et al. 2020): U-Net depth 3 with
    64 first-layer channels, Adam with learning rate 1e-3 (lowered for wider layers, see
    :func:`default_lr`), 100x100 patches, 200 epochs
    of 10 steps with 20 patches per step, ReduceLROnPlateau on the validation loss.

    Parameters
    ----------
    psf : {"gaussian", "measured", "none"}
        Which point spread function is part of the model. ``"none"`` (or a Gaussian
        with ``psf_sigma=0``) is plain Noise2Void.
    psf_sigma : float or tuple of float
        Standard deviation of the Gaussian PSF in pixels, one value for all axes or
        one per spatial axis ((Y, X), or (Z, Y, X) when ``ndim=3``).
    positivity : float
        Weight lambda of the positivity term ``mean(max(0, -phantom))``; 0 disables it.
    epochs, steps_per_epoch : int
        Training length. One step is one optimiser update.
    batch_size : int
        Patches per optimiser step.
    micro_batches : int
        Split each step into this many forward/backward passes (gradient accumulation)
        to save memory; the optimiser still sees ``batch_size`` patches per step.
    patch_size : int or tuple of int
        Size of the training patches in pixels: one side for all axes (square or
        cubic patches) or one per spatial axis ((Y, X) or (Z, Y, X)). A patch larger
        than the data is shrunk to fit, with a warning.
    val_fraction : float
        Fraction of the data held out for validation (at least one patch).
    lr : float or None
        Initial learning rate of Adam. ``None`` (the default) is the paper's 1e-3 for
        layers no wider than the paper's 2D network, and less for wider ones: see
        :func:`default_lr` and :attr:`learning_rate`.
    head_lr_scale : float or None
        The phantom head (the U-Net's final 1x1 convolution) learns at ``lr *
        head_lr_scale``. ``None`` (the default) applies :func:`default_lr`'s fan-in rule
        to the head too: it sums only ``channels`` inputs, so it learns at the paper's
        1e-3 while a wide 3D body learns slower (3 for the 3D default, 1 in 2D; see
        :func:`default_head_lr_scale`). 10 let 3D DecoNoising catch up sooner in one seed
        without the preconditioned phantom (docs/benchmarks.md, "3D"). The learned-sigma
        PSF search keeps one rate.
    weight_average : float
        Validate, choose and save an exponential moving average of the weights instead
        of the weights themselves: after every step ``avg = weight_average * avg + (1 -
        weight_average) * weights`` (training goes on from the raw weights). It smooths
        out the step-to-step noise of the last weights; 0.99 averages over about the last
        100 steps. 0 (the default) is off.
    wiener_eps : float or None
        Preconditioned phantom: the U-Net's output passes the PSF's fixed Wiener filter
        ``(1 + eps) conj(H) / (|H|**2 + eps)`` before it is the phantom
        (:mod:`.precondition`). The same phantoms are reachable; training no longer waits
        for the modes the PSF damps. 0 is the paper's network (the U-Net output is the
        phantom). ``None`` (the default) is what was measured best: 0.01 in 3D, 0 in 2D
        (see :attr:`phantom_wiener_eps`). Part of the architecture: training stores the
        decision with the model; files from before this field load as 0. No effect
        without a PSF.
    lr_patience, lr_factor : int, float
        ReduceLROnPlateau: after ``lr_patience`` epochs without a better validation
        loss the learning rate is multiplied by ``lr_factor``.
    depth, channels : int
        U-Net depth (number of poolings) and channels of the first level.
    mask_fraction : float
        Fraction of pixels masked (blind spots) per patch.
    mask_radius : int
        A masked pixel takes the value of a random other pixel at most this far away
        (2 gives the 5x5 neighbourhood of Noise2Void).
    seed : int
        Seed for every random choice (patches, masks, initial weights).
    device : {"auto", "cpu", "cuda", "mps"}
        Where to train; ``"auto"`` takes CUDA, then Apple MPS, then the CPU.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Numeric precision of the forward pass. ``"auto"`` uses mixed precision on a
        GPU and bf16 on CPUs that have native bf16 units, else fp32.
    cuda_graph : bool
        On a CUDA GPU, record a training step once and replay it as a CUDA graph
        (:mod:`.cuda_graph`): the same arithmetic without the host's per-kernel launch
        cost. No effect elsewhere, with micro-batches, fp16 or torchrun.
    ndim : {2, 3}
        2 trains on images (a Z-stack slice by slice), 3 on volumes (Z, Y, X).
    pool_z : bool or None
        3D only: whether the U-Net also pools (and upsamples) along Z. ``None`` decides
        from the Z patch size: Z is pooled when the patch has at least
        ``4 * 2**depth`` planes, so that the coarsest level still holds 4 planes for its
        3x3x3 convolutions; thinner patches (thin stacks, anisotropic voxels) keep
        their full Z resolution at every level. Training stores the decision.
    optics : Optics or dict, optional
        The microscope a ``"measured"`` PSF was computed from (:mod:`.optics`); kept
        as a record, the PSF array itself travels with the model.
    n2v2 : bool
        N2V2 (Hoeck et al. 2022) against checkerboard artefacts: blur pooling, no
        top-level skip connection, blind spots replaced by their neighbourhood's median.
        Part of the architecture (saved with the model; older files load as False).
    decoder : {"wide", "lean"} or None
        The U-Net's decoder layout (:class:`~.unet.UNet`): ``"lean"`` is Noise2Void's
        (CSBDeep, CAREamics), ``"wide"`` the DecoNoising reference code's, with more
        multiply-adds at the same ``depth`` and ``channels``. ``None`` (the default):
        :func:`default_decoder` (wide); training stores the decision.
        Part of the architecture; files from before this field load as ``"wide"``.
    """

    psf: str = "gaussian"
    psf_sigma: float | tuple[float, ...] = 1.0
    positivity: float = 1.0
    epochs: int = 200
    steps_per_epoch: int = 10
    batch_size: int = 20
    micro_batches: int = 1
    patch_size: int | tuple[int, ...] = 100
    val_fraction: float = 0.1
    lr: float | None = None
    head_lr_scale: float | None = None
    weight_average: float = 0.0
    wiener_eps: float | None = None
    lr_patience: int = 10
    lr_factor: float = 0.5
    depth: int = 3
    channels: int = 64
    mask_fraction: float = 0.03125
    mask_radius: int = 2
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    cuda_graph: bool = True
    ndim: int = field(default=2)
    pool_z: bool | None = None
    optics: Optics | None = None
    n2v2: bool = False
    decoder: str | None = None

    def __post_init__(self) -> None:
        # NumPy scalars (a sigma computed from an image, say) become Python numbers: the model
        # file keeps plain data only, and its safe loader refuses anything else.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.generic) or isinstance(value, (list, tuple)) and any(
                    isinstance(v, np.generic) for v in value):
                object.__setattr__(self, f.name, _plain(value))
        # Lists come from JSON/model files; tuples keep the config hashable.
        sigma = self.psf_sigma
        if isinstance(sigma, list):
            object.__setattr__(self, "psf_sigma", tuple(float(s) for s in sigma))
        if isinstance(self.patch_size, list):
            object.__setattr__(self, "patch_size", tuple(self.patch_size))
        if self.optics is not None:
            from .optics import Optics, OpticsError  # lazy: only configs with optics need it

            try:
                if not isinstance(self.optics, Optics):
                    object.__setattr__(self, "optics", Optics.from_dict(self.optics))
            except OpticsError as e:
                raise ConfigError(f"optics: {e}") from None
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        check(self)

    # -- helpers ----------------------------------------------------------------
    @property
    def uses_psf(self) -> bool:
        """True when the model convolves its phantom with a PSF (DecoNoising proper)."""
        if self.psf == "none":
            return False
        if self.psf == "gaussian":
            return any(s > 0 for s in self.sigma_per_axis)
        return True

    @property
    def learning_rate(self) -> float:
        """The learning rate training uses: ``lr``, or :func:`default_lr` when it is None."""
        return default_lr(self.ndim, self.channels) if self.lr is None else float(self.lr)

    @property
    def head_learning_rate_scale(self) -> float:
        """The head's rate over :attr:`learning_rate`: ``head_lr_scale``, or :func:`default_head_lr_scale`."""
        if self.head_lr_scale is not None:
            return float(self.head_lr_scale)
        return default_head_lr_scale(self.ndim, self.channels)

    @property
    def phantom_wiener_eps(self) -> float:
        """The preconditioned phantom's ``eps``: ``wiener_eps``, or when it is None 0.01 in 3D and 0 in 2D.

        Measured (docs/benchmarks.md, "a preconditioned phantom"): in 3D with the PSF
        (2, 1, 1) it gained 1.2 dB at 600 steps; in 2D at sigma 1 it cost a little.
        """
        if self.wiener_eps is not None:
            return float(self.wiener_eps)
        return DEFAULT_WIENER_EPS_3D if self.ndim == 3 else 0.0

    @property
    def sigma_per_axis(self) -> tuple[float, ...]:
        """The Gaussian sigma expanded to one value per spatial axis."""
        s = self.psf_sigma
        return tuple(float(v) for v in s) if isinstance(s, tuple) else (float(s),) * self.ndim

    @property
    def patch_per_axis(self) -> tuple[int, ...]:
        """The patch size expanded to one value per spatial axis."""
        p = self.patch_size
        if isinstance(p, tuple):
            return p * self.ndim if len(p) == 1 else p
        return (p,) * self.ndim

    def pools_z(self, z_patch: int | None = None) -> bool:
        """Whether a 3D U-Net pools along Z (always True in 2D, where there is no Z).

        ``z_patch`` is the Z patch size actually used (after fitting it to the data);
        it defaults to the configured one. See ``pool_z``.
        """
        if self.ndim == 2:
            return True
        if self.pool_z is not None:
            return self.pool_z
        z = self.patch_per_axis[0] if z_patch is None else z_patch
        return z >= 4 * 2 ** self.depth

    @property
    def unet_decoder(self) -> str:
        """The decoder the network has: ``decoder``, or :func:`default_decoder` when it is None."""
        return default_decoder(self.ndim) if self.decoder is None else self.decoder

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("psf_sigma", "patch_size"):
            if isinstance(d[key], tuple):
                d[key] = list(d[key])
        if d["optics"] is None:  # files without optics stay exactly as before this field
            del d["optics"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build a config from a dict, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        # Files from before the preconditioned phantom were trained without it, those from
        # before the decoder choice have the wide decoder, and those from before the head's
        # own rate trained it at the body's.
        before = {"wiener_eps": 0.0, "decoder": "wide", "head_lr_scale": 1.0}
        return cls(**{**before, **{k: v for k, v in d.items() if k in known}})

