"""The ``deconoising`` command line: train, predict and a self-contained demo.

Runs the same core functions as the napari widgets, in the foreground.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .core.config import ConfigError, TrainConfig
from .core.data import DataError
from .core.modelfile import ModelFileError
from .core.predict import Cancelled
from .core.psf import PSFError


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


# -- TIFF input/output ------------------------------------------------------------

# tifffile's axis letters -> ours. tifffile's "S" means samples (RGB), ours means stack.
_TIFF_AXES = {"S": "C", "Q": "S", "I": "S", "T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X"}


def read_tiff(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Read a TIFF and return the array and its axes in our letters."""
    import tifffile

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"input file not found: {p}")
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = "".join(_TIFF_AXES.get(a, "S") for a in series.axes)
    except Exception as e:  # tifffile raises many kinds of errors for broken files
        raise CLIError(f"cannot read {p} as a TIFF image: {e}") from None
    if len(set(axes)) != len(axes):  # e.g. two unknown axes both mapped to S
        axes = ""
    return data, axes


def write_tiff_atomic(path: str | os.PathLike, data: np.ndarray) -> None:
    """Write a float32 TIFF via a temporary file, so no half-written output is left."""
    import tifffile

    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    os.close(fd)
    try:
        tifffile.imwrite(tmp, np.asarray(data, np.float32))
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_inputs(paths: Sequence[str], axes: str | None) -> tuple[list[np.ndarray], str | None]:
    arrays, found = [], []
    for p in paths:
        data, ax = read_tiff(p)
        arrays.append(data)
        found.append(ax)
    if axes is None and len(set(found)) == 1 and found[0] and set(found[0]) <= set("STZCYX"):
        axes = found[0]  # else None: the core guesses per array shape
    return arrays, axes


# -- progress -----------------------------------------------------------------------

def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class ProgressBar:
    """A one-line progress bar on stderr (redrawn in place when stderr is a terminal)."""

    def __init__(self, total: int, stream=None, width: int = 30) -> None:
        self.total, self.width = total, width
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = 0.0

    def update(self, done: int, text: str = "") -> None:
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
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


# -- commands -----------------------------------------------------------------------

def _config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, np.ndarray | None]:
    from .core.psf import load_psf

    ndim = 3 if args.three_d else 2
    axes = "Z Y X" if ndim == 3 else "Y X"
    for flag, values in (("--psf-sigma", args.psf_sigma), ("--patch-size", args.patch_size)):
        if values is not None and len(values) not in (1, ndim):
            hint = "" if ndim == 3 or len(values) != 3 else " (3 values need --3d)"
            raise CLIError(f"{flag} takes one value or {ndim} ({axes}), got {len(values)}{hint}")
    psf_array = None
    if args.no_psf:
        psf_kind, sigma = "none", 0.0
    elif args.psf is not None:
        psf_kind, sigma = "measured", 0.0
        psf_array = load_psf(args.psf, ndim=ndim)
    else:
        psf_kind = "gaussian"
        sigma = tuple(args.psf_sigma) if len(args.psf_sigma) > 1 else args.psf_sigma[0]
    if args.patch_size is None:
        patch = _DEFAULT_PATCH_3D if ndim == 3 else TrainConfig.patch_size
    else:
        patch = tuple(args.patch_size) if len(args.patch_size) > 1 else args.patch_size[0]
    cfg = TrainConfig(
        psf=psf_kind, psf_sigma=sigma, positivity=args.positivity, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, micro_batches=args.micro_batches,
        patch_size=patch, val_fraction=args.val_fraction, lr=args.lr, depth=args.depth,
        channels=args.channels, seed=args.seed, device=args.device, precision=args.precision, ndim=ndim,
    )
    return cfg, psf_array


# A 100^3 patch (the 2D default cubed) is 16x the voxels of the 16x64x64, and most
# stacks are thinner than 100 planes anyway.
_DEFAULT_PATCH_3D = (16, 64, 64)


def run_training(images, cfg: TrainConfig, *, axes=None, psf=None, resume=None, out=None,
                 label: str = "") -> tuple:
    """Train in the foreground with a progress bar; returns (model, trainer)."""
    from .core.train import Trainer

    out = out or sys.stderr

    trainer = Trainer(images, cfg, axes=axes, psf=psf, resume=resume)
    for note in trainer.warnings:
        print(f"deconoising: warning: {note}", file=out)
    per_step = trainer.estimate_step_seconds(steps=1)
    print(f"{label}training {cfg.epochs} epochs x {cfg.steps_per_epoch} steps of {cfg.batch_size} "
          f"{trainer.patch}px patches on {trainer.plan.device} ({trainer.plan.precision}); "
          f"estimated {_fmt_seconds(per_step * cfg.total_steps)} ({per_step:.2f} s/step)", file=out)
    bar = ProgressBar(cfg.total_steps, out)
    try:
        for ev in trainer.run():
            if ev.kind == "step":
                bar.update(ev.step, f"epoch {ev.epoch}/{ev.epochs} loss {ev.train_loss:.4f} "
                                    f"left {_fmt_seconds(ev.eta_s)}")
            else:
                star = " *" if ev.is_best else ""
                bar.println(f"{label}epoch {ev.epoch:4d}/{ev.epochs}  train {ev.train_loss:.5f}  "
                            f"val {ev.val_loss:.5f}  lr {ev.lr:.2e}  {_fmt_seconds(ev.elapsed_s)}{star}")
    except KeyboardInterrupt:
        bar.println("interrupted: keeping the best model so far")
    finally:
        bar.close()
    return trainer.model, trainer


def cmd_train(args: argparse.Namespace) -> int:
    from .core.modelfile import load_model

    cfg, psf_array = _config_from_args(args)
    out = Path(args.model)
    if not out.parent.exists():
        raise CLIError(f"output folder does not exist: {out.parent}")
    images, axes = _load_inputs(args.inputs, args.axes)
    resume = load_model(args.resume) if args.resume else None
    model, _ = run_training(images, cfg, axes=axes, psf=psf_array, resume=resume)
    model.save(out)
    print(f"saved model to {out}: {model.summary()}", file=sys.stderr)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .core.modelfile import load_model

    outputs = [Path(p) for p in (args.denoised, args.deconvolved) if p]
    for p in outputs:
        if not p.parent.exists():
            raise CLIError(f"output folder does not exist: {p.parent}")
        if p.exists() and Path(args.input).exists() and p.resolve() == Path(args.input).resolve():
            raise CLIError(f"refusing to overwrite the input image {p}")
    model = load_model(args.model)
    data, found = read_tiff(args.input)
    axes = args.axes or (found if found and set(found) <= set("STZCYX") else None)
    bar = ProgressBar(1, sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done, f"tile {done}/{total}")

    t0 = time.perf_counter()
    pred = model.predict(data, axes, tile_size=args.tile_size, device=args.device,
                         precision=args.precision, progress=progress)
    bar.close()
    write_tiff_atomic(args.denoised, pred.denoised)
    msg = f"denoised -> {args.denoised}"
    if args.deconvolved:
        write_tiff_atomic(args.deconvolved, pred.deconvolved)
        msg += f", deconvolved -> {args.deconvolved}"
    print(f"{msg} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), steps=args.steps, size=args.size, viewer=not args.no_viewer,
                    device=args.device)


# -- parser --------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="deconoising", description=__doc__.splitlines()[0])
    from . import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on noisy TIFF images (self-supervised)")
    t.add_argument("inputs", nargs="+", metavar="INPUT.tif", help="noisy image(s); stacks allowed")
    t.add_argument("--model", required=True, metavar="OUT.pt", help="where to save the model")
    psf = t.add_mutually_exclusive_group()
    psf.add_argument("--psf-sigma", type=float, nargs="+", default=[1.0], metavar="S",
                     help="Gaussian PSF sigma in pixels, one value or one per axis: Y X, or Z Y X with --3d "
                          "(default 1.0)")
    psf.add_argument("--psf", metavar="PSF.tif",
                     help="measured PSF (TIFF), instead of a Gaussian; YX, or ZYX with --3d")
    psf.add_argument("--no-psf", action="store_true", help="no PSF: plain Noise2Void")
    t.add_argument("--positivity", type=float, default=d.positivity, help="positivity weight lambda (0 = off)")
    t.add_argument("--epochs", type=int, default=d.epochs)
    t.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch)
    t.add_argument("--batch-size", type=int, default=d.batch_size, help="patches per optimiser step")
    t.add_argument("--micro-batches", type=int, default=d.micro_batches,
                   help="split each step into this many passes to save memory (gradient accumulation)")
    t.add_argument("--patch-size", type=int, nargs="+", metavar="N",
                   help=f"patch size, one value or one per axis: Y X, or Z Y X with --3d; shrunk to fit the "
                        f"data (default {d.patch_size}, with --3d {' '.join(map(str, _DEFAULT_PATCH_3D))})")
    t.add_argument("--3d", dest="three_d", action="store_true",
                   help="train a 3D model on volumes (the inputs need a Z axis); without it a Z-stack "
                        "trains slice by slice")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--depth", type=int, default=d.depth)
    t.add_argument("--channels", type=int, default=d.channels)
    t.add_argument("--axes", help="axis letters of the inputs, e.g. YX, SYX, TYX, ZYX, TZYX (default: from the file)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    t.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--resume", metavar="MODEL.pt", help="continue training this model")
    t.set_defaults(func=cmd_train)

    q = sub.add_parser("predict", help="denoise (and deconvolve) an image with a trained model")
    q.add_argument("model", metavar="MODEL.pt")
    q.add_argument("input", metavar="INPUT.tif")
    q.add_argument("--denoised", required=True, metavar="OUT.tif")
    q.add_argument("--deconvolved", metavar="OUT2.tif")
    q.add_argument("--axes")
    q.add_argument("--tile-size", type=int, help="tile side in pixels (default: from free memory)")
    q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    q.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"],
                   help="fp32 (default) is exact; bf16 is 3-4x faster on CPUs with AMX/AVX512-BF16")
    q.set_defaults(func=cmd_predict)

    m = sub.add_parser("demo", help="train and compare Noise2Void and DecoNoising on a synthetic sample")
    m.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    m.add_argument("--steps", type=int, default=300, help="training steps per method (default 300)")
    m.add_argument("--size", type=int, default=256, help="sample image size (default 256)")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    m.add_argument("--no-viewer", action="store_true", help="do not open napari at the end")
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deconoising`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, DataError, ConfigError, PSFError, ModelFileError, Cancelled) as e:
        print(f"deconoising: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # device not available, out of memory
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "out of memory" in msg.lower():
            msg += " (try a smaller --patch-size/--batch-size, more --micro-batches or a smaller --tile-size)"
        print(f"deconoising: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
