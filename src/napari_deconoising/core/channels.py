"""Multi-channel images: one independent model per channel.

Each channel gets its own normalisation, its own PSF (emission wavelengths differ) and
its own network, like CAREamics' default of independent channels. The per-channel
models are ordinary :class:`~napari_deconoising.core.model.DecoNoisingModel` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .data import DataError
from .model import DecoNoisingModel
from .predict import Prediction

if TYPE_CHECKING:
    from .config import TrainConfig
    from .train import TrainEvent

__all__ = ["ChannelModels", "split_channels", "per_channel", "train_channels"]

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

    def summary(self) -> str:
        """One line per channel."""
        return "\n".join(f"channel {k}: {m.summary()}" for k, m in enumerate(self.models))


def train_channels(image: np.ndarray, configs: TrainConfig | Sequence[TrainConfig], axes: str, *,
                   psfs: np.ndarray | Sequence[np.ndarray | None] | None = None,
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
    psf_list = [psfs] * n if psfs is None or isinstance(psfs, np.ndarray) else per_channel(list(psfs), n, "PSF")
    models = []
    for k, (view, cfg, psf) in enumerate(zip(views, cfgs, psf_list)):
        cb = None if callback is None else (lambda ev, k=k: callback(k, ev))
        models.append(train(view, cfg, axes=rest, psf=psf, callback=cb))
    return ChannelModels(models)
