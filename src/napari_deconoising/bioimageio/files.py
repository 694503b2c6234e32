"""The files that go into a bioimage.io package, apart from ``rdf.yaml`` and the README.

Everything here is plain numpy/torch: no ``bioimageio`` import.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.model import DecoNoisingModel
from ..core.predict import tile_halo
from .architecture import BioimageioDecoNoisingNet

__all__ = ["Geometry", "geometry", "package_test_image", "build_net", "write_weights", "write_torchscript",
           "write_environment", "SPATIAL_AXES"]

SPATIAL_AXES = ("z", "y", "x")
# Side of the test image cut from a sample (or synthesised): large enough to show
# structure on the cover, small enough that bioimage.io's model test stays quick.
TEST_SIDE = 256


@dataclass(frozen=True)
class Geometry:
    """Sizes a bioimage.io consumer must respect, per spatial axis.

    ``halo``: output border to crop (and input context to add), the receptive radius
    rounded up to a multiple of ``step`` so the pooling grid stays aligned with ours.
    ``min`` and ``step``: valid model inputs are ``min + k * step`` pixels (the U-Net
    pools ``depth`` times; ``min`` leaves at least one step of output after the halo).
    """

    halo: int
    min: int
    step: int
    axes: tuple[str, ...]


def geometry(model: DecoNoisingModel) -> Geometry:
    step = 2**model.config.depth
    halo = tile_halo(model)
    return Geometry(halo=halo, min=2 * halo + step, step=step, axes=SPATIAL_AXES[-model.ndim:])


def package_test_image(model: DecoNoisingModel, sample: np.ndarray | None) -> np.ndarray:
    """The package's test input: a centre crop of ``sample`` of a valid size, float32.

    Without a sample, a synthetic image (:func:`~napari_deconoising.core.sample.make_sample`)
    is made and scaled to the model's training mean and standard deviation, so the
    cover shows the model working on data in the units it knows.

    Raises
    ------
    ValueError
        If the sample has the wrong dimensionality, is smaller than the minimum size or
        is not finite.
    """
    geo = geometry(model)
    if sample is None:
        if model.ndim != 2:
            raise ValueError("a synthetic test image exists only for 2D models; pass a sample")
        from ..core.sample import make_sample

        side = _valid_size(max(TEST_SIDE, geo.min), geo)
        sigma = float(max(model.config.sigma_per_axis)) if model.config.psf == "gaussian" else 1.5
        noisy = make_sample((side, side), sigma=max(sigma, 0.5), seed=0).noisy
        scaled = (noisy - noisy.mean()) / max(float(noisy.std()), 1e-12) * model.std + model.mean
        return scaled.astype(np.float32)
    a = np.asarray(sample)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"the sample image must hold real numbers, got dtype {a.dtype}")
    a = np.squeeze(a)
    while a.ndim > model.ndim:  # a stack: its first plane
        a = a[0]
    if a.ndim != model.ndim:
        raise ValueError(f"the sample image has {a.ndim} dimensions; the model needs {model.ndim}")
    if min(a.shape) < geo.min:
        raise ValueError(f"the sample image {a.shape} is too small: bioimage.io test images for this "
                         f"model need at least {geo.min} px per axis (twice the {geo.halo} px halo "
                         f"plus {geo.step})")
    sizes = [_valid_size(min(n, max(TEST_SIDE, geo.min)), geo, down=True) for n in a.shape]
    start = [(n - s) // 2 for n, s in zip(a.shape, sizes)]
    crop = np.ascontiguousarray(a[tuple(slice(b, b + s) for b, s in zip(start, sizes))], dtype=np.float32)
    if not np.all(np.isfinite(crop)):
        raise ValueError("the sample image contains NaN or infinite values")
    return crop


def _valid_size(n: int, geo: Geometry, down: bool = False) -> int:
    k = (n - geo.min) / geo.step
    k = math.floor(k) if down else math.ceil(k)
    return geo.min + max(0, k) * geo.step


def build_net(model: DecoNoisingModel) -> BioimageioDecoNoisingNet:
    c = model.config
    return BioimageioDecoNoisingNet.from_parts(model.state_dict, model.psf, depth=c.depth,
                                               channels=c.channels, ndim=c.ndim)


def write_weights(net: BioimageioDecoNoisingNet, path: Path) -> Path:
    torch.save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, path)
    return path


def write_torchscript(net: BioimageioDecoNoisingNet, example: np.ndarray, path: Path) -> Path:
    """Trace the network at the size of ``example`` (a valid input size).

    The trace fixes the U-Net's "pad to a multiple of 2**depth" branch to "no padding",
    which holds for every size the package declares valid (``min + k * step``, with the
    halo a multiple of ``step`` too); other sizes fail loudly instead of going wrong.
    """
    x = torch.from_numpy(np.ascontiguousarray(example, np.float32))[None, None]
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
