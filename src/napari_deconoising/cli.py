"""The ``deconoising`` command line: train, predict, export, info, psf and a self-contained demo.

Runs the same core functions as the napari widgets, in the foreground.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._batch import UsageError
from ._cli_beads import add_beads_parser
from ._cli_channels import CLIError
from ._cli_train import DEFAULT_PATCH_3D, cmd_train
from ._console import one_line_warnings
from .bioimageio import BioimageioExportError, BioimageioUnavailable, load_any_model
from .core.channels import ChannelModels
from .core.config import DECODERS, ConfigError, TrainConfig
from .core.data import DataError
from .core.io import ImageFileError, image_format, read_image, write_image
from .core.modelfile import ModelFileError
from .core.optics import gaussian_sigma, optics_psf, parse_optics
from .core.precision import DEFAULT_PRECISION
from .core.predict import Cancelled
from .core.psf import PSFError

_OPTICS_EXAMPLE = '"na=1.4,wavelength=520,n=1.518,pixel=65,z_step=200,modality=widefield"'


# -- commands (train: _cli_train) ----------------------------------------------------

def cmd_predict(args: argparse.Namespace) -> int:
    from ._batch import run_predict

    model = Path(args.model)
    if model.suffix.lower() in (".tif", ".tiff") and any(Path(i).suffix.lower() == ".pt" for i in args.inputs):
        raise CLIError(f"{model} is an image, not a model: the model comes first (deconoising predict MODEL INPUT)")
    return run_predict(args)


def cmd_export(args: argparse.Namespace) -> int:
    from .bioimageio import export_bioimageio
    from .bioimageio.export import package_name

    out = Path(args.output)
    if out.suffix.lower() != ".zip":
        raise CLIError(f"the bioimage.io package must be a .zip file, got {out.name}")
    if not out.parent.exists():
        raise CLIError(f"output folder does not exist: {out.parent}")
    if out.is_dir():
        raise CLIError(f"{out} is a folder; refusing to replace it")
    if Path(args.model).exists() and out.exists() and out.resolve() == Path(args.model).resolve():
        raise CLIError(f"refusing to overwrite the model {out}")
    model = load_any_model(args.model)
    sample, sample_axes = read_image(args.sample) if args.sample else (None, None)
    name = args.name or package_name(f"DecoNoising {Path(args.model).stem}")
    t0 = time.perf_counter()
    print("exporting and running bioimage.io's model test...", file=sys.stderr)
    # a model per channel summarises one line per channel; the zoo's description is one line
    description = args.description or "; ".join(model.summary().splitlines())
    export_bioimageio(model, out, name=name, description=description, authors=args.author, license=args.license,
                      sample=sample, sample_axes=sample_axes)
    print(f"bioimage.io package -> {out} (tested, {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    model = load_any_model(args.model)
    n = len(model.models) if isinstance(model, ChannelModels) else 0
    kind = f"one model per channel, {n} channel{'s' if n != 1 else ''}" if n else "one model"
    print(f"{args.model}: {kind}\n{model.summary()}")
    return 0


def cmd_psf(args: argparse.Namespace) -> int:
    out = Path(args.out)
    image_format(out)
    if not out.parent.exists():
        raise CLIError(f"output folder does not exist: {out.parent}")
    optics = parse_optics(args.optics)
    ndim = 3 if args.three_d else 2
    size = None if args.size is None else (args.size[0] if len(args.size) == 1 else tuple(args.size))
    kernel = optics_psf(optics, ndim=ndim, size=size)
    # the voxel size the PSF was computed for, so that Fiji (or other deconvolution software) scales it
    spacing = (optics.z_step_nm, optics.pixel_nm, optics.pixel_nm)[-ndim:]
    write_image(out, kernel, "ZYX"[-ndim:], scale=spacing, units=("nanometer",) * ndim)
    sz, sy, sx = gaussian_sigma(optics)
    zsig = f"z {sz:.3f} planes, " if ndim == 3 else ""
    print(f"{optics.describe(ndim)}: {kernel.shape} -> {out}", file=sys.stderr)
    print(f"equivalent Gaussian sigma: {zsig}y {sy:.3f} px, x {sx:.3f} px (Zhang et al. 2007)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_MIN_SIZE, run_demo

    if args.minutes <= 0 or (args.steps is not None and args.steps <= 0):
        raise CLIError("--steps and --minutes must be positive")
    if args.size < DEMO_MIN_SIZE:
        raise CLIError(f"--size must be at least {DEMO_MIN_SIZE} (the demo's training patches are "
                       f"{DEMO_MIN_SIZE} px), got {args.size}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise CLIError(f"--out {args.out} is a file, not a folder")
    return run_demo(Path(args.out), steps=args.steps, size=args.size, viewer=not args.no_viewer,
                    device=args.device, minutes=args.minutes)


# -- parser --------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _auto_or_float(text: str) -> float | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'auto'") from None


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="deconoising", description=__doc__.splitlines()[0])
    from . import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on noisy images (self-supervised)")
    t.add_argument("inputs", nargs="+", metavar="INPUT", help="noisy image(s): TIFF or zarr/OME-Zarr (.zarr) "
                   "files, folders of them or glob patterns; stacks allowed")
    t.add_argument("--model", required=True, metavar="OUT.pt", help="where to save the model")
    psf = t.add_mutually_exclusive_group()
    psf.add_argument("--psf-sigma", nargs="+", action="append", metavar="S",
                     help="Gaussian PSF sigma in pixels, one value or one per axis: Y X, or Z Y X with --3d "
                          "(default 1.0); or 'auto': learn it with the network, starting wide (see "
                          "docs/benchmarks.md); repeat once per channel for data with a C axis")
    psf.add_argument("--psf", metavar="PSF.tif", action="append",
                     help="measured PSF (TIFF), instead of a Gaussian; YX, or ZYX with --3d; repeat once per "
                          "channel for data with a C axis")
    psf.add_argument("--no-psf", action="store_true", help="no PSF: plain Noise2Void")
    psf.add_argument("--psf-optics", metavar="OPTICS", action="append",
                     help=f"PSF computed from the microscope, e.g. {_OPTICS_EXAMPLE} (lengths in nm; confocal: "
                          "modality=confocal,excitation=488,pinhole=1); repeat once per channel for data with a "
                          "C axis (each channel's emission wavelength)")
    t.add_argument("--positivity", type=float, default=d.positivity,
                   help=f"positivity weight lambda (0 = off; default {d.positivity:g})")
    t.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    t.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch, help=f"default {d.steps_per_epoch}")
    t.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"patches per optimiser step (default {d.batch_size})")
    t.add_argument("--micro-batches", type=int, default=d.micro_batches,
                   help="split each step into this many passes to save memory (gradient accumulation)")
    t.add_argument("--patch-size", type=int, nargs="+", metavar="N",
                   help=f"patch size, one value or one per axis: Y X, or Z Y X with --3d; shrunk to fit the "
                        f"data (default {d.patch_size}, with --3d {' '.join(map(str, DEFAULT_PATCH_3D))})")
    t.add_argument("--3d", dest="three_d", action="store_true",
                   help="train a 3D model on volumes (the inputs need a Z axis); without it a Z-stack "
                        "trains slice by slice")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of the data held out for validation (default {d.val_fraction:g})")
    t.add_argument("--lr", type=float, default=d.lr,
                   help="Adam's learning rate (default: 1e-3, scaled down for layers wider than the paper's 2D "
                        "network: 3.3e-4 for the 3D default of 64 channels)")
    t.add_argument("--head-lr-scale", type=_auto_or_float, default=d.head_lr_scale, metavar="X",
                   help="the PSF head (the network's last layer, which makes the phantom) learns at --lr times X "
                        "(default auto: the head at 1e-3 where wide layers learn slower, i.e. 3 for the 3D "
                        "default and 1 in 2D; see docs/engine.md)")
    t.add_argument("--weight-average", type=float, default=d.weight_average, metavar="DECAY",
                   help="validate and save a moving average of the weights, updated every step with this decay "
                        "(0.99: about the last 100 steps; default 0: off)")
    t.add_argument("--wiener-eps", type=_auto_or_float, default=d.wiener_eps, metavar="EPS",
                   help="the deconvolved image is the network's output through the PSF's Wiener filter with this "
                        "regularisation: the same model, trained faster where the PSF is wide (default auto: "
                        "0.01 with --3d, 0 in 2D, as measured; 0: the paper's network; see docs/engine.md)")
    t.add_argument("--depth", type=int, default=d.depth, help=f"U-Net depth: poolings (default {d.depth})")
    t.add_argument("--channels", type=int, default=d.channels,
                   help=f"U-Net channels at the first level (default {d.channels})")
    t.add_argument("--n2v2", action="store_true",
                   help="N2V2 against checkerboard artefacts: blur pooling, no top skip connection, "
                        "median blind-spot replacement (off by default, see docs/benchmarks.md)")
    t.add_argument("--decoder", default=d.decoder, choices=list(DECODERS),
                   help="U-Net decoder: lean (Noise2Void's layout, as in CAREamics) or wide (the DecoNoising "
                        "reference code's, 6-13 %% slower per step in 2D; see docs/benchmarks.md) (default: wide)")
    t.add_argument("--axes", help="axis letters of the inputs, e.g. YX, SYX, TYX, ZYX, TZYX, CYX, CZYX (default: "
                   "from the file); with C, one model per channel")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    t.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    t.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="on a CUDA GPU, run every training step eagerly instead of replaying it as a CUDA graph")
    t.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    t.add_argument("--resume", metavar="MODEL.pt", help="continue training this model")
    t.set_defaults(func=cmd_train)

    q = sub.add_parser("predict", help="denoise (and deconvolve) images of any size with a trained model",
                       description="Predict tile by tile: inputs are read lazily and outputs written as "
                                   "they are computed, so images larger than memory work.")
    q.add_argument("model", metavar="MODEL", help="model file (.pt) or bioimage.io package (.zip, rdf.yaml) "
                   "exported by napari-deconoising")
    q.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="TIFF files, zarr/OME-Zarr images (.zarr), folders of them or glob patterns")
    q.add_argument("--output-dir", metavar="DIR",
                   help="write DIR/<name>_denoised.<ext> and DIR/<name>_deconvolved.<ext> for every input")
    q.add_argument("--format", choices=[".tif", ".zarr"],
                   help="output format with --output-dir (default: the input's); .zarr writes OME-Zarr")
    q.add_argument("--no-deconvolved", action="store_true", help="with --output-dir: only the denoised images")
    q.add_argument("--denoised", metavar="OUT", help="output of a single input (.tif: BigTIFF, .zarr: OME-Zarr)")
    q.add_argument("--deconvolved", metavar="OUT2", help="with --denoised: where to write the deconvolved image")
    q.add_argument("--axes", help="axis letters of every input, e.g. YX, TYX, ZYX, CYX (default: from the file)")
    q.add_argument("--tile-size", type=int, help="tile side in pixels (default: from free memory)")
    q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    q.add_argument("--precision", default=DEFAULT_PRECISION, choices=["auto", "fp32", "bf16", "fp16", "int8"],
                   help="auto (default): the fastest precision within 1%% of fp32, measured once per "
                        "machine and model size; fp32 is exact; int8 (x86 CPUs) is calibrated on "
                        "each image and falls back to fp32 there if it misses the tolerance")
    cluster = q.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=_positive_int, metavar="N",
                         help="run the tiles on a local Dask cluster of N worker processes")
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="run the tiles on an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    q.set_defaults(func=cmd_predict)

    e = sub.add_parser("export", help="write a model (or a model per channel) as a bioimage.io Model Zoo package "
                       "(tested before writing)")
    e.add_argument("model", metavar="MODEL.pt")
    e.add_argument("output", metavar="OUT.zip")
    e.add_argument("--name", help="model name in the zoo, 5 characters or more (default: from the file name)")
    e.add_argument("--description", help="one-line description (default: the model's summary)")
    e.add_argument("--author", action="append", required=True, metavar="NAME",
                   help="an author's name; repeat for several")
    e.add_argument("--license", default="CC-BY-4.0", help="SPDX licence identifier (default CC-BY-4.0)")
    e.add_argument("--sample", metavar="IMAGE.tif",
                   help="image like the training data, for the test image and cover (default: synthetic, 2D "
                        "only); for a model per channel an image with those channels (C axis from the file)")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("info", help="describe a model file or bioimage.io package: network, PSF (optics) and "
                       "training, per channel")
    i.add_argument("model", metavar="MODEL", help="model file (.pt) or bioimage.io package (.zip, rdf.yaml)")
    i.set_defaults(func=cmd_info)

    o = sub.add_parser("psf", help="compute the PSF of a microscope from its optics and write it as a TIFF")
    o.add_argument("optics", metavar="OPTICS", help=f"e.g. {_OPTICS_EXAMPLE} (see train --psf-optics)")
    o.add_argument("--out", required=True, metavar="PSF.tif", help="where to write the PSF")
    o.add_argument("--3d", dest="three_d", action="store_true", help="a ZYX volume (needs z_step) instead of "
                   "the in-focus plane")
    o.add_argument("--size", type=int, nargs="+", metavar="N", help="odd size, one value or one per axis")
    o.set_defaults(func=cmd_psf)
    add_beads_parser(sub)

    m = sub.add_parser("demo", help="train and compare Noise2Void and DecoNoising on a synthetic sample")
    m.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    m.add_argument("--steps", type=int, help="training steps per method (default: as many as fit into "
                                                  "--minutes, from a measured step)")
    m.add_argument("--minutes", type=float, default=3.0, help="about how long the demo may take (default 3)")
    m.add_argument("--size", type=int, default=256, help="sample image size (default 256)")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    m.add_argument("--no-viewer", action="store_true", help="do not open napari at the end")
    m.set_defaults(func=cmd_demo)
    return p


# TrainConfig's fields by the flags that set them, for its messages ("batch_size=0: ..." -> "--batch-size 0: ...").
_FLAGS = {name: "--" + name.replace("_", "-") for name in (
    "epochs", "steps_per_epoch", "batch_size", "micro_batches", "patch_size", "val_fraction", "positivity",
    "depth", "channels", "seed", "psf_sigma", "head_lr_scale", "weight_average", "wiener_eps", "lr")}


def _in_flags(message: str) -> str:
    found = re.match(r"(\w+)=(.*?): ", message)
    if found is None or found.group(1) not in _FLAGS:
        return message
    # None cannot be typed on a command line: the flag is left out (or given as auto) instead
    rest = message[found.end():].replace("or None for the default", "or left out for the default")
    return f"{_FLAGS[found.group(1)]} {found.group(2)}: {rest.replace('or None (auto)', 'or auto')}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deconoising`` console script."""
    args = build_parser().parse_args(argv)
    try:
        with one_line_warnings():
            return args.func(args)
    except (CLIError, UsageError, DataError, ConfigError, PSFError, ModelFileError, ImageFileError, Cancelled,
            BioimageioExportError, BioimageioUnavailable) as e:
        text = _in_flags(str(e)) if isinstance(e, ConfigError) else str(e)
        print(f"deconoising: error: {text}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # device not available, out of memory
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "out of memory" in msg.lower():
            msg += " (try a smaller --patch-size/--batch-size, more --micro-batches or a smaller --tile-size)"
        print(f"deconoising: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
