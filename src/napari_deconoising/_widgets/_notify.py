"""Every message the plugin shows the user goes through :func:`show`.

Widgets, the compare command and the reader call :func:`info`, :func:`warning`,
:func:`error` or :func:`notify_error`; only :func:`show` talks to napari, so a
test collects all messages by patching that one function.
"""

from __future__ import annotations

from typing import Literal

from napari.utils import notifications

__all__ = [
    "Level",
    "Refused",
    "describe_error",
    "error",
    "info",
    "is_out_of_memory",
    "notify_error",
    "show",
    "warning",
]

Level = Literal["info", "warning", "error"]


class Refused(ValueError):
    """A request a widget cannot carry out that is not about the image (no model selected, no
    file name given): :func:`describe_error` shows it as its own sentence, with no prefix."""


def show(level: Level, message: str) -> None:
    """Show ``message`` as a napari notification of the given level."""
    {
        "info": notifications.show_info,
        "warning": notifications.show_warning,
        "error": notifications.show_error,
    }[level](message)


def info(message: str) -> None:
    show("info", message)


def warning(message: str) -> None:
    show("warning", message)


def error(message: str) -> None:
    show("error", message)


def describe_error(exc: BaseException, *, what: str = "the operation") -> str:
    """A message for the user that says what went wrong and what to do about it."""
    from ..core import Cancelled, ConfigError, DataError, ModelFileError, PSFError

    text = str(exc) or type(exc).__name__
    if is_out_of_memory(exc):
        return (
            f"Out of memory during {what}. Use a smaller tile size (prediction) or a smaller "
            "patch size / batch size or more micro-batches (training), or choose the CPU device."
        )
    if isinstance(exc, Cancelled):
        return f"{what.capitalize()} was cancelled."
    if isinstance(exc, Refused):
        return text[:1].upper() + text[1:]
    prefixes = (
        (DataError, "Cannot use this image"),
        (ConfigError, "Invalid setting"),
        (PSFError, "Problem with the PSF"),
        (ModelFileError, "Cannot load the model"),
    )
    for kind, prefix in prefixes:
        if isinstance(exc, kind):
            return f"{prefix}: {text}"
    if isinstance(exc, (FloatingPointError, ValueError, RuntimeError, OSError)):
        return f"{what.capitalize()} failed: {text}"
    return f"{what.capitalize()} failed ({type(exc).__name__}): {text}"


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.OutOfMemoryError, or a RuntimeError saying "out of memory" (older torch, MPS)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def notify_error(exc: BaseException, *, what: str = "the operation") -> str:
    """Show :func:`describe_error` as an error notification and return it."""
    message = describe_error(exc, what=what)
    error(message)
    return message
