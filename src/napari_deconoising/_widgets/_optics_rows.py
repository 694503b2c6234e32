"""The Train form's "From optics" PSF rows: microscope parameters, preview, equivalent sigma.

The rows are :class:`Field` entries of the Train form's table; this module reads them into
an :class:`~napari_deconoising.core.optics.Optics` and previews its PSF as an image layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, FloatSpinBox, Label, PushButton

from ..core.optics import MODALITIES, Optics, OpticsError, gaussian_sigma, optics_psf
from ._form import Field

__all__ = ["CONFOCAL_ROWS", "OPTICS_INPUTS", "OPTICS_ROWS", "optics_fields", "preview_psf", "read_optics", "sigma_text"]

#: the optical parameters; all rows shown only for "From optics"; some only for a confocal
OPTICS_INPUTS = ("na", "emission_nm", "n_immersion", "pixel_nm", "z_step_nm", "modality", "excitation_nm",
                 "pinhole")
OPTICS_ROWS = (*OPTICS_INPUTS, "preview_psf", "psf_sigma_info")
CONFOCAL_ROWS = ("excitation_nm", "pinhole")

_TIPS = {
    "na": "Numerical aperture of the objective (engraved on it, e.g. 1.4 for oil)",
    "emission_nm": "Emission wavelength of the fluorophore, in nm (the peak of its emission filter)",
    "n_immersion": "Refractive index of the immersion medium: oil 1.518, water 1.333, glycerol 1.47, air 1.0",
    "pixel_nm": "Pixel size in the sample (camera pixel / magnification), in nm",
    "z_step_nm": "Distance between the planes of a stack, in nm (for 3D PSFs)",
    "excitation_nm": "Excitation wavelength (laser line), in nm",
    "pinhole": "Pinhole diameter in Airy units (1 AU is the usual setting)",
}


def optics_fields() -> tuple[Field, ...]:
    """The optics rows, hidden until "From optics" is chosen as the PSF."""

    def row(name: str, label: str, **options: Any) -> Field:
        return Field(name, FloatSpinBox, label, {"visible": False, "tooltip": _TIPS[name], **options})

    return (
        row("na", "NA", min=0.05, max=1.7, step=0.05, value=1.4),
        row("emission_nm", "Emission (nm)", min=200.0, max=2000.0, step=1.0, value=520.0),
        row("n_immersion", "Immersion index", min=1.0, max=2.0, step=0.001, value=1.518),
        row("pixel_nm", "Pixel size (nm)", min=1.0, max=10_000.0, step=1.0, value=65.0),
        row("z_step_nm", "Z step (nm)", min=1.0, max=100_000.0, step=10.0, value=200.0),
        Field("modality", ComboBox, "Modality", {"choices": list(MODALITIES), "value": "widefield",
                                                 "visible": False}),
        row("excitation_nm", "Excitation (nm)", min=200.0, max=2000.0, step=1.0, value=488.0),
        row("pinhole", "Pinhole (AU)", min=0.1, max=20.0, step=0.1, value=1.0),
        Field("preview_psf", PushButton, "", {"text": "Preview PSF", "visible": False}),
        Field("psf_sigma_info", Label, "Equivalent σ", {"value": "", "visible": False}),
    )


def read_optics(form: Any) -> Optics:
    """The :class:`Optics` the form's rows describe (raises OpticsError)."""
    confocal = form.modality.value == "confocal"
    return Optics(na=float(form.na.value), wavelength_nm=float(form.emission_nm.value),
                  n_immersion=float(form.n_immersion.value), pixel_nm=float(form.pixel_nm.value),
                  z_step_nm=float(form.z_step_nm.value), modality=form.modality.value,
                  excitation_nm=float(form.excitation_nm.value) if confocal else None,
                  pinhole=float(form.pinhole.value))


def sigma_text(form: Any, ndim: int = 2) -> str:
    """``"1.24 px"`` (and Z in planes for 3D), or why the optics are unusable."""
    try:
        sz, sy, _ = gaussian_sigma(read_optics(form))
    except OpticsError as e:
        return f"— {e}"
    return f"{sy:.2f} px" + (f", z {sz:.2f} planes" if ndim == 3 else "")


def preview_psf(form: Any, viewer: Any, ndim: int = 2, optics: Optics | None = None) -> Any:
    """Add the PSF of the form's optics (or of ``optics``) to ``viewer`` as an image layer and
    return the layer.

    Raises
    ------
    OpticsError
        The optics are impossible or the ``psf`` package is missing.
    """
    optics = optics or read_optics(form)
    kernel = optics_psf(optics, ndim=ndim)
    name = f"PSF {optics.modality} NA {optics.na:g} {optics.wavelength_nm:g} nm"
    metadata = {"optics": optics.to_dict(), "gaussian_sigma_px": list(gaussian_sigma(optics))}
    # A second preview of the same optics replaces the first; a layer of the user's that happens to
    # have that name (no "optics" in its metadata) is left alone, and the preview gets a new name.
    if name in viewer.layers and "optics" in (viewer.layers[name].metadata or {}):
        viewer.layers[name].data = kernel
        viewer.layers[name].metadata.update(metadata)
        return viewer.layers[name]
    return viewer.add_image(np.asarray(kernel), name=name, metadata=metadata, colormap="magma")
