"""Running core generators off the GUI thread.

The worker thread only iterates a generator from the core and forwards what it
yields; every widget or layer update happens in the main thread through the
worker's signals. :data:`SYNC` switches to running the generator in the calling
thread (deterministic tests, scripts), with the same callbacks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

__all__ = ["SYNC", "Job"]

#: Run jobs synchronously in the calling thread instead of a worker thread.
SYNC = False


_CANCELLED = object()


class Job:
    """One generator run in a thread worker (or synchronously when :data:`SYNC` is set).

    Parameters
    ----------
    func : callable
        Generator function; called with ``*args`` in the worker thread.
    yielded, returned, errored, cancelled, finished : callable, optional
        Called in the main thread with each yielded value, the return value, the
        exception, nothing (after :meth:`quit`), and (always, last) nothing.

    :meth:`quit` closes the generator at its next ``yield`` inside the worker thread,
    so the generator's ``finally`` blocks run there and then.  :meth:`detach` drops
    all callbacks (for a widget that is going away) and stops the job.
    """

    def __init__(
        self,
        func: Callable[..., Generator],
        *args: Any,
        yielded: Callable[[Any], None] | None = None,
        returned: Callable[[Any], None] | None = None,
        errored: Callable[[BaseException], None] | None = None,
        cancelled: Callable[[], None] | None = None,
        finished: Callable[[], None] | None = None,
    ) -> None:
        self.func, self.args = func, args
        self._callbacks = {
            "yielded": yielded,
            "returned": returned,
            "errored": errored,
            "cancelled": cancelled,
            "finished": finished,
        }
        self.worker = None
        self.running = False
        self._quit = threading.Event()
        self._done = threading.Event()

    def start(self) -> Job:
        self.running = True
        if SYNC:
            self._run_sync()
            return self
        from superqt.utils import create_worker

        # superqt's generator worker (the base of napari.qt.threading.thread_worker)
        # without napari's generic error relay: `errored` shows a specific message.
        self.worker = create_worker(
            self._wrapped, _start_thread=False, _connect={"errored": self._on_error}
        )
        self.worker.yielded.connect(self._on_yield)
        self.worker.returned.connect(self._on_return)
        self.worker.finished.connect(self._on_finished)
        self.worker.start()
        return self

    def quit(self) -> None:
        """Close the generator at its next ``yield`` (thread-safe)."""
        self._quit.set()

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until the generator has ended; True if it did within ``timeout`` s."""
        if not self.running:
            return True
        return self._done.wait(timeout)

    def detach(self) -> None:
        """Forget all callbacks and stop: for a widget that is closing."""
        for k in self._callbacks:
            self._callbacks[k] = None
        self.quit()

    # -- internals ---------------------------------------------------------------
    def _wrapped(self):
        try:
            gen = self.func(*self.args)
            try:
                while True:
                    if self._quit.is_set():
                        gen.close()
                        return _CANCELLED
                    try:
                        value = next(gen)
                    except StopIteration as stop:
                        return stop.value
                    yield value
            finally:
                gen.close()
        finally:
            self._done.set()

    def _call(self, name: str, *args: Any) -> None:
        cb = self._callbacks.get(name)
        if cb is not None:
            cb(*args)

    def _on_yield(self, value: Any) -> None:
        self._call("yielded", value)

    def _on_return(self, value: Any) -> None:
        if value is _CANCELLED:
            self._call("cancelled")
        else:
            self._call("returned", value)

    def _on_error(self, exc: BaseException) -> None:
        self._call("errored", exc)

    def _on_finished(self) -> None:
        self.running = False
        self._call("finished")

    def _run_sync(self) -> None:
        gen = self._wrapped()
        try:
            while True:
                try:
                    value = next(gen)
                except StopIteration as stop:
                    self._on_return(stop.value)
                    break
                self._on_yield(value)
        except Exception as exc:  # same contract as the threaded worker
            self._on_error(exc)
        finally:
            self._on_finished()
