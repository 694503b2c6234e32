"""The files that go into a bioimage.io package, apart from ``rdf.yaml`` and the README.

Everything here is plain numpy/torch: no ``bioimageio`` import.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.channels import ChannelModels
from ..core.model import DecoNoisingModel
from ..core.predict import tile_halos
from .architecture import BioimageioChannelNet, BioimageioDecoNoisingNet

__all__ = ["AnyModel", "Geometry", "geometry", "parts", "package_test_image", "build_net", "net_kwargs",
           "write_weights", "write_torchscript", "write_environment", "SPATIAL_AXES"]

AnyModel = DecoNoisingModel | ChannelModels

SPATIAL_AXES = ("z", "y", "x")
# Side of the test image cut from a sample (or synthesised): large enough to show
# structure on the cover, small enough that bioimage.io's model test stays quick.
TEST_SIDE = 256


@dataclass(frozen=True)
class Geometry:
    """Sizes a bioimage.io consumer must respect, per spatial axis (Z, Y, X or Y, X).

    ``halos``: output border to crop (and input context to add), the receptive radius
    rounded up to a multiple of the axis' step so the pooling grid stays aligned with ours.
    ``steps``: 2**depth on pooled axes, 1 along an unpooled Z (thin stacks).
    ``mins``: valid model inputs are ``min + k * step`` pixels (one step of output beyond
    the halos). ``halo``, ``step`` and ``min`` are the largest over the axes.
    """

    halos: tuple[int, ...]
    steps: tuple[int, ...]
    axes: tuple[str, ...]

    @property
    def mins(self) -> tuple[int, ...]:
        return tuple(2 * h + s for h, s in zip(self.halos, self.steps))

    @property
    def halo(self) -> int:
        return max(self.halos)

    @property
    def step(self) -> int:
        return max(self.steps)

    @property
    def min(self) -> int:
        return max(self.mins)


def parts(model: AnyModel) -> list[DecoNoisingModel]:
    """The channels' models in channel order; a single model is one part."""
    return list(model.models) if isinstance(model, ChannelModels) else [model]


def geometry(model: AnyModel) -> Geometry:
    """The sizes of one input tensor: for a model per channel, what every channel's network needs."""
    models = parts(model)
    ndim = models[0].ndim
    # the U-Net pools Y and X depth times, Z too unless the stack is thin (see TrainConfig.pools_z);
    # powers of two: the largest step over the channels is a multiple of the others
    steps = tuple(max(2**m.config.depth if axis > 0 or ndim == 2 or m.config.pools_z() else 1 for m in models)
                  for axis in range(ndim))
    halos = tuple(max(math.ceil(tile_halos(m)[axis] / step) * step for m in models)
                  for axis, step in enumerate(steps))
    return Geometry(halos=halos, steps=steps, axes=SPATIAL_AXES[-ndim:])


def package_test_image(model: AnyModel, sample: np.ndarray | None, sample_axes: str | None = None) -> np.ndarray:
    """The package's test input: a centre crop of ``sample`` of a valid size, float32.

    Without a sample, a synthetic image (:func:`~napari_deconoising.core.sample.make_sample`)
    is made and scaled to the model's training mean and standard deviation, so the
    cover shows the model working on data in the units it knows. For a model per
    channel the result has the channel axis first, ``(C, ...)``: each channel synthetic
    and scaled to its own model, or the sample's channels (``sample_axes`` names its C
    axis; without it the channels must come first). A sample with more axes than the
    model (a stack for a 2D model, a time-lapse for a 3D one) gives its middle plane or
    volume, with a :class:`~napari_deconoising.core.data.DataWarning` saying so.

    Raises
    ------
    ValueError
        If the sample has the wrong dimensionality or channel count (several channels for
        a single-channel model: which one it was trained on is unknown), is smaller than
        the minimum size or is not finite.
    """
    geo, models = geometry(model), parts(model)
    per_channel = isinstance(model, ChannelModels)
    if sample is None:
        if models[0].ndim != 2:
            raise ValueError("a synthetic test image exists only for 2D models; pass a sample")
        shape = tuple(_valid_size(max(TEST_SIDE, mn), mn, st) for mn, st in zip(geo.mins, geo.steps))
        images = [_synthetic(m, shape) for m in models]
        return np.stack(images) if per_channel else images[0]
    a = np.asarray(sample)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"the sample image must hold real numbers, got dtype {a.dtype}")
    ndim = models[0].ndim + per_channel
    letters = sample_axes.upper() if sample_axes is not None and len(sample_axes) == a.ndim else "?" * a.ndim
    if per_channel:
        if "C" in letters:
            c = letters.index("C")
            a, letters = np.moveaxis(a, c, 0), "C" + letters[:c] + letters[c + 1:]
        a, letters = _middle_plane(a, letters, ndim, lead=1)
        if a.ndim != ndim or a.shape[0] != len(models):
            raise ValueError(f"the sample image {a.shape} (channels first) needs {len(models)} channels, one per "
                             f"model, and {models[0].ndim} spatial axes, e.g. {'CZYX' if ndim == 4 else 'CYX'}")
    else:
        if "C" in letters and a.shape[letters.index("C")] > 1:
            # which channel the model was trained on is not known: a guess would make a wrong cover and test
            raise ValueError(f"the sample image has {a.shape[letters.index('C')]} channels (axis C) but the "
                             "model is for one channel: give a sample of the channel it was trained on")
        kept = [i for i, n in enumerate(a.shape) if n != 1]  # axes of one entry (a C of 1) say nothing
        a, letters = a.reshape([a.shape[i] for i in kept]), "".join(letters[i] for i in kept)
        a, letters = _middle_plane(a, letters, ndim)
        if a.ndim != ndim:
            raise ValueError(f"the sample image has {a.ndim} dimensions; the model needs {ndim}")
    space = a.shape[per_channel:]
    if any(n < mn for n, mn in zip(space, geo.mins)):
        axes = "".join(geo.axes).upper()
        raise ValueError(f"the sample image {space} is too small: bioimage.io test images for this model need at "
                         f"least {geo.mins} px ({axes}: twice the halo {geo.halos} plus the step {geo.steps})")
    sizes = [_valid_size(min(n, max(TEST_SIDE, mn)), mn, st, down=True)
             for n, mn, st in zip(space, geo.mins, geo.steps)]
    crop = tuple(slice((n - s) // 2, (n - s) // 2 + s) for n, s in zip(space, sizes))
    out = np.ascontiguousarray(a[(slice(None), *crop) if per_channel else crop], dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("the sample image contains NaN or infinite values")
    return out


def _middle_plane(a: np.ndarray, letters: str, ndim: int, lead: int = 0) -> tuple[np.ndarray, str]:
    """``a`` (of axes ``letters``) cut at the middle of every axis beyond its ``ndim``, after the
    ``lead`` first ones (the channels), with a warning naming the plane taken.

    A stack's middle plane is in focus and lit more often than its first.
    """
    extra = a.ndim - ndim
    if extra <= 0:
        return a, letters
    from ..core.data import DataWarning

    axes = range(lead, lead + extra)
    where = ", ".join(f"{letters[i] if letters[i] != '?' else 'axis ' + str(i)} {a.shape[i] // 2} of "
                      f"{a.shape[i]}" for i in axes)
    space = "ZYX"[-(ndim - lead):]
    warnings.warn(f"the sample image {a.shape} is a stack for a {ndim - lead}D model: its middle "
                  f"{'plane' if ndim - lead == 2 else 'volume'} ({where}) is the package's test image "
                  f"(give a {space} image to choose another)", DataWarning, stacklevel=3)
    index = (slice(None),) * lead + tuple(a.shape[i] // 2 for i in axes)
    return a[index], letters[:lead] + letters[lead + extra:]


def _synthetic(model: DecoNoisingModel, shape: tuple[int, ...]) -> np.ndarray:
    from ..core.sample import make_sample

    sigma = float(max(model.config.sigma_per_axis)) if model.config.psf == "gaussian" else 1.5
    noisy = make_sample(shape, sigma=max(sigma, 0.5), seed=0).noisy
    scaled = (noisy - noisy.mean()) / max(float(noisy.std()), 1e-12) * model.std + model.mean
    return scaled.astype(np.float32)


def _valid_size(n: int, min_size: int, step: int, down: bool = False) -> int:
    k = (n - min_size) / step
    k = math.floor(k) if down else math.ceil(k)
    return min_size + max(0, k) * step


def net_kwargs(model: DecoNoisingModel) -> dict[str, Any]:
    """:class:`BioimageioDecoNoisingNet`'s keyword arguments for ``model`` (rdf.yaml's ``kwargs``)."""
    c = model.config
    shape = (1,) * c.ndim if model.psf is None else model.psf.shape
    return {"depth": c.depth, "channels": c.channels, "ndim": c.ndim, "psf_shape": [int(n) for n in shape],
            "pool_z": c.pools_z(), "n2v2": c.n2v2, "wiener_eps": c.phantom_wiener_eps, "decoder": c.unet_decoder}


def build_net(model: AnyModel) -> BioimageioDecoNoisingNet | BioimageioChannelNet:
    """The network of the ``pytorch_state_dict`` weights, holding ``model``'s weights and PSF(s)."""
    if isinstance(model, ChannelModels):
        net = BioimageioChannelNet([net_kwargs(m) for m in model.models])
        for sub, m in zip(net.nets, model.models):
            sub.load_state_dict(build_net(m).state_dict())
        return net.eval()
    kw = net_kwargs(model)
    return BioimageioDecoNoisingNet.from_parts(model.state_dict, model.psf, depth=kw["depth"],
                                               channels=kw["channels"], ndim=kw["ndim"], pool_z=kw["pool_z"],
                                               n2v2=kw["n2v2"], wiener_eps=kw["wiener_eps"], decoder=kw["decoder"])


def write_weights(net: torch.nn.Module, path: Path) -> Path:
    torch.save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, path)
    return path


def write_torchscript(net: torch.nn.Module, example: np.ndarray, path: Path) -> Path:
    """Trace the network on ``example``, a ``(batch, channel, ...)`` input of a valid size.

    The trace fixes the U-Net's "pad to a multiple of 2**depth" branch to "no padding",
    which holds for every size the package declares valid (``min + k * step``, with the
    halo a multiple of ``step`` too); other sizes fail loudly instead of going wrong.
    """
    x = torch.from_numpy(np.ascontiguousarray(example, np.float32))
    with warnings.catch_warnings(), torch.no_grad():
        # Tracing warns about the deprecated API and about the shape branch explained above.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net.eval(), x, check_trace=False)
    traced.save(str(path))
    return path


def write_environment(path: Path) -> Path:
    """Conda environment for the ``pytorch_state_dict`` weights (the architecture is ours)."""
    from .. import __version__

    torch_version = torch.__version__.split("+")[0]
    path.write_text(
        "name: napari-deconoising\n"
        "channels:\n  - conda-forge\n  - nodefaults\n"
        "dependencies:\n"
        "  - python>=3.11\n"
        f"  - pytorch>={torch_version}\n"
        "  - pip\n"
        "  - pip:\n"
        f"    - napari-deconoising=={__version__}\n",
        encoding="utf-8",
    )
    return path
