"""int8 prediction on x86 CPUs: the U-Net's body in 8-bit integers, its head and the PSF in fp32.

A CPU without bf16 units has no reduced float precision worth using (issue 8), but nearly
every x86 CPU of the last decade has 8-bit integer dot products (AVX512-VNNI, AVX-VNNI, or
AVX2's slower path). Static post-training quantisation, as PyTorch's x86 engine does it,
runs the convolutions there: weights per output channel, activations per tensor with ranges
observed on the image itself (min/max, so that bright spots are never clipped). The 1x1
head, the Wiener filter and the PSF stay in fp32, as they do under bf16, so the phantom is
never rounded to 8 bits before the PSF.

The ranges depend on the data, so every prediction calibrates on crops of its own image
(:func:`calibration_crops`: around its brightest and darkest pixels and in its middle), and
checks the int8 result against fp32 on them (:func:`int8_network`); above the tolerance it
predicts in the plan's fall-back precision (fp32, or ``auto``'s runner-up) and says why.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import platform
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .precision import TOLERANCE, relative_error

if TYPE_CHECKING:
    from .config import TrainConfig
    from .device import ExecutionPlan
    from .model import DecoNoisingModel
    from .network import DecoNoisingNet

__all__ = ["ENGINE", "int8_unavailable", "quantize", "calibration_crops", "int8_network", "prediction_network",
           "CALIBRATION_SIZE"]

# PyTorch's x86 engine: fbgemm or oneDNN kernels per operator, VNNI where the CPU has it.
ENGINE = "x86"
# Shape of a calibration crop by dimensionality: four 2D crops cost about a quarter of a 968^2
# tile in fp32; a 3D crop holds four times a 2D one's voxels.
CALIBRATION_SIZE = {2: (256, 256), 3: (16, 128, 128)}


def int8_unavailable(config: TrainConfig) -> str | None:
    """Why int8 prediction is not offered for a model of this configuration here; None when it is."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "int8 prediction is measured and offered on x86 CPUs only"
    if ENGINE not in torch.backends.quantized.supported_engines:
        return "this PyTorch build has no x86 int8 engine"
    if config.n2v2:
        return "int8 prediction does not cover N2V2's blur pooling"
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # torch.ao.quantization announces its move to torchao on every call; the eager API is
    # what runs on the CPU without compiling, so the notice is for us, not for users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class _InFloat(nn.Module):
    """A float-only module between int8 layers: dequantise, run it, quantise again."""

    def __init__(self, module: nn.Module) -> None:
        from torch.ao.quantization import DeQuantStub, QuantStub

        super().__init__()
        self.dequant, self.module, self.quant = DeQuantStub(), module, QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(self.module(self.dequant(x)))


class _Int8UNet(nn.Module):
    """The U-Net's forward pass with quantisation stubs around its body (see :class:`.unet.UNet`)."""

    def __init__(self, unet: nn.Module) -> None:
        from torch.ao.nn.quantized import FloatFunctional
        from torch.ao.quantization import DeQuantStub, QuantStub

        super().__init__()
        self.unet = copy.deepcopy(unet).float().eval()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.cats = nn.ModuleList(FloatFunctional() for _ in range(self.unet.depth))
        if self.unet.ndim == 3:  # no int8 trilinear kernel: that one step runs in fp32
            ups = self.unet.up
            for k, up in enumerate(ups):
                if isinstance(up, nn.Sequential):  # the wide decoder: 1x1 convolution, then interpolation
                    up[1] = _InFloat(up[1])
                else:
                    ups[k] = _InFloat(up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.unet
        size = x.shape[2:]
        x, skips = u.encode(self.quant(u.pad_input(x.float())))
        x = u.decode(x, skips, [lambda a, b, cat=cat: cat.cat([a, b], dim=1) for cat in self.cats])
        return u.crop_output(u.head(self.dequant(x)), size)


def quantize(net: DecoNoisingNet, calibration: Sequence[torch.Tensor]) -> DecoNoisingNet:
    """A copy of ``net`` whose U-Net body runs in int8, calibrated on ``calibration``.

    Parameters
    ----------
    net : DecoNoisingNet
        A trained network (fp32, on the CPU); it is not changed.
    calibration : sequence of torch.Tensor
        Normalised inputs ``(N, 1, *spatial)`` whose activations set the int8 ranges
        (min/max over all of them).

    Returns
    -------
    DecoNoisingNet
        Same call and outputs as ``net``: ``(denoised, phantom)`` in fp32.
    """
    qnet, _ = _calibrated(net, calibration)
    return qnet


def _calibrated(net: DecoNoisingNet,
                calibration: Sequence[torch.Tensor]) -> tuple[DecoNoisingNet, list[tuple[torch.Tensor, ...]]]:
    """:func:`quantize`, plus the fp32 outputs for the calibration inputs (observers do not change values)."""
    from torch.ao.quantization import QConfig, convert, default_per_channel_weight_observer, fuse_modules, prepare
    from torch.ao.quantization.observer import MinMaxObserver

    if not calibration:
        raise ValueError("int8 quantisation needs at least one calibration input")
    torch.backends.quantized.engine = ENGINE
    body = _Int8UNet(net.unet)
    _equalize(body.unet, calibration)
    u = body.unet
    qnet = copy.deepcopy(net).eval()
    qnet.unet = body
    with _quiet():
        for block in [*u.down, u.bottom, *u.up_conv]:
            fuse_modules(block, [["0", "1"], ["2", "3"]], inplace=True)
        # Full 8-bit activation range: this engine's VNNI kernels do not saturate, and the
        # 7-bit "reduce_range" doubled the error (measured 1.9 % against 0.9 %).
        body.qconfig = QConfig(activation=MinMaxObserver.with_args(reduce_range=False),
                               weight=default_per_channel_weight_observer)
        u.head.qconfig = None
        prepare(body, inplace=True)
        with torch.inference_mode():
            ref = [qnet(x.float().contiguous()) for x in calibration]
        convert(body, inplace=True)
    return qnet, ref


# Exponent of the channel equalisation (:func:`_equalize`): 0.5 took the demo model's int8 error
# from 0.66 % to 0.47 % (0.25: 0.50 %, 0.75: 0.59 %, 1: 1.15 %).
EQUALIZE_ALPHA = 0.5


def _producers(u: nn.Module) -> list[tuple[nn.Module, bool, list[tuple[nn.Module, int]]]]:
    """Each convolution of the U-Net whose output feeds only other convolutions (through ReLU,
    pooling, interpolation or concatenation, all of which commute with a positive per-channel
    scale), whether a ReLU follows it, and its consumers with the offset of its channels in
    their input."""
    d = u.depth
    out = []
    for level, block in enumerate(u.down):
        nxt = u.down[level + 1][0] if level + 1 < d else u.bottom[0]
        skip_user = u.up_conv[d - 1 - level][0]  # cat([up-sampled, skip]): the skip comes second
        out += [(block[0], True, [(block[2], 0)]),
                (block[2], True, [(nxt, 0), (skip_user, block[2].out_channels)])]
    if u.decoder == "lean":  # each block's output is interpolated straight into the next block
        out += [(u.bottom[0], True, [(u.bottom[2], 0)]), (u.bottom[2], True, [(u.up_conv[0][0], 0)])]
        for i, block in enumerate(u.up_conv):
            nxt = u.up_conv[i + 1][0] if i + 1 < d else u.head
            out += [(block[0], True, [(block[2], 0)]), (block[2], True, [(nxt, 0)])]
        return out
    out += [(u.bottom[0], True, [(u.bottom[2], 0)]), (u.bottom[2], True, [(u.up[0][0], 0)])]
    for i, block in enumerate(u.up_conv):
        nxt = u.up[i + 1][0] if i + 1 < d else u.head
        out += [(u.up[i][0], False, [(block[0], 0)]), (block[0], True, [(block[2], 0)]),
                (block[2], True, [(nxt, 0)])]
    return out


def _equalize(u: nn.Module, calibration: Sequence[torch.Tensor], alpha: float | None = None) -> None:
    """Even out the channels' ranges of every feature map in place, without changing the function.

    Activations are quantised per tensor, so a channel whose values span a tenth of the
    widest one's gets a tenth of the 256 levels. Scaling channel ``i`` of a convolution's
    output by ``s_i > 0`` and the matching input weights of its consumers by ``1 / s_i`` is
    exact in float (ReLU, max pooling, interpolation and concatenation commute with it);
    ``s_i = (max_j r_j / r_i) ** alpha`` with ``r`` the channels' ranges on the calibration
    inputs shares the gain between activations and weights (Nagel et al. 2019's cross-layer
    equalisation, with measured activation ranges).
    """
    alpha = EQUALIZE_ALPHA if alpha is None else alpha
    if alpha == 0:
        return
    producers = _producers(u)
    ranges: dict[nn.Module, torch.Tensor] = {}

    def record(module: nn.Module, _inputs: tuple, output: torch.Tensor, relu: bool) -> None:
        o = output.detach().float()
        o = o.clamp(min=0) if relu else o.abs()
        r = o.amax(dim=tuple(k for k in range(o.ndim) if k != 1))
        ranges[module] = r if module not in ranges else torch.maximum(ranges[module], r)

    hooks = [conv.register_forward_hook(lambda m, i, o, relu=relu: record(m, i, o, relu))
             for conv, relu, _ in producers]
    try:
        with torch.inference_mode():
            for x in calibration:
                u(x.float().contiguous())
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for conv, _, consumers in producers:
            r = ranges[conv].clamp(min=1e-12)
            scale = (r.max() / r) ** alpha
            conv.weight.mul_(scale.view(-1, *[1] * (conv.weight.ndim - 1)))
            conv.bias.mul_(scale)
            for user, offset in consumers:
                view = (1, -1) + (1,) * (user.weight.ndim - 2)
                user.weight[:, offset:offset + scale.numel()].div_(scale.view(view))


def calibration_crops(images: Sequence[np.ndarray], mean: float, std: float,
                      size: int | Sequence[int] | None = None) -> list[torch.Tensor]:
    """Normalised crops of 2D images (or 3D volumes) for int8 calibration.

    Around the brightest and the darkest pixel of all images (activations' extremes follow
    the input's, and a range that misses them would clip a bright spot), and the middle of
    the first and of the last image. Each crop is at most ``size`` pixels along each axis
    (one value for all axes; default :data:`CALIBRATION_SIZE` for the images' dimensionality).
    """
    images = [np.asarray(im) for im in images]
    nd = images[0].ndim
    size = CALIBRATION_SIZE[nd] if size is None else (size,) * nd if isinstance(size, int) else tuple(size)
    hi = max(range(len(images)), key=lambda k: float(np.max(images[k])))
    lo = min(range(len(images)), key=lambda k: float(np.min(images[k])))
    centres = [(hi, np.unravel_index(int(np.argmax(images[hi])), images[hi].shape)),
               (lo, np.unravel_index(int(np.argmin(images[lo])), images[lo].shape)),
               (0, tuple(n // 2 for n in images[0].shape)),
               (len(images) - 1, tuple(n // 2 for n in images[-1].shape))]
    crops, seen = [], set()
    for k, centre in centres:
        im = images[k]
        starts = tuple(int(min(max(c - w // 2, 0), max(n - w, 0))) for c, n, w in zip(centre, im.shape, size))
        if (k, starts) in seen:
            continue
        seen.add((k, starts))
        crop = im[tuple(slice(s, s + w) for s, w in zip(starts, size))].astype(np.float32)
        crops.append(torch.from_numpy((crop - np.float32(mean)) / np.float32(std))[None, None])
    return crops


def int8_network(net: DecoNoisingNet, crops: Sequence[torch.Tensor]) -> tuple[DecoNoisingNet, float]:
    """``net`` quantised on ``crops``, and its error against fp32 on them.

    The error is :func:`.precision.relative_error` over all crops together (the denoised
    output's and half the phantom's, relative to fp32's spread): what
    :data:`.precision.TOLERANCE` judges.
    """
    qnet, ref = _calibrated(net, crops)
    with torch.inference_mode():
        out = [qnet(c) for c in crops]
    flat = [[torch.cat([o[i].flatten() for o in outs]) for i in range(2)] for outs in (out, ref)]
    return qnet, relative_error(flat[0], flat[1])


def prediction_network(model: DecoNoisingModel, plan: ExecutionPlan, crops: Callable[[], Sequence[torch.Tensor]],
                       check: bool = True) -> tuple[nn.Module, ExecutionPlan]:
    """The network a prediction runs, on ``plan.device``, and the plan as it turned out.

    For an int8 plan the network is quantised on ``crops()`` (normalised crops of the
    image, :func:`calibration_crops`) and, with ``check``, compared with fp32 there;
    beyond :data:`.precision.TOLERANCE` the prediction runs in ``plan.fallback`` instead
    (fp32, or the runner-up of ``precision="auto"``) and the plan's reason says why.
    Without ``check`` (Dask workers, whose client has decided) it is quantised only.
    Other plans get the fp32 network in the plan's memory layout.
    """
    net = model.build_network().to(plan.device)
    if plan.quantized and not check:
        return quantize(net, list(crops())), plan
    if plan.quantized:
        calibration = list(crops())
        qnet, err = int8_network(net, calibration)
        tol = TOLERANCE["predict"]
        if err <= tol:
            why = f"calibrated on {len(calibration)} crops of this image, error {err:.2%} of fp32"
            return qnet, dataclasses.replace(plan, reason=f"{plan.reason}; int8 {why}")
        plan = plan.fall_back(f"int8's error on this image's crops was {err:.2%} of fp32 "
                              f"(tolerance {tol:.0%}), so {plan.fallback}")
    if plan.channels_last:
        net = net.to(memory_format=plan.memory_format(model.config.ndim))
    return net, plan
