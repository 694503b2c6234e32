"""``deconoising beads``: measure the PSF from an image of sub-resolution beads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ._cli_channels import CLIError
from .core.beads import distill_psf
from .core.io import image_format, write_image
from .core.lazy_io import open_lazy
from .core.output_paths import output_clash
from .core.units import lengths_nm

__all__ = ["add_beads_parser", "cmd_beads"]


def add_beads_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``beads`` subcommand to the command line's subparsers."""
    b = sub.add_parser("beads", help="measure the PSF from an image of sub-resolution beads and write it as a TIFF",
                       description="Detects the beads, keeps the isolated ones, aligns them on sub-pixel Gaussian "
                                   "fits and averages them. Use the result with train --psf.")
    b.add_argument("image", metavar="BEADS", help="bead image: one YX plane or one ZYX stack (TIFF or .zarr)")
    b.add_argument("--out", required=True, metavar="PSF.tif", help="where to write the PSF")
    b.add_argument("--axes", help="axis letters of the image: YX, ZYX, CYX, CZYX (default: from the file)")
    b.add_argument("--channel", type=int, metavar="K", help="with a C axis: which channel (1 = the first)")
    b.add_argument("--box", type=int, nargs="+", metavar="N",
                   help="odd box size around each bead (the PSF's size), one value or one per axis in Z Y X order "
                        "(default: 10 Gaussian sigmas of the brightest beads)")
    b.add_argument("--threshold", type=float, default=6.0,
                   help="how many noise levels a bead must stand above the background (default 6)")
    b.add_argument("--bead-size", type=float, default=0.0, metavar="NM",
                   help="bead diameter in nm, taken out of the Gaussian sigma (needs the pixel size)")
    b.add_argument("--pixel-size", type=float, nargs="+", metavar="NM",
                   help="pixel size in nm: Y/X, or Z Y X for a stack (default: from the file)")
    b.set_defaults(func=cmd_beads)


def cmd_beads(args: argparse.Namespace) -> int:
    """Measure the PSF of ``args.image`` and write it to ``args.out``; print the report. Returns 0."""
    out = Path(args.out)
    image_format(out)
    if not out.parent.exists():
        raise CLIError(f"output folder does not exist: {out.parent}")
    # also an output that holds the bead image or lies inside it (an array of its zarr store)
    if (clash := output_clash([out], [args.image])) is not None:
        raise CLIError(f"--out {args.out}: {clash}; choose another file name")
    if args.threshold <= 0 or args.bead_size < 0:
        raise CLIError("--threshold must be positive and --bead-size not negative")
    src = open_lazy(args.image)
    axes = (args.axes or src.axes or {2: "YX", 3: "ZYX"}.get(len(src.shape), "")).upper()
    if len(axes) != len(src.shape):
        raise CLIError(f"{args.image}: shape {src.shape} needs --axes (YX, ZYX, CYX or CZYX)"
                       if not args.axes else f"--axes {args.axes} does not fit the shape {src.shape}")
    data = np.asarray(src.ref.open()[...])
    data, axes = _one_channel(data, axes, args.channel)
    for a in "TS":  # one time point or one image of a series (a 5D OME-Zarr's t of 1) is no axis
        if a in axes and data.shape[axes.index(a)] == 1:
            data, axes = np.take(data, 0, axis=axes.index(a)), axes.replace(a, "")
    if axes not in ("YX", "ZYX"):
        raise CLIError(f"a bead image is one YX plane or one ZYX stack, got axes {axes} {data.shape}: "
                       "save the plane or stack to measure as a file of its own")
    spacing = _spacing_nm(args.pixel_size, src, axes, args.axes)
    if args.bead_size and spacing is None:
        raise CLIError("--bead-size needs the pixel size: the file gives none, so add --pixel-size")
    diameter = 0.0 if not args.bead_size else tuple(args.bead_size / d for d in spacing)
    box = None if args.box is None else (args.box[0] if len(args.box) == 1 else tuple(args.box))
    if box is not None and not isinstance(box, int) and len(box) != len(axes):
        raise CLIError(f"--box takes one value or one per axis ({len(axes)} for {axes})")
    result = distill_psf(data, box=box, threshold=args.threshold, bead_diameter=diameter)
    # the voxel size it was measured at, so that other software (Fiji, Huygens) scales it right
    write_image(out, result.psf, axes, scale=spacing, units=None if spacing is None else ("nanometer",) * len(axes))
    print(f"{args.image}: {result.summary(spacing)}", file=sys.stderr)
    print(f"PSF {result.psf.shape} -> {out}", file=sys.stderr)
    sig = " ".join(f"{s:.2f}" for s in result.sigma)
    three_d = " --3d" if axes == "ZYX" else ""
    print(f"train with it: deconoising train IMAGE{three_d} --psf {out}   (or its Gaussian: --psf-sigma {sig})")
    return 0


def _one_channel(data: np.ndarray, axes: str, channel: int | None) -> tuple[np.ndarray, str]:
    if "C" not in axes:
        if channel is not None:
            raise CLIError(f"--channel given, but the image has no C axis (axes {axes})")
        return data, axes
    n = data.shape[axes.index("C")]
    if channel is None:
        if n == 1:
            return np.take(data, 0, axis=axes.index("C")), axes.replace("C", "")
        raise CLIError(f"the image has {n} channels: choose one with --channel 1..{n} "
                       "(beads are measured one channel at a time)")
    if not 1 <= channel <= n:
        raise CLIError(f"--channel {channel}: the image has channels 1..{n}")
    return np.take(data, channel - 1, axis=axes.index("C")), axes.replace("C", "")


def _spacing_nm(given: list[float] | None, src, axes: str, axes_given: str | None) -> tuple[float, ...] | None:
    """Pixel size in nm per axis of ``axes``: ``--pixel-size``, else the file's (where it names these axes)."""
    if given is not None:
        if any(v <= 0 for v in given):
            raise CLIError("--pixel-size must be positive")
        if len(given) == 1 and axes == "YX":
            return (given[0], given[0])
        if len(given) != len(axes):
            raise CLIError(f"--pixel-size takes {'one value (Y and X)' if axes == 'YX' else 'three values, Z Y X'} "
                           f"for axes {axes}, got {len(given)}")
        return tuple(given)
    if axes_given and axes_given.upper() != src.axes:
        return None
    sizes = lengths_nm(src.axes, src.scale, src.units)
    return tuple(sizes[a] for a in axes) if all(a in sizes for a in axes) else None
