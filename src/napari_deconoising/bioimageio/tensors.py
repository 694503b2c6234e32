"""rdf.yaml's tensor descriptions, and our own payload in its ``config``.

One input ``raw`` and two outputs ``denoised`` and ``deconvolved``, each with a channel
axis: one channel for a single model, one per channel for a model per channel, whose
fixed normalisation is then given per channel along that axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.channels import ChannelModels
from ..core.modelfile import CHANNELS_FORMAT_VERSION, FORMAT_NAME, SINGLE_FORMAT_VERSION
from .files import AnyModel, Geometry, parts

__all__ = ["NORM_EPS", "channel_names", "input_descr", "output_descr", "payload"]

OUTPUT_TEXT = {"denoised": "phantom convolved with the PSF, input units",
               "deconvolved": "the phantom (fluorophore density), input units"}
# A model without a PSF (Noise2Void) has no phantom: both outputs are the denoised image.
OUTPUT_TEXT_N2V = {"denoised": "the denoised image (Noise2Void: no PSF), input units",
                   "deconvolved": "the same as denoised (Noise2Void: no PSF, no deconvolution), input units"}


def channel_names(model: AnyModel, key: str) -> list[str]:
    """``[key]`` for a single model, ``channel0, channel1, ...`` for a model per channel."""
    if isinstance(model, ChannelModels):
        return [f"channel{k}" for k in range(len(model.models))]
    return [key]


# bioimage.io's fixed normalisation divides by ``std + 1e-6`` (bioimageio.core's eps); our networks
# expect ``std`` exactly, so ``std - NORM_EPS`` is declared. Without it a model of data whose std
# is below about 1e-3 (floats scaled to [0, 1]) failed its own package test.
NORM_EPS = 1e-6


def input_descr(model: AnyModel, geo: Geometry, work: Path) -> Any:
    from bioimageio.spec.model import v0_5 as s

    models = parts(model)
    if isinstance(model, ChannelModels):
        norm = s.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            mean=[float(m.mean) for m in models], std=[float(m.std) - NORM_EPS for m in models],
            axis=s.AxisId("channel"))
    else:
        norm = s.FixedZeroMeanUnitVarianceKwargs(mean=float(model.mean), std=float(model.std) - NORM_EPS)
    return s.InputTensorDescr(
        id=s.TensorId("raw"),
        description="noisy image, any intensity units" + (", one channel per model" if len(models) > 1 else "")
        + f"; std declared minus {NORM_EPS:g} (bioimageio.core adds it)",
        axes=[s.BatchAxis(), s.ChannelAxis(channel_names=[s.Identifier(n) for n in channel_names(model, "raw")]),
              *[s.SpaceInputAxis(id=s.AxisId(a), size=s.ParameterizedSize(min=mn, step=st))
                for a, mn, st in zip(geo.axes, geo.mins, geo.steps)]],
        test_tensor=s.FileDescr(source=work / "test_raw.npy"),
        pad=s.ReflectPadding(mode="reflect"),  # as our tiled predictor; explicit, or it is not written
        preprocessing=[s.FixedZeroMeanUnitVarianceDescr(kwargs=norm)],
    )


def output_descr(key: str, model: AnyModel, geo: Geometry, work: Path) -> Any:
    from bioimageio.spec.model import v0_5 as s

    models = parts(model)
    post = []
    if any((m.std, m.mean) != (1.0, 0.0) for m in models):  # bioimage.io refuses an identity scaling
        if isinstance(model, ChannelModels):
            kwargs = s.ScaleLinearAlongAxisKwargs(axis=s.AxisId("channel"), gain=[float(m.std) for m in models],
                                                  offset=[float(m.mean) for m in models])
        else:
            kwargs = s.ScaleLinearKwargs(gain=float(model.std), offset=float(model.mean))
        post.append(s.ScaleLinearDescr(kwargs=kwargs))
    return s.OutputTensorDescr(
        id=s.TensorId(key),
        description=(OUTPUT_TEXT_N2V if all(m.is_noise2void for m in models) else OUTPUT_TEXT)[key],
        axes=[s.BatchAxis(), s.ChannelAxis(channel_names=[s.Identifier(n) for n in channel_names(model, key)]),
              *[s.SpaceOutputAxisWithHalo(id=s.AxisId(a), halo=halo,
                                          size=s.SizeReference(tensor_id=s.TensorId("raw"), axis_id=s.AxisId(a)))
                for a, halo in zip(geo.axes, geo.halos)]],
        test_tensor=s.FileDescr(source=work / f"test_{key}.npy"),
        postprocessing=post,
    )


def payload(model: AnyModel, version: str) -> dict[str, Any]:
    """What our importer needs beyond the weights (which hold the PSFs): plain YAML values.

    A single model's is format 1, as before channels existed; a model per channel's is
    format 2, ``{"channels": [one model's payload, ...]}`` like its ``.pt`` file.
    """
    def plain(m: Any) -> dict[str, Any]:
        return {k: v for k, v in m.to_payload().items() if k not in ("state_dict", "psf")}

    head = {"format": FORMAT_NAME, "software_version": str(version)}
    if isinstance(model, ChannelModels):
        return {**head, "format_version": CHANNELS_FORMAT_VERSION, "channels": [plain(m) for m in model.models]}
    return {**head, "format_version": SINGLE_FORMAT_VERSION, **plain(model)}
