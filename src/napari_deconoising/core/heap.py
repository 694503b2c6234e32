"""glibc's allocator while a network trains on the CPU: keep freed memory for the next step.

A CPU training step allocates its activations and gradients afresh (tens to hundreds of
megabytes at the demo size) and frees them at its end. With glibc's default settings most of
that memory goes back to the kernel between steps (maps above the mmap threshold are unmapped,
a heap top above the trim threshold is trimmed), so every step faults it in again, page by
zeroed page: about 20 000 page faults and 10-25 % of a 2D fp32 step at the demo size
(``benchmarks/roofline.py``, ``benchmarks/speed_heap.py``). :func:`retained_heap` raises both
thresholds while training runs, so the memory freed by one step serves the next; at its end the
free memory is handed back (``malloc_trim``). Other C libraries (musl, macOS, Windows) are left
alone. ``DECONOISING_RETAIN_HEAP=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["ENV", "retained_heap"]

ENV = "DECONOISING_RETAIN_HEAP"

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# glibc's largest mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2), also the ceiling of
# its own dynamic threshold: blocks up to this size come from the heap and are reused.
MMAP_THRESHOLD = 32 * 2**20
# Free memory at the heap's top kept while training: more than a step frees at the demo
# size, and given back when training ends.
TRIM_WHILE_TRAINING = 2**30
# Afterwards: twice the mmap threshold, the ratio glibc's dynamic rule keeps.
TRIM_AFTER = 2 * MMAP_THRESHOLD

_lock = threading.Lock()
_users = 0
_glibc: ctypes.CDLL | None | bool = False  # False: not looked up yet


def _libc() -> ctypes.CDLL | None:
    """The process' glibc, or None where the C library is another one."""
    global _glibc
    if _glibc is False:
        _glibc = None
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None)
                # musl has mallopt as a stub but no gnu_get_libc_version.
                if all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
                    _glibc = libc
            except OSError:
                pass
    return _glibc


@contextlib.contextmanager
def retained_heap(active: bool = True) -> Iterator[bool]:
    """Keep the memory freed between training steps in the process while the block runs.

    Parameters
    ----------
    active : bool
        False (a GPU run, whose activations are not in host memory) leaves the allocator as
        it is.

    Yields
    ------
    bool
        Whether the settings were changed (glibc, enabled, ``active``).

    Notes
    -----
    Process-wide and reference-counted: concurrent runs share one setting, and the last to
    finish restores the trim threshold (to :data:`TRIM_AFTER`) and hands the free memory back.
    The mmap threshold stays at :data:`MMAP_THRESHOLD`, where glibc's dynamic rule ends up
    after large blocks have been freed.
    """
    global _users
    libc = _libc() if active and os.environ.get(ENV, "1") != "0" else None
    if libc is None:
        yield False
        return
    with _lock:
        if _users == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_WHILE_TRAINING)
        _users += 1
    try:
        yield True
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_AFTER)
                libc.malloc_trim(0)
