"""Console output for the command line and the demo: a progress bar and a foreground training run."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO

import numpy as np

from .core.config import TrainConfig
from .core.cuda_graph import describe_steps
from .core.distributed import DDP
from .core.formatting import format_seconds
from .core.model import DecoNoisingModel
from .core.predict import Cancelled
from .core.train import Trainer

__all__ = ["ProgressBar", "one_line_warnings", "run_training"]


class ProgressBar:
    """A one-line progress bar on a stream (redrawn in place when it is a terminal).

    Parameters
    ----------
    total : int
        The count that means 100%.
    stream : file-like, optional
        Where to draw; standard error by default. On a non-terminal only
        :meth:`println` lines are written, so logs stay readable.
    width : int
        Characters of the bar itself.
    """

    def __init__(self, total: int, stream: IO[str] | None = None, width: int = 30) -> None:
        self.total, self.width = total, width
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = 0.0

    def update(self, done: int, text: str = "") -> None:
        """Show ``done`` of ``total`` with ``text`` after the bar (at most 10 redraws a second)."""
        now = time.monotonic()
        if self.tty and done < self.total and now - self._last < 0.1:
            return
        self._last = now
        frac = done / self.total if self.total else 1.0
        bar = "#" * int(frac * self.width)
        line = f"[{bar:<{self.width}}] {frac:4.0%} {text}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()

    def println(self, line: str) -> None:
        """Write a permanent line above the bar."""
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Erase the bar."""
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run_training(images: np.ndarray | Sequence[np.ndarray], cfg: TrainConfig, *, axes: str | None = None,
                 psf: np.ndarray | None = None, resume: DecoNoisingModel | None = None,
                 out: IO[str] | None = None, label: str = "",
                 ddp: DDP | None = None, trainer: Trainer | None = None) -> tuple[DecoNoisingModel, Trainer]:
    """Train in the foreground, printing an estimate, a progress bar and one line per epoch.

    Ctrl-C stops training and keeps the best model so far.

    Parameters
    ----------
    images, cfg, axes, psf, resume
        As for :class:`~napari_deconoising.core.train.Trainer`.
    out : file-like, optional
        Where to print; standard error by default.
    label : str
        Prefix for the printed lines (the demo trains two models).
    ddp : DDP, optional
        This process' place in a ``torchrun`` run.
    trainer : Trainer, optional
        An already built trainer (e.g. one that learns the PSF sigma) instead of one
        made from the other arguments.

    Returns
    -------
    model : DecoNoisingModel
        The best model.
    trainer : Trainer
        The finished trainer (its history, plan and warnings).
    """
    out = out or sys.stderr
    trainer = trainer or Trainer(images, cfg, axes=axes, psf=psf, resume=resume, ddp=ddp)
    cfg = trainer.config
    for note in trainer.warnings:
        print(f"deconoising: warning: {note}", file=out)
    print(f"{label}precision {trainer.plan.precision} on {trainer.plan.device}: {trainer.plan.reason}", file=out)
    steps = describe_steps(trainer.plan.device, trainer.graph_blocker)
    if steps:
        print(f"{label}{steps}", file=out)
    per_step = trainer.estimate_step_seconds(steps=1)
    patch = "x".join(map(str, trainer.patch_shape))
    print(f"{label}training {cfg.epochs} epochs x {cfg.steps_per_epoch} steps of {cfg.batch_size} "
          f"{patch}px patches on {trainer.plan.device} ({trainer.plan.precision}); "
          f"estimated {format_seconds(per_step * cfg.total_steps)} ({per_step:.2f} s/step)", file=out)
    bar = ProgressBar(cfg.total_steps, out)
    try:
        for ev in trainer.run():
            if ev.kind == "step":
                bar.update(ev.step, f"epoch {ev.epoch}/{ev.epochs} loss {ev.train_loss:.4f} "
                                    f"left {format_seconds(ev.eta_s)}")
            else:
                star = " *" if ev.is_best else ""
                bar.println(f"{label}epoch {ev.epoch:4d}/{ev.epochs}  train {ev.train_loss:.5f}  "
                            f"val {ev.val_loss:.5f}  lr {ev.lr:.2e}  {format_seconds(ev.elapsed_s)}{star}")
    except KeyboardInterrupt:
        trainer.stop()  # callers can tell an interrupted run by trainer.stopped
        if not trainer.has_model:  # (the bar is closed by the finally clause)
            raise Cancelled("interrupted before the first epoch ended: no model was saved") from None
        bar.println("interrupted: keeping the best model so far")
    finally:
        bar.close()
    return trainer.model, trainer


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """The engine's own warnings (:class:`~.core.data.DataWarning`) as ``deconoising: warning: ...``
    lines on stderr, not Python's two-line form with a source line; other warnings as usual."""
    from .core.data import DataWarning

    with warnings.catch_warnings():
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, DataWarning):
                print(f"deconoising: warning: {message}", file=sys.stderr)
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield
