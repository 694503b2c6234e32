"""The package's README and cover image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.channels import ChannelModels
from ..core.model import DecoNoisingModel
from .files import AnyModel, Geometry, parts

__all__ = ["write_readme", "write_cover", "PAPER_CITATION", "N2V_CITATION"]

PAPER_CITATION = ("Goncharova, A. S., Honigmann, A., Jug, F., Krull, A.: Improving Blind Spot Denoising "
                  "for Microscopy. ECCV 2020 Workshops, LNCS 12535, 380-393 (2020)",
                  "10.1007/978-3-030-66415-2_25")
N2V_CITATION = ("Krull, A., Buchholz, T.-O., Jug, F.: Noise2Void - Learning Denoising from Single Noisy "
                "Images. CVPR 2019", "10.1109/CVPR.2019.00223")


def _psf_text(model: DecoNoisingModel) -> str:
    c = model.config
    if model.is_noise2void:
        return "none: a Noise2Void model (the deconvolved output equals the denoised one)"
    if c.psf == "gaussian":
        return f"Gaussian, sigma {', '.join(f'{s:g}' for s in c.sigma_per_axis)} px, kernel {model.psf.shape}"
    if c.optics is not None:
        return f"{c.optics.describe(c.ndim)}, kernel {model.psf.shape} (normalised to sum 1, stored in the weights)"
    return f"measured, kernel {model.psf.shape} (normalised to sum 1, stored in the weights)"


def _losses(history: list[dict]) -> str:
    if not history:
        return "not recorded"
    last = history[-1]
    parts = []
    if last.get("train_loss") is not None:
        parts.append(f"final training loss {last['train_loss']:.4g}")
    if last.get("val_loss") is not None:
        parts.append(f"final validation loss {last['val_loss']:.4g}")
    vals = [h["val_loss"] for h in history if h.get("val_loss") is not None]
    if vals:
        parts.append(f"best validation loss {min(vals):.4g}")
    return ", ".join(parts) or "not recorded"


def _training(model: DecoNoisingModel) -> str:
    """One model's training table."""
    c = model.config
    epochs = len(model.history)
    patches = epochs * c.steps_per_epoch * c.batch_size
    wiener = (f", phantom through the PSF's Wiener filter (eps {c.phantom_wiener_eps:g})"
              if c.phantom_wiener_eps and not model.is_noise2void else "")
    unet = f"{c.unet_decoder} decoder{', N2V2' if c.n2v2 else ''}{wiener}"
    return f"""| | |
|---|---|
| PSF | {_psf_text(model)} |
| U-Net | depth {c.depth}, {c.channels} first-level channels, {c.ndim}D, {unet} |
| Normalisation | fixed mean {model.mean:.6g}, standard deviation {model.std:.6g} (input units) |
| Loss | blind-spot masked MSE ({c.mask_fraction:g} of pixels masked) + positivity weight {c.positivity:g} |
| Schedule | {epochs} epochs x {c.steps_per_epoch} steps x {c.batch_size} patches of {c.patch_size} px, \
Adam lr {c.learning_rate:.2g} |
| Patches seen | {patches} |
| Losses | {_losses(model.history)} |
| Seed | {c.seed} |
"""


def _what_it_does(models: list) -> str:
    if all(m.is_noise2void for m in models):
        return """A **Noise2Void** network (Krull et al., 2019), trained with napari-deconoising with the
point spread function switched off: a U-Net trained self-supervised on noisy images alone
that predicts the denoised image. There is no phantom and no deconvolution; the package
keeps DecoNoising's two outputs, and both hold the denoised image:

- `denoised`: the denoised image, in the input's intensity units;
- `deconvolved`: the same image (no PSF: nothing to deconvolve)."""
    return """A **DecoNoising** network (Goncharova et al., 2020): a Noise2Void-style U-Net, trained
self-supervised on noisy images alone, predicts a *phantom* (the fluorophore density);
convolved with a fixed point spread function (PSF) it gives the denoised image. The
package has two outputs:

- `denoised`: the phantom convolved with the PSF, in the input's intensity units;
- `deconvolved`: the phantom itself (sharper, but not a validated deconvolution)."""


def write_readme(model: AnyModel, path: Path, *, name: str, description: str, geo: Geometry) -> Path:
    """A README for people deciding whether this model fits their data."""
    from .. import __version__

    models = parts(model)
    ndim = models[0].ndim
    if isinstance(model, ChannelModels):
        training = "\n".join(f"### Channel {k}\n{_training(m)}" for k, m in enumerate(models))
        channels = (f"A {len(models)}-channel {ndim}D image `raw` (batch, channel, {', '.join(geo.axes)}): "
                    "channel k goes through channel k's own network, trained on that channel alone, with "
                    "its own normalisation and PSF; the outputs have the same channels.")
    else:
        training = _training(model)
        channels = f"One single-channel {ndim}D image `raw` (batch, channel, {', '.join(geo.axes)})."
    sizes = ", ".join(f"{a}: {mn} + k x {st}" for a, mn, st in zip(geo.axes, geo.mins, geo.steps))
    halos = ", ".join(f"{a}: {h}" for a, h in zip(geo.axes, geo.halos))
    text = f"""# {name}

{description}

## What this model does
{_what_it_does(models)}

Exported with napari-deconoising {__version__}.

## Training
{training}
The size of the training data set is not recorded in the model file. The full training
configuration and per-epoch history are in `rdf.yaml` under `config.napari_deconoising`.

## Input and output
{channels} Any intensity units: the input is normalised with the training mean and
standard deviation, and both outputs are scaled back to the input's units. Valid sizes
are {sizes} pixels. Each output has a halo of {halos} px: when tiling, give every tile
that much context and crop it from the output (bioimage.io tools do this from `rdf.yaml`).

## Limits
- Trained on one kind of data; on other microscopes, stains or noise levels expect artefacts.
- Denoising assumes pixel-independent noise; correlated (e.g. sCMOS pattern) noise is kept.
- The deconvolved output depends on the PSF being right; it is not quantitative.
- The `torchscript` weights accept only the valid sizes above; the `pytorch_state_dict`
  weights need the `napari-deconoising` package (see `environment.yaml`).

## Citation
- {PAPER_CITATION[0]}. doi:{PAPER_CITATION[1]}
- {N2V_CITATION[0]}. doi:{N2V_CITATION[1]}
- napari-deconoising {__version__}: a napari plugin and command line for DecoNoising.
"""
    path.write_text(text, encoding="utf-8")
    return path


def write_cover(raw: np.ndarray, denoised: np.ndarray, deconvolved: np.ndarray, path: Path, *,
                channels: bool = False) -> Path:
    """raw | denoised | deconvolved side by side; raw and denoised share a display range.

    With ``channels`` the arrays have a leading channel axis: one such row per channel,
    each with its own display range.
    """
    import matplotlib.image

    if not channels:
        raw, denoised, deconvolved = raw[None], denoised[None], deconvolved[None]
    rows = [_cover_row(r, d, v) for r, d, v in zip(raw, denoised, deconvolved)]
    gap = np.ones((4, rows[0].shape[1]))
    image = np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)
    matplotlib.image.imsave(path, image, cmap="gray", vmin=0, vmax=1)
    return path


def _cover_row(raw: np.ndarray, denoised: np.ndarray, deconvolved: np.ndarray) -> np.ndarray:
    def scaled(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1)

    lo, hi = np.percentile(denoised, [0.5, 99.8])
    dlo, dhi = np.percentile(deconvolved, [0.5, 99.8])
    panels = [scaled(raw, lo, hi), scaled(denoised, lo, hi), scaled(deconvolved, dlo, dhi)]
    if raw.ndim == 3:  # a volume: its middle plane
        panels = [p[p.shape[0] // 2] for p in panels]
    gap = np.ones((panels[0].shape[0], 4))
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
