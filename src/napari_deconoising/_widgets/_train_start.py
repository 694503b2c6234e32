"""What "Start training" runs: the Train form's inputs, checked, as a worker job.

The checks themselves are the core's (:func:`~napari_deconoising.core.channels.check_resume`,
:func:`~napari_deconoising.core.channels.check_single_resume`, ``channel_psfs``), shared with
the command line; this module only gathers the form's values for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari.layers import Image

from ..core import ChannelModels, DecoNoisingModel, TrainConfig
from ..core.channels import check_resume, check_single_resume
from ._large import layer_data
from ._registry import REGISTRY
from ._train_channels import ChannelInput, channel_input
from ._train_form import NEW_MODEL, TrainForm
from ._train_job import TrainControl, channels_job, train_job

__all__ = ["GUI_NDIM_HINTS", "RunPlan", "continuing_text", "plan_run"]

#: How to train in the resumed model's dimensions (3 or 2) with the form's controls: the core's
#: own wording is the Python API's (ndim=3 in the TrainConfig), which the user of the widget never sees.
GUI_NDIM_HINTS = {3: f"tick the 3D box, for an Image with a Z axis, or set Start from to '{NEW_MODEL}'",
                  2: f"untick the 3D box, or set Start from to '{NEW_MODEL}'"}


@dataclass
class RunPlan:
    """A training run the form describes, ready to start.

    Attributes
    ----------
    job : tuple
        The worker generator function and its arguments.
    layer : Image
        The form's Image (channel 1 when the channels are separate layers).
    config : TrainConfig
        The form's configuration (each channel's differs in its PSF only).
    data, axes
        The training copy (or lazy array) and its axes (with a ``C`` for channels).
    channels : ChannelInput or None
        Where the channels come from; None for one channel.
    resume : DecoNoisingModel or ChannelModels or None
        The model to continue (checked against the image), and its session name.
    """

    job: tuple[Callable[..., Any], ...]
    layer: Image
    config: TrainConfig
    data: Any
    axes: str
    channels: ChannelInput | None
    resume: DecoNoisingModel | ChannelModels | None = None
    resumed: str | None = None
    #: Worth a warning, not a refusal (a PSF layer made at another pixel size than the image).
    warnings: tuple[str, ...] = ()

    @property
    def epochs_before(self) -> int:
        """Epochs a resumed single-channel model has trained (its loss curve goes on from there)."""
        return len(self.resume.history) if isinstance(self.resume, DecoNoisingModel) else 0


def plan_run(form: TrainForm, control: TrainControl) -> RunPlan:
    """The run the form describes, or a ValueError subclass saying what is wrong (nothing is changed).

    A model to resume is checked before any data is copied: a model per channel needs an
    image with as many channels, a single model one without, and 2D/3D must match. A
    resumed model keeps its own PSF, so the PSF rows are not read then.
    """
    layer, axes = form.image_and_axes()
    config = form.config()
    channels = channel_input(layer, axes, form.extra_layer_list())
    resumed = form.resume_name()
    resume = REGISTRY.get(resumed) if resumed is not None else None
    if channels is not None:
        if resume is not None:
            check_resume(resume, channels.count, config.ndim, hints=GUI_NDIM_HINTS)
            configs, psfs = [config] * channels.count, [None] * channels.count
        else:
            configs = form.channel_configs(config, channels.count)
            psfs = form.channel_psfs(configs)
        data = channels.data()
        job = (channels_job, control, data, configs, channels.axes, psfs, form.estimate_sigma(), channels.names(),
               resume)
        return RunPlan(job, layer, config, data, channels.axes, channels, resume, resumed)
    if resume is not None:
        check_single_resume(resume, config.ndim, hints=GUI_NDIM_HINTS)
    data = layer_data(layer)  # a dask/zarr layer stays lazy: patches are read as drawn
    psf = form.measured_psf() if resume is None else None
    job = (train_job, control, data, config, axes, psf, resume, form.estimate_sigma())
    note = psf_sampling_text(form, layer, axes, config.ndim) if psf is not None else None
    return RunPlan(job, layer, config, data, axes, None, resume, resumed, warnings=(note,) if note else ())


def psf_sampling_text(form: TrainForm, layer: Image, axes: str, ndim: int) -> str | None:
    """A warning when the form's PSF layer has another pixel size than the Image, else None."""
    from ..core.units import sampling_mismatch
    from ._bead_layers import pixel_size_nm
    from ._train_form import PSF_LAYER

    psf_layer = form.psf_layer.value
    if form.psf_kind.value != PSF_LAYER or psf_layer is None or psf_layer.ndim != ndim:
        return None
    kept = "ZYX"[-ndim:]
    psf_nm, _ = pixel_size_nm(psf_layer, kept, kept)
    image_nm, _ = pixel_size_nm(layer, axes, kept) if set(kept) <= set(axes) else (None, "")
    if psf_nm is None or image_nm is None:
        return None
    differ = sampling_mismatch(dict(zip(kept, psf_nm)), dict(zip(kept, image_nm)))
    if differ is None:
        return None
    return (f"The PSF layer '{psf_layer.name}' has another pixel size than '{layer.name}' ({differ}): a PSF is a "
            "kernel in pixels, so its width does not fit this image. Measure or compute it at the image's pixel size.")


def continuing_text(plan: RunPlan) -> str | None:
    """What a resumed run keeps of the model when the form asks for another architecture, else None."""
    if plan.resume is None:
        return None
    kept = plan.resume.models[0].config if isinstance(plan.resume, ChannelModels) else plan.resume.config
    if (kept.depth, kept.channels) == (plan.config.depth, plan.config.channels):
        return None
    per = " of every channel" if isinstance(plan.resume, ChannelModels) else ""
    return (f"Continuing '{plan.resumed}': its architecture{per} (depth {kept.depth}, {kept.channels} channels) "
            "and PSF are kept.")
