"""Human-readable text for numbers the user sees (durations), shared by the CLI and the widgets."""

from __future__ import annotations

__all__ = ["format_seconds"]


def format_seconds(seconds: float) -> str:
    """A duration as ``m:ss`` (or ``h:mm:ss`` from one hour on).

    Parameters
    ----------
    seconds : float
        Duration; negative values count as 0 and fractions are rounded.

    Returns
    -------
    str
        For example ``"0:07"``, ``"12:05"``, ``"1:02:03"``.
    """
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
