"""An exponential moving average of a network's weights (``TrainConfig.weight_average``)."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["WeightAverage"]


class WeightAverage:
    """``avg = decay * avg + (1 - decay) * weights`` after every :meth:`update`; off when decay is 0.

    The average is a copy of the network made at the first update, so a trainer may still
    change its network (a learnable PSF, say) after construction. Buffers are averaged
    too: they are constants in this network (PSF kernels, blur-pool filters).
    """

    def __init__(self, decay: float) -> None:
        self.decay = float(decay)
        self._model: AveragedModel | None = None

    @property
    def module(self) -> torch.nn.Module | None:
        """The averaged network, or None while there is none (off, or before the first update)."""
        return None if self._model is None else self._model.module

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        """Fold the network's current weights into the average (the first call copies them)."""
        if self.decay <= 0:
            return
        if self._model is None:
            self._model = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        self._model.update_parameters(net)
