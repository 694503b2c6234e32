"""U-Net for 2D (or, by one parameter, 3D) images of any size."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import DECODERS, default_decoder
from .n2v2 import MaxBlurPool

__all__ = ["UNet", "unet_receptive_radius"]


def _layers(ndim: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    if ndim == 2:
        return nn.Conv2d, nn.MaxPool2d, nn.ConvTranspose2d
    if ndim == 3:
        return nn.Conv3d, nn.MaxPool3d, nn.ConvTranspose3d
    raise ValueError(f"ndim must be 2 or 3, got {ndim}")


class _DoubleConv(nn.Sequential):
    def __init__(self, conv: type[nn.Module], cin: int, cmid: int, cout: int | None = None) -> None:
        super().__init__(
            conv(cin, cmid, 3, padding=1), nn.ReLU(inplace=True),
            conv(cmid, cmid if cout is None else cout, 3, padding=1), nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """The U-Net of the Noise2Void/DecoNoising lineage.

    Two 3x3 convolutions with ReLU per level, 2x2 max-pooling, upsampling, skip
    connections merged by concatenation, a final 1x1 convolution and no normalisation
    layers (batch norm would couple the blind spots of a batch).

    Upsampling is a 1x1 convolution followed by bilinear interpolation by default.
    Transposed convolutions (the reference code's choice) leave a 2-pixel checkerboard
    in the phantom: the PSF blurs it away in the denoised image, so the loss never sees
    it, but it shows in the deconvolved image.

    Parameters
    ----------
    depth : int
        Number of poolings.
    channels : int
        Feature channels of the first level; doubled at every level.
    ndim : int
        2 for images, 3 for volumes.
    in_channels, out_channels : int
        Image channels in and out.
    upsampling : {"bilinear", "transpose"}
        How the decoder doubles the resolution.
    pool_z : bool
        3D only: pool and upsample along Z too. With False every level keeps the full
        Z resolution (pooling 1x2x2), for thin stacks and anisotropic voxels.
    n2v2 : bool
        N2V2's architecture: :class:`~napari_deconoising.core.n2v2.MaxBlurPool` instead of
        max pooling and no skip connection at the top level.
    decoder : {"wide", "lean"} or None
        None: :func:`~.config.default_decoder` (wide). ``"wide"`` (the
        DecoNoising reference code's layout): each decoder level keeps its
        width and a 1x1 convolution halves the channels before up-sampling. ``"lean"``
        (CSBDeep's and CAREamics' Noise2Void layout): the bottleneck and each decoder level
        end at the next finer level's width, so nothing is needed between them; 11 % fewer
        operations at the same ``depth`` and ``channels``.

    Notes
    -----
    Inputs of any size are accepted: they are reflect-padded to a multiple of
    ``2**depth`` along every pooled axis and the output is cropped back.
    """

    def __init__(self, depth: int = 3, channels: int = 64, ndim: int = 2,
                 in_channels: int = 1, out_channels: int = 1, upsampling: str = "bilinear",
                 pool_z: bool = True, n2v2: bool = False, decoder: str | None = None) -> None:
        super().__init__()
        conv, pool, up = _layers(ndim)
        if upsampling not in ("bilinear", "transpose"):
            raise ValueError(f"upsampling must be 'bilinear' or 'transpose', got {upsampling!r}")
        decoder = default_decoder(ndim) if decoder is None else decoder
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.depth, self.ndim, self.upsampling, self.n2v2 = depth, ndim, upsampling, n2v2
        self.decoder = decoder
        lean = decoder == "lean"
        self.pool_z = bool(pool_z) or ndim == 2
        factor = 2 if self.pool_z else (1, 2, 2)
        ch = [channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in ch[:-1]:
            self.down.append(_DoubleConv(conv, cin, c))
            cin = c
        self.pool = MaxBlurPool(ndim, factor) if n2v2 else pool(factor)
        self.bottom = _DoubleConv(conv, ch[-2], ch[-1], ch[-2] if lean else ch[-1])
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for i in reversed(range(depth)):
            coarse = ch[i] if lean else ch[i + 1]  # channels arriving from the level below
            interpolate = nn.Upsample(scale_factor=factor if ndim == 2 else _as_floats(factor),
                                      mode="bilinear" if ndim == 2 else "trilinear", align_corners=False)
            if upsampling == "transpose":
                self.up.append(up(coarse, ch[i], factor, stride=factor))
            elif lean:
                self.up.append(interpolate)
            else:
                # 1x1 conv at the coarse scale, then interpolate: the same as interpolating
                # first (both are linear) at a quarter of the cost.
                self.up.append(nn.Sequential(conv(coarse, ch[i], 1), interpolate))
            top_skip = not (n2v2 and i == 0)
            out = ch[max(i - 1, 0)] if lean else ch[i]
            self.up_conv.append(_DoubleConv(conv, (2 if top_skip else 1) * ch[i], ch[i], out))
        self.head = conv(ch[0], out_channels, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # A small head keeps the initial output near the (normalised) data mean.
        nn.init.normal_(self.head.weight, std=1e-2)

    @property
    def multiples(self) -> tuple[int, ...]:
        """Per spatial axis, the size multiple the pooling needs (1 for an unpooled Z)."""
        m = 2**self.depth
        return (m,) * self.ndim if self.pool_z else (1,) + (m,) * (self.ndim - 1)

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` extended at its far ends to a multiple of :attr:`multiples` (reflect, else replicate)."""
        size = x.shape[2:]
        pad = []
        for n, m in zip(reversed(size), reversed(self.multiples)):
            pad += [0, (-n) % m]
        if any(pad):
            x = F.pad(x, pad, mode="reflect" if all(p < n for p, n in zip(pad[1::2], reversed(size))) else "replicate")
        return x

    @staticmethod
    def crop_output(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        """Undo :meth:`pad_input`: the first ``size`` pixels along every spatial axis."""
        if tuple(x.shape[2:]) == tuple(size):
            return x
        return x[(slice(None), slice(None)) + tuple(slice(0, n) for n in size)]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The contracting path and the bottleneck: the bottom's features and the skips, finest first."""
        skips: list[torch.Tensor | None] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        return self.bottom(x), skips

    def decode(self, x: torch.Tensor, skips: list[torch.Tensor | None],
               merges: Sequence[Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]] | None = None,
               ) -> torch.Tensor:
        """The expanding path, coarsest level first, up to the head's input.

        ``merges[i]`` joins level ``i``'s up-sampled map and its skip (default: concatenation
        along channels, up-sampled map first; int8 passes its quantised concatenations).
        """
        if self.n2v2:
            skips[0] = None  # N2V2: the input's own pixel grid does not reach the output directly
        for i, (up, block) in enumerate(zip(self.up, self.up_conv)):
            merge = _merge if merges is None else merges[i]
            # No name holds the skip or the up-sampled maps while the block runs, so both are
            # freed once concatenated: inference's peak is at the top level, where this saves
            # two full-resolution maps.
            x = block(merge(up(x), skips.pop()))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = self.decode(*self.encode(self.pad_input(x)))
        # The 1x1 head runs in fp32 even under bf16 autocast: rounding the phantom to bf16
        # (8 significant bits) before the PSF cost DecoNoising 1.4 dB in a filaments run
        # while Noise2Void lost nothing (one seed; docs/benchmarks.md, "The cause: the
        # phantom was rounded to bf16 before the PSF").
        with torch.autocast(x.device.type, enabled=False):
            x = self.head(x.float())
        return self.crop_output(x, size)


def unet_receptive_radius(depth: int, pooled: bool = True, n2v2: bool = False) -> int:
    """Upper bound on how far (in pixels) an output pixel of :class:`UNet` can see.

    Each level contributes two 3x3 convolutions on the way down and two on the way
    up (radius 2 each at that level's scale), a pooling window (``2**level``) and an
    up-sampling (bilinear interpolation reaches one coarse pixel, ``2**(level+1)``;
    a transposed convolution less), and the bottleneck two convolutions at scale
    ``2**depth``. Along an axis that is not pooled (``pooled=False``, Z of a thin
    stack) every scale is 1 and pooling and up-sampling reach nothing. N2V2's blur
    pooling reaches ``2 * 2**level`` further per level along pooled axes.
    """
    if not pooled:
        return 2 + 4 * depth
    r = 2 * 2**depth  # bottleneck
    for level in range(depth):
        s = 2**level
        r += 2 * s + 2 * s  # convolutions down and up
        r += s + 2 * s  # pooling window and up-sampling footprint
        r += 2 * s if n2v2 else 0  # the blur after the stride-1 max
    return r


def _merge(x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    if skip is None:
        return x
    if x.requires_grad:
        fmt = _channels_last(x)
        if fmt is not None:
            # The concatenation's backward hands x a channel slice of its gradient: strided in
            # channels-last memory, where up-sampling's backward then ran 5-8x slower on the
            # CPU (issue 8, benchmarks/speed_grad_layout.py). One dense copy is cheaper.
            x.register_hook(lambda g: g.contiguous(memory_format=fmt))
    return torch.cat([x, skip], dim=1)


def _channels_last(x: torch.Tensor) -> torch.memory_format | None:
    """The channels-last format ``x`` is stored in, or None."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    return fmt if fmt is not None and x.is_contiguous(memory_format=fmt) and not x.is_contiguous() else None


def _as_floats(factor: int | tuple[int, ...]) -> float | tuple[float, ...]:
    return float(factor) if isinstance(factor, int) else tuple(float(f) for f in factor)
