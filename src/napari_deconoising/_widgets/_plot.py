"""Live training and validation loss plot (matplotlib embedded in Qt)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

__all__ = ["LossPlot"]


class LossPlot(QWidget):
    """Train/validation loss against epoch on a log scale.

    Lines are created once and updated with ``set_data``; redraws are coalesced by
    a single-shot timer (at most one every ``interval_ms``), so a fast stream of
    events costs almost nothing. Given a ``viewer``, the plot takes the colours of
    its theme and follows theme changes.
    """

    def __init__(
        self, parent: QWidget | None = None, interval_ms: int = 500, viewer: Any = None
    ) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(3.2, 2.2), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(160)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.ax = self.figure.add_subplot(111)
        self.ax.set_yscale("log")
        self.ax.set_xlabel("epoch")
        self.ax.set_ylabel("loss")
        (self.step_line,) = self.ax.plot(
            [], [], lw=0.6, alpha=0.35, color="#5fa8d3", label="_steps"
        )
        (self.train_line,) = self.ax.plot(
            [], [], lw=1.5, color="#1f77b4", marker=".", label="train"
        )
        (self.val_line,) = self.ax.plot(
            [], [], lw=1.5, color="#ff7f0e", marker=".", label="validation"
        )
        self.ax.legend(loc="upper right", fontsize=8, frameon=False)
        self.ax.tick_params(labelsize=8)
        self.steps: tuple[list[float], list[float]] = ([], [])
        self.train: tuple[list[float], list[float]] = ([], [])
        self.val: tuple[list[float], list[float]] = ([], [])
        self.draw_count = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.redraw)
        self._viewer = viewer
        if viewer is not None:
            viewer.events.theme.connect(self._on_theme)
            self._on_theme()

    # -- data ------------------------------------------------------------------------
    def clear(self) -> None:
        for xs, ys in (self.steps, self.train, self.val):
            xs.clear()
            ys.clear()
        self._schedule()

    def add_step(self, x: float, loss: float) -> None:
        """A per-step training loss at fractional epoch ``x`` (drawn faintly)."""
        if math.isfinite(loss) and loss > 0:
            self.steps[0].append(x)
            self.steps[1].append(loss)
            self._schedule()

    def add_epoch(self, epoch: float, train_loss: float, val_loss: float | None) -> None:
        """End-of-epoch mean training loss and validation loss."""
        self.train[0].append(epoch)
        self.train[1].append(train_loss)
        if val_loss is not None:
            self.val[0].append(epoch)
            self.val[1].append(val_loss)
        self._schedule()

    def set_history(self, history: Sequence[dict]) -> None:
        """Show a model's stored history alone (e.g. when continuing training)."""
        self.clear()
        self.add_history(history)

    def add_history(self, history: Sequence[dict], offset: float = 0) -> None:
        """Add a model's stored epochs, ``offset`` epochs along the axis (e.g. a channel's
        earlier training after the previous channels' curves)."""
        for k, h in enumerate(history):
            self.add_epoch(offset + h.get("epoch", k + 1), h["train_loss"], h.get("val_loss"))

    @property
    def end(self) -> float:
        """The epoch where the curve ends so far (0 when empty): where a following run starts."""
        return max(self.train[0][-1:] + self.steps[0][-1:], default=0)

    @property
    def n_points(self) -> int:
        return len(self.train[0]) + len(self.val[0])

    # -- drawing ---------------------------------------------------------------------
    def _schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def redraw(self) -> None:
        self.step_line.set_data(*self.steps)
        self.train_line.set_data(*self.train)
        self.val_line.set_data(*self.val)
        self.ax.relim()
        self.ax.autoscale_view()
        self.canvas.draw_idle()
        self.draw_count += 1

    def _on_theme(self, _event: Any = None) -> None:
        try:
            from napari.utils.theme import get_theme

            theme = get_theme(self._viewer.theme).to_rgb_dict()
        except Exception:  # theme support is cosmetic
            return
        with contextlib.suppress(RuntimeError):  # plot already deleted
            self.apply_theme(theme)

    def apply_theme(self, theme: dict) -> None:
        """Colour the figure like the napari theme (``get_theme(name).to_rgb_dict()``)."""
        bg = _css(theme.get("background", theme.get("canvas")))
        fg = _css(theme.get("text"))
        if bg is None or fg is None:
            return
        self.figure.set_facecolor(bg)
        self.ax.set_facecolor(bg)
        for spine in self.ax.spines.values():
            spine.set_color(fg)
        self.ax.tick_params(colors=fg, which="both")
        self.ax.xaxis.label.set_color(fg)
        self.ax.yaxis.label.set_color(fg)
        legend = self.ax.get_legend()
        if legend is not None:
            for t in legend.get_texts():
                t.set_color(fg)
        self.canvas.draw_idle()


def _css(value) -> str | None:
    """napari theme colours come as 'rgb(r, g, b)' strings or RGB tuples."""
    if value is None:
        return None
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("rgb"):
            nums = [float(v) for v in s[s.index("(") + 1 : s.index(")")].split(",")[:3]]
            return "#" + "".join(f"{int(v):02x}" for v in nums)
        return s
    try:
        r, g, b = list(value)[:3]
        return "#" + "".join(f"{int(v):02x}" for v in (r, g, b))
    except (TypeError, ValueError):
        return None
