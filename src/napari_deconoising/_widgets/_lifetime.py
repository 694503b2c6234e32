"""Widgets that run jobs in worker threads: stopping those jobs when the widget or its window closes."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget

from ._worker import Job

__all__ = ["JobWidget"]


class _Lifetime:
    """Holds the running jobs, so closing can stop them without touching the widget."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Job, Any]] = []  # (job, controller with .stop() or None)

    def track(self, job: Job, controller: Any = None) -> None:
        self.jobs = [(j, c) for j, c in self.jobs if j.running]
        self.jobs.append((job, controller))

    def shutdown(self, wait_s: float = 60.0) -> None:
        for job, ctl in self.jobs:
            if ctl is not None:
                ctl.stop()
            job.detach()
        for job, _ in self.jobs:
            job.wait(wait_s)
        self.jobs.clear()


class _CloseWatcher(QObject):
    """Stops the jobs when the napari window that holds the widget closes."""

    def __init__(self, lifetime: _Lifetime, parent: QObject) -> None:
        super().__init__(parent)
        self._lifetime = lifetime

    def eventFilter(self, obj, event):  # noqa: N802 (Qt API)
        if event.type() == QEvent.Type.Close:
            self._lifetime.shutdown()
        return False


class JobWidget(QWidget):
    """A dock widget whose jobs (:meth:`track`) stop when it, or the napari window holding it, closes."""

    def __init__(self) -> None:
        super().__init__()
        self._lifetime = _Lifetime()
        lifetime = self._lifetime
        # The lambda holds the lifetime object, not the widget.
        self.destroyed.connect(lambda *_: lifetime.shutdown())
        self._watched_window = None

    def track(self, job: Job, controller: Any = None) -> None:
        """Stop ``job`` (and ``controller``, anything with ``.stop()``) when the widget closes."""
        self._lifetime.track(job, controller)

    def showEvent(self, event):  # noqa: N802 (Qt API)
        super().showEvent(event)
        window = self.window()
        if window is not self and window is not self._watched_window:
            window.installEventFilter(_CloseWatcher(self._lifetime, window))
            self._watched_window = window

    def closeEvent(self, event):  # noqa: N802 (Qt API)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop running work and wait for the worker threads to end."""
        self._lifetime.shutdown()
        self._after_shutdown()

    def _after_shutdown(self) -> None:
        pass
