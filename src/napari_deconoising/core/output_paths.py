"""Whether writing some outputs would lose data: the one rule for prediction, batches and beads."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

__all__ = ["output_clash"]


def output_clash(outputs: Iterable[str | PathLike | None], sources: Iterable[str | PathLike]) -> str | None:
    """Why writing ``outputs`` would lose data, or None when it would not.

    An output that is an input, a folder holding one, or a path inside one (an array in
    its zarr store) destroys that input when it replaces it (:func:`.io.atomic_output`).
    Among the outputs, two of one name keep only the last one written, and an output
    holding another deletes it when it is written. Paths are compared resolved (links,
    ``..``) and, where they exist, by file identity, which also catches names that differ
    in letter case only on a file system that ignores it (macOS, Windows). The one rule
    for :func:`.predict_file.predict_file`, the command line's batches, where one file's
    output must not be another's input, and ``deconoising beads``.
    """
    _keys = functools.cache(_path_keys)  # for this call only: files appear and go between calls
    named: dict[Path, Path] = {}
    seen: dict[tuple, Path] = {}
    for p in outputs:
        if p is None:
            continue
        r = Path(p).resolve()
        if any(k in seen for k in _keys(r)):
            return f"two outputs name the same file {p}: one would replace the other; give each its own name"
        named[r] = Path(p)
        seen.update(dict.fromkeys(_keys(r), Path(p)))
    inputs = [(Path(s).resolve(), Path(s)) for s in sources]
    exact = {k: s for r, s in inputs for k in _keys(r)}
    # Every folder above an input, which a zarr output of its name would replace with the input inside.
    holders = {k: s for r, s in inputs for folder in r.parents for k in _keys(folder)}
    output_holders = {k: p for r, p in named.items() for folder in r.parents for k in _keys(folder)}
    for r, p in named.items():
        keys = _keys(r)
        if (s := _first(keys, exact)) is not None:
            return f"refusing to overwrite the input image {s}"
        if (s := _first(keys, holders)) is not None:
            return f"refusing to overwrite the input image {s}: the output {p} holds it"
        if (s := next((s for a in r.parents if (s := _first(_keys(a), exact)) is not None), None)) is not None:
            return f"refusing to overwrite the input image {s}: the output {p} lies inside it"
        if (q := _first(keys, output_holders)) is not None:
            return f"the output {p} holds the output {q}: writing it would delete that one; give each its own place"
    return None


def _first(keys: tuple, index: dict):
    return next((index[k] for k in keys if k in index), None)


def _path_keys(path: Path) -> tuple:
    """``path`` (resolved) as a name, and as a file (device and inode) where it exists."""
    try:
        st = path.stat()
    except OSError:
        return (("name", path),)
    return ("name", path), ("file", st.st_dev, st.st_ino)
