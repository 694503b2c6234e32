"""Progress events of a training run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrainEvent"]


@dataclass(frozen=True)
class TrainEvent:
    """Progress of a training run.

    ``kind`` is ``"step"`` after every optimiser step and ``"epoch"`` after every
    epoch's validation (then ``val_loss`` is set and ``train_loss`` is the epoch
    mean). Epochs and steps count from 1; ``step`` counts over the whole run.
    """

    kind: str
    epoch: int
    epochs: int
    step: int
    total_steps: int
    train_loss: float
    val_loss: float | None
    lr: float
    elapsed_s: float
    eta_s: float
    is_best: bool = False

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps
