"""Export a model as a bioimage.io Model Zoo package (model format 0.5)."""

from __future__ import annotations

import os
import string
import tempfile
import unicodedata
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..core.channels import ChannelModels
from ..core.io import usual_permissions
from .architecture import ARCHITECTURE, CHANNEL_ARCHITECTURE, CONFIG_KEY
from .errors import BioimageioExportError, require_bioimageio
from .files import (
    AnyModel,
    build_net,
    geometry,
    net_kwargs,
    package_test_image,
    parts,
    write_environment,
    write_torchscript,
    write_weights,
)
from .readme import N2V_CITATION, PAPER_CITATION, write_cover, write_readme
from .tensors import NORM_EPS, input_descr, output_descr, payload

__all__ = ["export_bioimageio", "package_name"]

# bioimage.io's characters for a model's name
_NAME_CHARS = string.ascii_letters + string.digits + "_+- ()"


def package_name(text: str) -> str:
    """``text`` as a name bioimage.io accepts: accents dropped, other characters as spaces.

    For the default names made from a file or a session's model name, e.g.
    ``"DecoNoising model.v2"`` -> ``"DecoNoising model v2"``, ``"gau2d [2]"`` -> ``"gau2d 2"``.
    """
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join("".join(c if c in _NAME_CHARS else " " for c in plain).split())[:128]

# bioimage.io's test accepts |out - expected| <= ABS * std + REL * |expected|, expected being
# our network's output on the test input: room for float32 rounding, not for other weights.
REL_TOLERANCE = 1e-4
ABS_TOLERANCE = 1e-4


def export_bioimageio(model: AnyModel, path: str | PathLike, *, name: str, description: str,
                      authors: Sequence[str], license: str = "CC-BY-4.0", sample: np.ndarray | None = None,
                      sample_axes: str | None = None, tags: Sequence[str] = ()) -> Path:
    """Write ``model`` as a tested bioimage.io model package (a zip).

    The package has one input ``raw`` and two outputs ``denoised`` and ``deconvolved``
    (for a model per channel, each with that many channels: channel k goes through
    channel k's network, with its own normalisation and PSF),
    ``pytorch_state_dict`` weights (architecture from this package) and ``torchscript``
    weights (no package needed), a test image with our own predictions as the expected
    outputs, a cover image and a README. bioimage.io's model test runs on the finished
    package before it is moved to ``path``; a package that fails is not written.

    Parameters
    ----------
    model : DecoNoisingModel or ChannelModels
        The trained model, or a model per channel.
    path : path-like
        The zip file to write (replaced atomically if it exists).
    name, description : str
        Shown in the Model Zoo.
    authors : sequence of str
        At least one author's name.
    license : str
        SPDX licence identifier of the package.
    sample : numpy.ndarray, optional
        An image like the training data for the test image and cover (a centre crop is
        used; a stack gives its first plane). Without it a synthetic image is made. For a
        model per channel it needs a channel axis: first, or where ``sample_axes`` says.
    sample_axes : str, optional
        Axis letters of ``sample`` (e.g. ``ZCYX``), to find its channel axis.
    tags : sequence of str
        Extra Model Zoo tags.

    Returns
    -------
    pathlib.Path
        The package written.

    Raises
    ------
    BioimageioUnavailable
        If the ``bioimageio`` extra is not installed.
    BioimageioExportError
        If the inputs are unusable or the package fails the model test (with the reason).
    """
    require_bioimageio()
    path = Path(path)
    authors = [a.strip() for a in authors if a and a.strip()]
    if len(name.strip()) < 5:
        raise BioimageioExportError(f"the package name needs at least 5 characters, got {name.strip()!r}")
    bad = sorted(set(name.strip()) - set(_NAME_CHARS))
    if bad or len(name.strip()) > 128:  # bioimage.io's rule, said before the package is built
        raise BioimageioExportError(
            f"the package name {name.strip()!r} may hold only letters a-z A-Z, digits, spaces and _ + - ( ), "
            f"at most 128 characters" + (f"; not {' '.join(repr(c) for c in bad)}" if bad else ""))
    if not authors:
        raise BioimageioExportError("the package needs at least one author")
    if any("/" in a for a in authors):
        raise BioimageioExportError("author names must not contain '/'")
    if min(m.std for m in parts(model)) < 2 * NORM_EPS:  # declared as std - NORM_EPS, at least 1e-6
        raise BioimageioExportError(f"the model's standard deviation {min(m.std for m in parts(model)):g} is "
                                    f"below {2 * NORM_EPS:g}, the least bioimage.io's fixed normalisation can "
                                    "express (its minimum of 1e-6, plus the 1e-6 it adds)")
    _check_license(license)
    if not path.parent.is_dir():
        raise BioimageioExportError(f"folder does not exist: {path.parent}")
    if path.is_dir():
        raise BioimageioExportError(f"{path} is a folder; refusing to replace it")
    try:
        raw = package_test_image(model, sample, sample_axes)
    except ValueError as e:
        raise BioimageioExportError(str(e)) from None
    with tempfile.TemporaryDirectory(prefix="deconoising-bioimageio-") as tmp:
        work = Path(tmp)
        descr = _describe(model, work, raw, name=name.strip(), description=description.strip() or name,
                          authors=authors, license=license, tags=tags)
        _package_tested(descr, path, work)
    return path


def _describe(model: AnyModel, work: Path, raw: np.ndarray, *, name: str, description: str,
              authors: list[str], license: str, tags: Sequence[str]) -> Any:
    import torch
    from bioimageio.spec.model import v0_5 as s

    from .. import __version__

    per_channel = isinstance(model, ChannelModels)
    models = parts(model)
    geo = geometry(model)
    net = build_net(model)
    # Normalisation per channel, broadcast over the spatial axes of (batch, channel, ...).
    shape = (1, len(models)) + (1,) * models[0].ndim
    mean = np.array([m.mean for m in models], np.float32).reshape(shape)
    std = np.array([m.std for m in models], np.float32).reshape(shape)
    x_in = raw[None] if per_channel else raw[None, None]
    # bioimage.io's reproducibility test feeds the test input unpadded and compares the whole
    # output, halo included: the expected outputs are the network's on exactly that input.
    x = torch.from_numpy((x_in - mean) / std)
    with torch.inference_mode():
        outputs = {key: t.numpy() * std + mean for key, t in zip(("denoised", "deconvolved"), net(x))}
    np.save(work / "test_raw.npy", x_in)
    for key, arr in outputs.items():
        np.save(work / f"test_{key}.npy", arr.astype(np.float32))
    # The cover shows what users get: our tiled prediction, with its border handling.
    axes = ("C" if per_channel else "") + ("YX" if models[0].ndim == 2 else "ZYX")
    pred = model.predict(raw, axes, device="cpu", precision="fp32")
    write_weights(net, work / "weights.pt")
    write_torchscript(net, x_in, work / "weights_torchscript.pt")
    write_environment(work / "environment.yaml")
    write_readme(model, work / "README.md", name=name, description=description, geo=geo)
    write_cover(raw, pred.denoised, pred.deconvolved, work / "cover.png", channels=per_channel)

    if per_channel:
        arch, kwargs = CHANNEL_ARCHITECTURE, {"nets": [net_kwargs(m) for m in models]}
    else:
        arch, kwargs = ARCHITECTURE, net_kwargs(model)
    torch_version = s.Version(torch.__version__.split("+")[0])
    try:
        return s.ModelDescr(
            name=name,
            description=description,
            authors=[s.Author(name=a) for a in authors],
            cite=[s.CiteEntry(text=PAPER_CITATION[0], doi=s.Doi(PAPER_CITATION[1])),
                  s.CiteEntry(text=N2V_CITATION[0], doi=s.Doi(N2V_CITATION[1]))],
            license=s.LicenseId(license),
            documentation=s.FileDescr(source=work / "README.md"),
            covers=[s.FileDescr(source=work / "cover.png")],
            tags=sorted({"denoising", "noise2void", "deconoising", "self-supervised",
                         "fluorescence-light-microscopy", f"{models[0].ndim}d", "pytorch", *tags,
                         *(["multichannel"] if per_channel else []),
                         *([] if all(m.is_noise2void for m in models) else ["deconvolution"])}),
            inputs=[input_descr(model, geo, work)],
            outputs=[output_descr(key, model, geo, work) for key in outputs],
            weights=s.WeightsDescr(
                pytorch_state_dict=s.PytorchStateDictWeightsDescr(
                    source=work / "weights.pt",
                    architecture=s.ArchitectureFromLibraryDescr(
                        import_from=arch[0], callable=s.Identifier(arch[1]), kwargs=kwargs),
                    pytorch_version=torch_version,
                    dependencies=s.FileDescr(source=work / "environment.yaml"),
                ),
                torchscript=s.TorchscriptWeightsDescr(source=work / "weights_torchscript.pt",
                                                      pytorch_version=torch_version,
                                                      parent="pytorch_state_dict"),
            ),
            config=s.Config(
                bioimageio=s.BioimageioConfig(
                    # float32 rounding grows with the intensity scale: the widest channel's
                    reproducibility_tolerance=[s.ReproducibilityTolerance(
                        relative_tolerance=REL_TOLERANCE, absolute_tolerance=ABS_TOLERANCE * float(std.max()),
                        mismatched_elements_per_million=0)],
                    architecture_type="U-Net + PSF convolution", task="denoising",
                    modality="fluorescence microscopy"),
                **{CONFIG_KEY: payload(model, __version__)},
            ),
        )
    except ValueError as e:  # pydantic's ValidationError lists every field at fault
        raise BioimageioExportError(f"the package description is invalid: {_one_line(e)}") from None


def _check_license(license: str) -> None:
    from bioimageio.spec.model import v0_5 as s

    try:
        s.LicenseId(license)
    except ValueError:
        raise BioimageioExportError(f"unknown licence {license!r}: use an SPDX identifier such as CC-BY-4.0, "
                                    "CC0-1.0 or MIT") from None


def _one_line(e: ValueError) -> str:
    errors = getattr(e, "errors", None)
    if not callable(errors):
        return str(e).splitlines()[0]
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'model'}: {err['msg']}" for err in errors())[:1000]


def _package_tested(descr: Any, path: Path, work: Path) -> None:
    """Zip the package next to ``path``, run the model test on the zip, then move it in place."""
    from bioimageio.core import test_model
    from bioimageio.spec import save_bioimageio_package

    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".zip", dir=directory)
    os.close(fd)
    try:
        usual_permissions(tmp)
        save_bioimageio_package(descr, output_path=Path(tmp))
        summary = test_model(Path(tmp), devices=["cpu"], working_dir=work / "test")
        if summary.status != "passed":
            raise BioimageioExportError(f"bioimage.io's model test failed; no package written: {_failures(summary)}")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _failures(summary: Any) -> str:
    lines = []
    for d in summary.details:
        if d.status == "failed":
            errs = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" if e.loc else e.msg for e in d.errors)
            lines.append(f"{d.name}: {errs or 'failed'}")
    return " | ".join(lines)[:2000] or "unknown reason"
