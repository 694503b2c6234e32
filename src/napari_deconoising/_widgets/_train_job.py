"""A training run: the worker-thread generator, its messages and the run's state."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
from napari.layers import Image

from ..core import ChannelModels, DecoNoisingModel, TrainConfig, Trainer, TrainEvent
from ..core.channels import split_channels
from ..core.cuda_graph import describe_steps
from ..core.learned_psf import LearnedSigmaTrainer, estimation_config, sigma_text

__all__ = ["ChannelStart", "NoModel", "Ready", "TrainControl", "TrainRun", "channels_job", "train_job"]


@dataclass(frozen=True)
class Ready:
    """Sent once by :func:`train_job` when data and network are set up."""

    warnings: list[str]
    patch: str  # e.g. "64x64", "16x64x64"
    device: str
    precision: str
    reason: str = ""  # why this precision (the measured choice, or "requested")


@dataclass(frozen=True)
class NoModel:
    """What :func:`train_job` returns when a stopped run has no model worth keeping."""

    reason: str  # e.g. "stopped before the first epoch ended"


@dataclass(frozen=True)
class ChannelStart:
    """Sent by :func:`channels_job` before each channel's training (its Ready follows)."""

    index: int  # from 0, in channel order
    count: int
    name: str  # what the user calls the channel: its source layer, or "channel 2"
    # the epochs its model had trained before, when it is continued (plotted before the new ones)
    history: tuple[dict, ...] = field(default=(), hash=False)


@dataclass
class TrainRun:
    """What the Train widget knows about the current (or last) training run."""

    layer: Image
    axes: str
    data: np.ndarray | None  # the training copy; dropped once the prediction has ended
    config: TrainConfig
    run_id: str
    # Where this run's epoch 0 is on the plot: after a resumed model's epochs; with channels, where the
    # curve ended when this channel's run (or its second run, after learning sigma) started.
    epoch_offset: float = 0
    resumed: str | None = None
    channel_layers: list[Image] | None = None  # a model per channel: the layer(s) its channels came from
    channel: ChannelStart | None = None  # the channel in training
    device: str | None = None  # known once the worker sends Ready
    last_event: TrainEvent | None = None
    t0: float = field(default_factory=time.perf_counter)

    def plot_x(self, ev: TrainEvent) -> float:
        """Fractional epoch of a step event, counting the resumed model's epochs."""
        spe = ev.total_steps // ev.epochs  # the event's own run: a sigma-learning run has other epochs
        in_epoch = (ev.step - 1) % spe + 1
        return self.epoch_offset + ev.epoch - 1 + in_epoch / spe


class TrainControl:
    """Shared between the GUI and the worker thread: holds the trainer and the stop flag."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.trainer: Trainer | None = None

    def stop(self) -> None:
        self._stop.set()
        trainer = self.trainer
        if trainer is not None:
            trainer.stop()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


def train_job(
    control: TrainControl,
    data: np.ndarray,
    config: TrainConfig,
    axes: str,
    psf: np.ndarray | None,
    resume: DecoNoisingModel | None,
    estimate_sigma: bool = False,
) -> Generator[Ready | TrainEvent | dict, None, DecoNoisingModel | NoModel]:
    """Worker-thread generator: build the trainer, then forward its events.

    Yields one :class:`Ready` and then :class:`TrainEvent` objects; returns the best model.
    With ``estimate_sigma`` (ignored when resuming: the model keeps its PSF) the network
    learns the PSF sigma in a short run; then the estimate (a dict, see
    :meth:`~napari_deconoising.core.learned_psf.LearnedSigmaTrainer.estimate`) is
    yielded, and the full training with that sigma (the default when it is not clear)
    follows (another Ready and its events).

    Returns :class:`NoModel` instead of a model when stopped before the first epoch ended
    (the weights are untrained) or while learning sigma (the learning run's model, with a
    sigma taken part way, is not the model the user asked for).
    """
    if estimate_sigma and resume is None:
        learner = LearnedSigmaTrainer(data, estimation_config(config), axes=axes)
        yield from _forward(control, learner)
        if control.stop_requested:  # before the edge fit, which takes up to a minute in 3D
            learned = learner.estimate(check_edges=False)["learned"]
            return NoModel(f"stopped while learning the PSF sigma (at {sigma_text(learned)} px so far)")
        estimate = learner.estimate()
        if control.stop_requested:
            return NoModel("stopped while checking the learned PSF sigma against the image's edges")
        yield estimate
        model = yield from _forward(control, Trainer(data, config.replace(psf_sigma=estimate["sigma"]), axes=axes))
        if not isinstance(model, NoModel):
            model.psf_estimate = estimate
        return model
    return (yield from _forward(control, Trainer(data, config, axes=axes, psf=psf, resume=resume)))


def channels_job(
    control: TrainControl,
    data: np.ndarray,
    configs: Sequence[TrainConfig],
    axes: str,
    psfs: Sequence[np.ndarray | None],
    estimate_sigma: bool = False,
    names: Sequence[str] | None = None,
    resume: ChannelModels | None = None,
) -> Generator[ChannelStart | Ready | TrainEvent | dict, None, ChannelModels | None]:
    """Worker-thread generator: one model per channel of ``data`` (axes with a ``C``), one channel
    after the other, each announced by a :class:`ChannelStart` and then trained like :func:`train_job`.

    ``resume`` (checked by the caller with :func:`~napari_deconoising.core.channels.check_resume`)
    continues its channel k on channel k. Returns the
    :class:`~napari_deconoising.core.ChannelModels`, or None when stopped before the last channel:
    a model per channel is only usable with every channel trained.
    """
    views, rest = split_channels(data, axes)
    names = list(names) if names is not None else [f"channel {k + 1}" for k in range(len(views))]
    starts = [None] * len(views) if resume is None else resume.models
    models = []
    for k, (view, config, psf, start) in enumerate(zip(views, configs, psfs, starts, strict=True)):
        if control.stop_requested:
            return None
        yield ChannelStart(k, len(views), names[k], () if start is None else tuple(start.history))
        model = yield from train_job(control, view, config, rest, psf, start, estimate_sigma)
        if isinstance(model, NoModel):
            return None
        models.append(model)
    return ChannelModels(models)


def _forward(control: TrainControl, trainer: Trainer,
             ) -> Generator[Ready | TrainEvent, None, DecoNoisingModel | NoModel]:
    """Announce ``trainer`` (Ready) and pass its events on; returns its best model (NoModel before any epoch)."""
    control.trainer = trainer
    if control.stop_requested:
        trainer.stop()
    yield Ready(
        warnings=list(trainer.warnings),
        patch="x".join(map(str, trainer.patch_shape)),
        device=str(trainer.plan.device),
        precision=trainer.plan.precision,
        reason="; ".join(filter(None, (trainer.plan.reason,
                                       describe_steps(trainer.plan.device, trainer.graph_blocker)))),
    )
    model = yield from trainer.run()
    return model if trainer.has_model else NoModel("stopped before the first epoch ended")
