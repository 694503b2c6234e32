"""Multi-channel images: one independent model per channel.

Each channel gets its own normalisation, its own PSF (emission wavelengths differ) and
its own network, like CAREamics' default of independent channels. The per-channel
models are ordinary :class:`~napari_deconoising.core.model.DecoNoisingModel` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .data import DataError
from .model import NDIM_HINTS, DecoNoisingModel, check_resume_ndim
from .modelfile import CHANNELS_FORMAT_VERSION, ModelFileError, read_payload, write_payload
from .predict import Prediction
from .psf import PSFError, prepare_psf

if TYPE_CHECKING:
    from .config import TrainConfig
    from .train import TrainEvent

__all__ = ["ChannelModels", "check_resume", "check_single_resume", "channel_psfs", "load_model", "split_channels",
           "per_channel", "train_channels"]

T = TypeVar("T")


def split_channels(data: np.ndarray, axes: str) -> tuple[list[np.ndarray], str]:
    """Views of each channel of ``data`` (never copies) and the axes without ``C``.

    Data without a ``C`` axis is one channel.
    """
    axes = axes.upper()
    data = np.asarray(data)
    if len(axes) != data.ndim:
        raise DataError(f"axes {axes!r} has {len(axes)} letters but the image has {data.ndim} dimensions "
                        f"{data.shape}")
    if "C" not in axes:
        return [data], axes
    c = axes.index("C")
    views = []
    for i in range(data.shape[c]):
        index: list[Any] = [slice(None)] * data.ndim
        index[c] = i
        views.append(data[tuple(index)])
    return views, axes.replace("C", "")


def per_channel(value: T | Sequence[T] | None, n: int, what: str) -> list[T | None]:
    """``value`` for each of ``n`` channels: one value for all, or exactly one per channel."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return list(value) * n
        if len(value) != n:
            raise DataError(f"{len(value)} {what}s given for {n} channels: give one for all channels or one "
                            "per channel, in channel order")
        return list(value)
    return [value] * n


def channel_psfs(psfs: np.ndarray | Sequence[np.ndarray | None] | None, n: int, ndim: int
                 ) -> list[np.ndarray | None]:
    """Each of ``n`` channels' measured PSF, prepared for an ``ndim``-D model (None: no measured PSF).

    ``psfs`` is one PSF for all channels or exactly one per channel, in channel order.
    Checked here, before any channel trains, so that a bad last PSF does not end a
    long run after the first channels.

    Raises
    ------
    DataError
        Another number of PSFs than 1 or ``n``.
    PSFError
        A PSF that :func:`~napari_deconoising.core.psf.prepare_psf` refuses (e.g. a ZYX
        PSF for a 2D model), naming its channel.
    """
    if psfs is None:
        return [None] * n
    chosen = per_channel([psfs] if isinstance(psfs, np.ndarray) else list(psfs), n, "measured PSF")
    prepared: dict[int, np.ndarray] = {}  # one PSF shared by all channels is prepared once
    out: list[np.ndarray | None] = []
    for k, psf in enumerate(chosen):
        if psf is not None and id(psf) not in prepared:
            try:
                prepared[id(psf)] = prepare_psf(psf, ndim=ndim)
            except PSFError as e:
                raise PSFError(f"the PSF of channel {k + 1} of {n}: {e}" if n > 1 else str(e)) from None
        out.append(None if psf is None else prepared[id(psf)])
    return out


@dataclass
class ChannelModels:
    """One trained model per channel, applied channel by channel.

    Attributes
    ----------
    models : list of DecoNoisingModel
        In channel order.
    """

    models: list[DecoNoisingModel]

    @property
    def ndim(self) -> int:
        return self.models[0].ndim

    def predict(self, image: np.ndarray, axes: str, *,
                progress: Callable[[int, int], None] | None = None, **kwargs: Any) -> Prediction:
        """Denoise and deconvolve every channel with its own model; outputs keep the C axis.

        ``progress(done, total)`` counts tiles over all channels. Other keyword
        arguments (``tile_size``, ``device``, ``cancel``, ...) are passed to
        :meth:`DecoNoisingModel.predict` for each channel.
        """
        if axes is None:
            raise DataError(f"give the axes of the image (e.g. CYX or CZYX): the model has {len(self.models)} "
                            "channels, one per index of the C axis")
        views, rest = split_channels(image, axes)
        if len(views) != len(self.models):
            raise DataError(f"the image has {len(views)} channel(s) but the model has {len(self.models)}")
        den, dec = [], []
        finished = 0  # tiles of the channels already done
        for k, (model, view) in enumerate(zip(self.models, views)):
            seen = [0]

            def report(done: int, total: int, k: int = k, seen: list = seen, before: int = finished) -> None:
                seen[0] = total
                if progress is not None:  # later channels are assumed to need as many tiles
                    progress(before + done, before + total * (len(views) - k))

            p = model.predict(view, rest, progress=report, **kwargs)
            finished += seen[0]
            den.append(p.denoised)
            dec.append(p.deconvolved)
        c = axes.upper().index("C") if "C" in axes.upper() else 0
        return Prediction(np.stack(den, axis=c), np.stack(dec, axis=c))

    def predict_iter(self, image: np.ndarray, axes: str, **kwargs: Any
                     ) -> Generator[tuple[int, int], None, Prediction]:
        """Generator form of :meth:`predict`: yields ``(done, total)`` tiles over all channels
        (later channels are assumed to need as many tiles) and returns the Prediction."""
        if axes is None or "C" not in axes.upper():
            raise DataError(f"the model has one network per channel ({len(self.models)}): the image needs a "
                            "channel axis (C) in its axes, e.g. CYX or CZYX")
        views, rest = split_channels(image, axes)
        if len(views) != len(self.models):
            raise DataError(f"the image has {len(views)} channel(s) but the model has {len(self.models)}")
        den, dec, finished = [], [], 0
        for k, (model, view) in enumerate(zip(self.models, views)):
            gen, total = model.predict_iter(view, rest, **kwargs), 0
            try:
                while True:
                    done, total = next(gen)
                    yield finished + done, finished + total * (len(views) - k)
            except StopIteration as stop:
                p = stop.value
            finished += total
            den.append(p.denoised)
            dec.append(p.deconvolved)
        c = axes.upper().index("C")
        return Prediction(np.stack(den, axis=c), np.stack(dec, axis=c))

    def summary(self) -> str:
        """One line per channel."""
        return "\n".join(f"channel {k}: {m.summary()}" for k, m in enumerate(self.models, 1))

    # -- files ------------------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        """``{"channels": [model payload, ...]}``, in channel order."""
        return {"channels": [m.to_payload() for m in self.models]}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: str | PathLike = "the model file") -> ChannelModels:
        """Rebuild every channel's model (raises ModelFileError if one is damaged)."""
        channels = payload.get("channels")
        if not isinstance(channels, list) or not channels or not all(isinstance(c, dict) for c in channels):
            raise ModelFileError(f"{source} is damaged: its channel list is empty or not a list of models")
        return cls([DecoNoisingModel.from_payload(c, source=f"{source} (channel {k + 1})")
                    for k, c in enumerate(channels)])

    def save(self, path: str | PathLike) -> None:
        """Write all channels' models into one file, atomically (format version 2)."""
        write_payload(path, self.to_payload(), CHANNELS_FORMAT_VERSION)


def load_model(path: str | PathLike) -> DecoNoisingModel | ChannelModels:
    """Read a model file safely: a :class:`DecoNoisingModel`, or a :class:`ChannelModels` for a
    file with one model per channel.

    Raises
    ------
    ModelFileError
        With a message saying what is wrong: no such file, not a model file (corrupt,
        truncated or another program's), unsafe content, a newer format version, or
        weights that do not fit the network.
    """
    payload = read_payload(path)
    if "channels" in payload:
        return ChannelModels.from_payload(payload, source=path)
    return DecoNoisingModel.from_payload(payload, source=path)


def check_resume(resume: DecoNoisingModel | ChannelModels, channels: int, ndim: int, *,
                 hints: Mapping[int, str] = NDIM_HINTS) -> ChannelModels:
    """``resume`` as the models to continue on an image with ``channels`` channels, or a clear error.

    The per-channel form of the single-channel checks: a model per channel, as many as
    the image has channels, each of the dimensionality being trained (2D <-> 3D is a
    different network, never a silent switch). ``hints``: how the caller's controls switch
    between 2D and 3D (see :func:`~napari_deconoising.core.model.check_resume_ndim`).

    Raises
    ------
    DataError
        A single-channel model, or another channel count.
    ConfigError
        A channel's model is 2D where ``ndim`` is 3, or the other way round.
    """
    if not isinstance(resume, ChannelModels):
        raise DataError(f"the model to resume has one network, for images without a channel axis; this image "
                        f"has {channels} channels (C): train a new model, or resume with a model per channel")
    if len(resume.models) != channels:
        raise DataError(f"the model to resume has {len(resume.models)} channels but the image has {channels}")
    for k, m in enumerate(resume.models):
        check_resume_ndim(m, ndim, f"channel {k + 1} of the model to resume", hints)
    return resume


def check_single_resume(resume: DecoNoisingModel | ChannelModels, ndim: int, *,
                        hints: Mapping[int, str] = NDIM_HINTS) -> DecoNoisingModel:
    """``resume`` as the model to continue on an image without channels, or a clear error
    (``hints`` as for :func:`check_resume`).

    Raises
    ------
    DataError
        A model per channel (it needs an image with those channels).
    ConfigError
        A 2D model where ``ndim`` is 3, or the other way round.
    """
    if isinstance(resume, ChannelModels):
        n = len(resume.models)
        raise DataError(f"the model to resume holds one model per channel ({n} channels): resume needs an image "
                        f"with {n} channels, not one without a channel axis (C)")
    check_resume_ndim(resume, ndim, hints=hints)
    return resume


def train_channels(image: np.ndarray, configs: TrainConfig | Sequence[TrainConfig], axes: str, *,
                   psfs: np.ndarray | Sequence[np.ndarray | None] | None = None,
                   resume: ChannelModels | None = None,
                   callback: Callable[[int, TrainEvent], bool | None] | None = None) -> ChannelModels:
    """Train one model per channel of ``image``.

    Parameters
    ----------
    image : numpy.ndarray
        Noisy data with a ``C`` axis in ``axes`` (without one it is a single channel).
    configs : TrainConfig or sequence of TrainConfig
        One for all channels, or one per channel (e.g. a PSF sigma per emission
        wavelength).
    axes : str
        Axis letters of ``image``, e.g. ``CYX``, ``CZYX``, ``TCZYX``.
    psfs : array or sequence of arrays, optional
        Measured PSFs: one for all channels or one per channel.
    resume : ChannelModels, optional
        Continue these models, channel k from ``resume.models[k]`` (see
        :class:`~napari_deconoising.core.train.Trainer`'s ``resume``; checked with
        :func:`check_resume` before any channel trains).
    callback : callable, optional
        ``callback(channel, event)`` for every training event; returning True stops
        that channel's training (the best model so far is kept).

    Returns
    -------
    ChannelModels
        The channels' models, in channel order.
    """
    from .train import train

    views, rest = split_channels(image, axes)
    n = len(views)
    cfgs = per_channel(configs, n, "configuration")
    psf_list = channel_psfs(psfs, n, cfgs[0].ndim)
    starts = [None] * n if resume is None else check_resume(resume, n, cfgs[0].ndim).models
    models = []
    for k, (view, cfg, psf, start) in enumerate(zip(views, cfgs, psf_list, starts)):
        cb = None if callback is None else (lambda ev, k=k: callback(k, ev))
        models.append(train(view, cfg, axes=rest, psf=psf, resume=start, callback=cb))
    return ChannelModels(models)
