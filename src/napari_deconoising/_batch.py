"""``deconoising predict`` over one file or many: output names, one progress bar, bad files skipped."""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._console import ProgressBar
from .bioimageio import load_any_model
from .core.data import DataError
from .core.io import FORMATS, ImageFileError, image_format, is_zarr_store
from .core.output_paths import output_clash
from .core.predict import Cancelled, prediction_plan
from .core.predict_file import predict_file

__all__ = ["Job", "expand_inputs", "plan_outputs", "run_predict"]

_SUFFIXES = {s for fmt in FORMATS for s in fmt.suffixes}


class UsageError(Exception):
    """The command line itself is wrong (reported like any CLI error, exit status 2)."""


@dataclass(frozen=True)
class Job:
    """One input and the outputs it gets."""

    source: Path
    denoised: Path
    deconvolved: Path | None


def expand_inputs(items: list[str]) -> list[Path]:
    """Files from the command line: paths, folders (their image files) and glob patterns.

    A ``.zarr`` folder is an image, not a folder of images, and so is a zarr store of
    another name (``b2r.zarr/0``, an image in a bioformats2raw container, or
    ``img.zarr/s1``, one level of a pyramid). Unknown names are kept, so that the run
    reports them as missing.
    """
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if not p.exists() and glob.has_magic(item):
            matches = sorted(glob.glob(item))
            if not matches:
                raise UsageError(f"no files match {item}")
            out.extend(Path(m) for m in matches)
        elif p.is_dir() and p.suffix.lower() not in _SUFFIXES and not is_zarr_store(p):
            found = sorted(c for c in p.iterdir() if c.suffix.lower() in _SUFFIXES and not c.name.startswith("."))
            if not found:
                raise UsageError(f"no image files (TIFF, zarr) in folder {p}")
            out.extend(found)
        else:
            out.append(p)
    return out


def _name_parts(source: Path) -> tuple[str, str]:
    """The stem and suffix an input's outputs are named after: ``DIR/<stem>_denoised<suffix>``.

    An OME file keeps its double suffix (``cells.ome.tif``: ``cells``, ``.ome.tif``), since
    the ``.ome`` is what makes the output OME-TIFF too. A zarr image inside a zarr store
    (``b2r.zarr/0``) is named after both (``b2r_0``, ``.zarr``); any other input gets ``.tif``.
    """
    suffix = source.suffix.lower()
    if suffix in _SUFFIXES:
        stem = source.name[:-len(suffix)]
        if stem.lower().endswith(".ome") and len(stem) > 4:
            return stem[:-4], ".ome" + suffix
        return stem, suffix
    if source.is_dir() and is_zarr_store(source):
        inside = [source.name]
        for parent in source.absolute().parents:  # "0" given from inside b2r.zarr is named b2r_0 too
            if parent.suffix.lower() == ".zarr":
                outer, ext = _name_parts(parent)
                return "_".join([outer, *reversed(inside)]), ext
            inside.append(parent.name)
        return source.name, ".zarr"
    return (source.name[:-len(source.suffix)] if source.suffix else source.name), ".tif"


def plan_outputs(sources: list[Path], args: argparse.Namespace) -> list[Job]:
    """Output names: ``--denoised/--deconvolved`` for one input, or ``DIR/<stem>_denoised.<ext>``."""
    if args.denoised:
        if args.output_dir or len(sources) != 1:
            raise UsageError("--denoised/--deconvolved name the outputs of one input; use --output-dir for several")
        jobs = [Job(sources[0], Path(args.denoised), Path(args.deconvolved) if args.deconvolved else None)]
    elif args.output_dir:
        d = Path(args.output_dir)
        jobs = []
        for s in sources:
            stem, ext = _name_parts(s)
            ext = args.format or ext
            dec = None if args.no_deconvolved else d / f"{stem}_deconvolved{ext}"
            jobs.append(Job(s, d / f"{stem}_denoised{ext}", dec))
        names = [j.denoised for j in jobs]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise UsageError(f"two inputs would both write {dup}; predict them into different folders")
    elif args.deconvolved:
        raise UsageError("--deconvolved needs --denoised (the two outputs of one input)")
    else:
        raise UsageError("say where to write: --output-dir DIR, or --denoised OUT for one input")
    if args.denoised and (args.format or args.no_deconvolved):
        raise UsageError("--format and --no-deconvolved go with --output-dir; with --denoised the names say it all")
    if args.output_dir and Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        raise UsageError(f"--output-dir {args.output_dir} is a file, not a folder")
    for job in jobs:
        if job.deconvolved is not None and job.denoised.resolve() == job.deconvolved.resolve():
            raise UsageError(f"--denoised and --deconvolved name the same file {job.denoised}")
        for p in (job.denoised, job.deconvolved):
            if p is None:
                continue
            image_format(p)  # an unsupported suffix fails now, not after the first file
            if args.denoised and not p.parent.exists():
                raise UsageError(f"output folder does not exist: {p.parent}")
    # In a batch, one file's output could be another's input, or the zarr store that holds it.
    if (why := output_clash([p for job in jobs for p in (job.denoised, job.deconvolved)], sources)) is not None:
        raise UsageError(why)
    return jobs


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    """A Dask client for ``--workers``/``--scheduler`` (None without them); a clear error if none starts."""
    if not (args.workers or args.scheduler):
        yield None
        return
    from .core.cluster import dask_client

    stack = ExitStack()
    try:
        client = stack.enter_context(dask_client(args.workers, args.scheduler))
    except (OSError, ValueError, TimeoutError, ImportError) as e:  # no scheduler there, a bad address, no Dask
        where = f"the Dask scheduler at {args.scheduler}" if args.scheduler else f"{args.workers} Dask workers"
        raise UsageError(f"cannot start or reach {where}: {str(e).splitlines()[0]}") from None
    with stack:
        yield client


def run_predict(args: argparse.Namespace) -> int:
    """Run ``deconoising predict``; returns the exit status (1 when some files failed).

    Ctrl-C ends it with :class:`.Cancelled`: the file under way leaves no output
    (:func:`.io.atomic_output`), the finished ones keep theirs.
    """
    jobs = plan_outputs(expand_inputs(args.inputs), args)
    done: list[Path] = []
    failed: list[tuple[Path, str]] = []
    try:
        return _predict_all(args, jobs, done, failed)
    except KeyboardInterrupt:
        n, finished = len(jobs), len(done) + len(failed)
        files = f"{len(done)} of {n} file{'s' if n != 1 else ''} done"
        if finished < n:
            raise Cancelled(f"interrupted: no output written for {jobs[finished].source}; {files}") from None
        raise Cancelled(f"interrupted while closing the Dask cluster; {files}") from None


def _predict_all(args: argparse.Namespace, jobs: list[Job], done: list[Path],
                 failed: list[tuple[Path, str]]) -> int:
    """Predict every job in turn, adding each finished input to ``done`` or ``failed``."""
    model = load_any_model(args.model)
    made = _make_folder(args.output_dir)  # once the model is known to load
    try:
        return _predict_jobs(args, model, jobs, done, failed)
    finally:
        for folder in made:  # a run that wrote nothing leaves no empty folders behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _make_folder(folder: str | None) -> list[Path]:
    """Create ``folder`` and any missing parents; return those it created, deepest first."""
    if not folder:
        return []
    made = [p for p in (Path(folder), *Path(folder).parents) if not p.exists()]
    Path(folder).mkdir(parents=True, exist_ok=True)
    return made


def _predict_jobs(args: argparse.Namespace, model, jobs: list[Job], done: list[Path],
                  failed: list[tuple[Path, str]]) -> int:
    """The loop of :func:`_predict_all`, with the model loaded and the output folder made."""
    n = len(jobs)
    # Decided once for all files (measured the first time, then cached), said once a file is under way.
    # A model per channel shares one architecture: the first channel's network decides.
    try:
        plan = prediction_plan(getattr(model, "models", [model])[0], args.device, args.precision)
    except ValueError as e:  # a precision this model cannot run (int8 for N2V2)
        raise UsageError(str(e)) from None
    said: list[bool] = []
    t0 = time.perf_counter()
    # closing: the bar ends its line however the loop ends (an error, Ctrl-C), after the cluster is gone
    with closing(ProgressBar(n, sys.stderr)) as bar, _client(args) as client:
        if client is not None:
            n_workers = len(client.scheduler_info()["workers"])
            print(f"Dask: {n_workers} worker{'s' if n_workers != 1 else ''} at {client.scheduler.address}",
                  file=sys.stderr)
        for k, job in enumerate(jobs):
            def progress(done: int, total: int, k: int = k, name: str = job.source.name) -> None:
                bar.update(k + done / total, f"file {k + 1}/{n} {name} tile {done}/{total}")

            def on_plan(run, name: str = job.source.name) -> None:
                # int8 is calibrated on each file, and checked there (the plan's fall-back where it misses).
                note = run.reason.removeprefix(plan.reason).removeprefix("; ")
                if not said:
                    said.append(True)
                    bar.println(f"precision {run.precision} on {run.device}: {plan.reason}"
                                + (f"; {note}" if note else ""))
                elif run.precision != plan.precision:
                    bar.println(f"{name}: {note}")

            try:
                predict_file(model, job.source, job.denoised, job.deconvolved, axes=args.axes,
                             tile_size=args.tile_size, device=args.device, precision=plan,
                             progress=progress, client=client, on_plan=on_plan)
            except (ImageFileError, DataError) as e:  # this file cannot be used: report it, go on
                if n == 1:
                    raise
                failed.append((job.source, str(e)))
                bar.println(f"deconoising: skipped {job.source}: {e}")
                continue
            except ValueError as e:  # a setting wrong for every file (e.g. --tile-size): stop
                raise UsageError(str(e)) from None
            outs = ", ".join(str(p) for p in (job.denoised, job.deconvolved) if p is not None)
            bar.println(f"{job.source} -> {outs}")
            done.append(job.source)
    seconds = time.perf_counter() - t0
    if n == 1:
        print(f"done in {seconds:.1f} s", file=sys.stderr)
        return 0
    summary = f"deconoising: predicted {n - len(failed)} of {n} files in {seconds:.1f} s"
    if failed:
        summary += f"; failed: {', '.join(p.name for p, _ in failed)}"
    print(summary, file=sys.stderr)
    return 1 if failed else 0
