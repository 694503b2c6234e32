"""PSFs computed from a microscope's optics (NA, wavelengths, immersion, sampling).

The diffraction model is Christoph Gohlke's ``psf`` package (BSD-3-Clause; Richards-Wolf
integrals for the PSF, Zhang, Zerubia & Olivo-Marin 2007 for its Gaussian approximation),
an optional dependency: ``pip install "napari-deconoising[optics]"``.

Units: nanometres for every length the user gives; pixels for every sigma returned.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import DataWarning
from .psf import PSFError

__all__ = ["MODALITIES", "Optics", "OpticsError", "gaussian_sigma", "optics_psf", "parse_optics"]

MODALITIES = ("widefield", "confocal")
MAX_SIGMA_PX = 50.0  # the widest Gaussian PSF a TrainConfig accepts (psf_sigma)

# CLI key -> Optics field; the keys are what users type in --psf-optics.
_KEYS = {"na": "na", "wavelength": "wavelength_nm", "excitation": "excitation_nm", "n": "n_immersion",
         "pixel": "pixel_nm", "z_step": "z_step_nm", "modality": "modality", "pinhole": "pinhole"}
_KEY = {field: key for key, field in _KEYS.items()}  # errors name what the user typed

# psf samples the pinhole integral on the PSF's own radial grid: this many grid steps per
# lambda/NA keep a 1 Airy unit pinhole several samples wide at any camera pixel size.
_CONFOCAL_STEPS_PER_LAMBDA_NA = 20


class OpticsError(PSFError):
    """Optical parameters that are missing, malformed or physically impossible."""


@dataclass(frozen=True)
class Optics:
    """The microscope parameters that determine a diffraction-limited PSF.

    Parameters
    ----------
    na : float
        Numerical aperture of the objective; must be below ``n_immersion``.
    wavelength_nm : float
        Emission wavelength in nm (the light the camera or detector sees).
    n_immersion : float
        Refractive index of the immersion medium (oil 1.518, water 1.333, air 1.0).
    pixel_nm : float
        Lateral pixel size in the sample (camera pixel / magnification), in nm.
    z_step_nm : float, optional
        Distance between planes of a stack, in nm; needed for 3D PSFs.
    modality : {"widefield", "confocal"}
        Widefield (camera) or point-scanning confocal with a pinhole.
    excitation_nm : float, optional
        Excitation wavelength in nm; required for confocal, unused for widefield.
    pinhole : float
        Confocal pinhole diameter in Airy units (1 AU = 1.22 emission wavelength / NA).
    """

    na: float
    wavelength_nm: float
    n_immersion: float
    pixel_nm: float
    z_step_nm: float | None = None
    modality: str = "widefield"
    excitation_nm: float | None = None
    pinhole: float = 1.0

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise OpticsError(message)

        for f in dataclasses.fields(self):  # plain numbers: a model file keeps nothing else
            if isinstance(getattr(self, f.name), np.generic):
                object.__setattr__(self, f.name, getattr(self, f.name).item())

        for name in ("na", "wavelength_nm", "n_immersion", "pixel_nm", "pinhole"):
            v = getattr(self, name)
            need(_is_real(v) and math.isfinite(v) and v > 0, f"{_KEY[name]}={v!r}: must be a positive number")
        for name in ("z_step_nm", "excitation_nm"):
            v = getattr(self, name)
            need(v is None or (_is_real(v) and math.isfinite(v) and v > 0),
                 f"{_KEY[name]}={v!r}: must be a positive number")
        need(self.modality in MODALITIES, f"modality={self.modality!r}: must be one of {MODALITIES}")
        need(1.0 <= self.n_immersion <= 2.0, f"n={self.n_immersion} (immersion index): must be between 1.0 and 2.0")
        need(self.na < self.n_immersion, f"NA {self.na} >= immersion index {self.n_immersion} is impossible "
             "(the NA is at most the refractive index of the immersion medium)")
        need(200 <= self.wavelength_nm <= 2000, f"wavelength={self.wavelength_nm}: expected 200-2000 nm")
        if self.modality == "confocal":
            need(self.excitation_nm is not None, "confocal needs the excitation wavelength (excitation=..., nm)")
            need(self.excitation_nm <= self.wavelength_nm, f"excitation {self.excitation_nm} nm is longer than "
                 f"emission {self.wavelength_nm} nm: swap them?")
            need(self.pinhole <= 20, f"pinhole={self.pinhole}: expected a diameter of at most 20 Airy units")
        # Below a fifth of a pixel the PSF is a single pixel: almost surely a unit mistake (um for nm).
        need(self.pixel_nm <= 5 * self.wavelength_nm / self.na,
             f"pixel={self.pixel_nm}: far larger than the PSF; give the pixel size in nm")
        # The other slip (um for nm): a PSF hundreds of pixels wide, whose kernel would not fit in memory;
        # 0.22 wavelength / NA is the widefield Gaussian's sigma (gaussian_sigma), an upper bound.
        sigma_px = 0.22 * self.wavelength_nm / self.na / self.pixel_nm
        need(sigma_px <= MAX_SIGMA_PX, f"pixel={self.pixel_nm}: the PSF would be about {sigma_px:.0f} px wide "
             f"(Gaussian sigma; at most {MAX_SIGMA_PX:g} px); give the pixel size in nm")

    def check_z_step(self) -> None:
        """Refuse a Z step that would make a 3D PSF thousands of planes deep: the slip of um for nm.

        Checked where a 3D PSF is built, not here: a 2D model never uses the Z step (napari's
        optics form sends one anyway), and a low-NA objective's axial sigma at a fine step is
        long but harmless there. 0.8 wavelength n / NA**2 bounds the axial sigma:
        :func:`gaussian_sigma` gives 0.78 of it at low NA, less at high NA and in a confocal.
        """
        planes = 0.8 * self.wavelength_nm * self.n_immersion / self.na**2 / (self.z_step_nm or math.inf)
        if planes > MAX_SIGMA_PX:
            raise OpticsError(f"z_step={self.z_step_nm}: the PSF would be up to about {planes:.0f} planes deep "
                              f"(Gaussian sigma; at most {MAX_SIGMA_PX:g} planes); give the Z step in nm")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for config and model files)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Optics:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(d, dict):
            raise OpticsError(f"optics must be a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OpticsError(f"unknown optics field(s) {', '.join(unknown)}")
        try:
            return cls(**d)
        except TypeError as e:  # a required field is missing
            raise OpticsError(f"optics: {e}") from None

    def describe(self, ndim: int = 2) -> str:
        """One line for summaries: ``widefield PSF NA 1.4, 520 nm, ... (≈ Gaussian sigma 1.24 px)``.

        The sigma is left out when the ``psf`` package is not installed.
        """
        text = f"{self.modality} PSF NA {self.na:g}, {self.wavelength_nm:g} nm, n {self.n_immersion:g}, " \
               f"{self.pixel_nm:g} nm px"
        if self.z_step_nm is not None:
            text += f", {self.z_step_nm:g} nm z step"
        if self.modality == "confocal":
            text += f", excitation {self.excitation_nm:g} nm, pinhole {self.pinhole:g} AU"
        try:
            sz, sy, _ = gaussian_sigma(self)
        except OpticsError:
            return text
        z = f", z {sz:.2f} planes" if ndim == 3 and self.z_step_nm is not None else ""
        return f"{text} (≈ Gaussian sigma {sy:.2f} px{z})"


def parse_optics(text: str) -> Optics:
    """Parse ``"na=1.4,wavelength=520,n=1.518,pixel=65,z_step=200,modality=widefield"``.

    Keys: ``na``, ``wavelength`` (emission, nm), ``n`` (immersion index), ``pixel`` (nm),
    ``z_step`` (nm), ``modality`` (widefield or confocal), ``excitation`` (nm, confocal)
    and ``pinhole`` (Airy units, confocal). Required: na, wavelength, n, pixel.

    Raises
    ------
    OpticsError
        For an unknown or repeated key, a value that is not a number, a missing
        required key, a confocal key for a widefield microscope (a forgotten
        ``modality=confocal`` would silently give the wrong PSF) or impossible optics.
    """
    values: dict[str, Any] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        key, sep, value = (p.strip() for p in item.partition("="))
        if not sep or not value:
            raise OpticsError(f"optics: {item!r} has no value (write key=value)")
        if key.lower() not in _KEYS:
            raise OpticsError(f"optics: unknown key {key!r} (known: {', '.join(_KEYS)})")
        name = _KEYS[key.lower()]
        if name in values:
            raise OpticsError(f"optics: {key!r} given twice")
        if name == "modality":
            values[name] = value.lower()
            continue
        try:
            values[name] = float(value)
        except ValueError:
            raise OpticsError(f"optics: {key}={value!r} is not a number") from None
    missing = [k for k in ("na", "wavelength", "n", "pixel") if _KEYS[k] not in values]
    if missing:
        raise OpticsError(f"optics: missing {', '.join(missing)} (e.g. na=1.4,wavelength=520,n=1.518,pixel=65)")
    confocal_only = [k for k in ("excitation", "pinhole") if _KEYS[k] in values]
    if confocal_only and values.get("modality", "widefield") == "widefield":
        raise OpticsError(f"optics: {' and '.join(confocal_only)} apply to a confocal microscope only: add "
                          "modality=confocal, or leave them out for widefield (emission wavelength alone)")
    return Optics(**values)


def gaussian_sigma(optics: Optics) -> tuple[float, float, float]:
    """Standard deviations (z, y, x) in pixels (z in planes) of the equivalent Gaussian.

    The non-paraxial least-squares Gaussian approximations of Zhang, Zerubia & Olivo-Marin
    (Applied Optics 46, 1819, 2007), as computed by ``psf``; the lateral one is about
    0.22 wavelength / NA for a widefield microscope. Without a Z step, z is NaN.
    """
    lib = _psf_lib()
    kind = lib.GAUSSIAN | (lib.CONFOCAL if optics.modality == "confocal" else lib.EMISSION)
    model = lib.PSF(kind, shape=(8, 8), dims=(1.0, 1.0), **_psf_kwargs(optics))
    sz_um, sr_um = model.sigma.um
    sz = math.nan if optics.z_step_nm is None else 1000 * sz_um / optics.z_step_nm
    sr = 1000 * sr_um / optics.pixel_nm
    return sz, sr, sr


def optics_psf(optics: Optics, ndim: int = 2, size: int | tuple[int, ...] | None = None) -> np.ndarray:
    """The diffraction-limited PSF of ``optics``, sampled on the image grid.

    Parameters
    ----------
    optics : Optics
        The microscope.
    ndim : {2, 3}
        2 gives the in-focus plane (YX): the blur that 2D DecoNoising can undo. A Z
        projection would add the out-of-focus light of every plane, a wide halo whose
        weight depends on how far the projection reaches, not a property of one 2D image.
        3 gives the ZYX volume, sampled every ``z_step_nm``.
    size : int or tuple of int, optional
        Odd kernel size per axis (one value for all). By default the lateral half-width
        is the larger of 4 Gaussian sigmas and 2 wavelength / NA (three dark rings), the
        axial half-width 4 axial sigmas. Another size is the centre of the default kernel
        (renormalised); one that cuts off more than 1% of its light warns
        (:class:`~.data.DataWarning`).

    Returns
    -------
    numpy.ndarray
        float32, odd-sized, centred, symmetric and normalised to sum 1.
    """
    if ndim not in (2, 3):
        raise OpticsError(f"ndim={ndim}: must be 2 or 3")
    if ndim == 3 and optics.z_step_nm is None:
        raise OpticsError("a 3D PSF needs the Z step (z_step=..., nm)")
    if ndim == 3:
        optics.check_z_step()
    half = _half_sizes(optics, ndim, size)
    default = _half_sizes(optics, ndim, None) if size is not None else half
    # computed at least at the default size, to measure what a smaller size cuts off
    full = tuple(max(h, d) for h, d in zip(half, default))
    hz, hr = (full[0] if ndim == 3 else 1), max(full[-2:])
    lib = _psf_lib()
    # psf samples index i at i * dims / (shape - 1): exactly on the pixel grid.
    factor = 1
    if optics.modality == "confocal":
        factor = max(1, math.ceil(_CONFOCAL_STEPS_PER_LAMBDA_NA * optics.pixel_nm * optics.na / optics.wavelength_nm))
    # (a 2D PSF uses only the centre of its 3 planes, so any spacing serves without a Z step)
    z_um = hz * (optics.z_step_nm or optics.pixel_nm) / 1000
    r_um = hr * optics.pixel_nm / 1000
    kind = lib.ISOTROPIC | (lib.CONFOCAL if optics.modality == "confocal" else lib.EMISSION)
    model = lib.PSF(kind, shape=(hz + 1, hr * factor + 1), dims=(z_um, r_um), **_psf_kwargs(optics))
    # volume() mirrors the (z, r) samples into (2hz+1, 2R+1, 2R+1); every factor-th sample
    # lies on the pixel grid, the centre included.
    vol = model.volume()[:, ::factor, ::factor]
    vol = np.clip(vol[hz] if ndim == 2 else vol, 0, None)
    total = vol.sum()
    centre = (hz, hr, hr)[-ndim:]
    vol = vol[tuple(slice(c - h, c + h + 1) for c, h in zip(centre, half))]
    kept = vol.sum() / total
    if kept < 0.99:  # the model would learn a narrower blur than the microscope's
        sizes = [" x ".join(str(2 * h + 1) for h in hs) for hs in (half, default)]
        warnings.warn(f"a PSF of size {sizes[0]} keeps only {kept:.0%} of the light of the default {sizes[1]} "
                      f"kernel ({optics.describe(ndim)}): a model would learn a narrower blur than the "
                      "microscope's", DataWarning, stacklevel=2)
    return (vol / vol.sum()).astype(np.float32)


# -- helpers ---------------------------------------------------------------------------------

def _half_sizes(optics: Optics, ndim: int, size: int | tuple[int, ...] | None) -> tuple[int, ...]:
    if size is None:
        sz, sr, _ = gaussian_sigma(optics)
        lateral = max(4 * sr, 2 * optics.wavelength_nm / optics.na / optics.pixel_nm)
        axial = 4 * sz if ndim == 3 else 0  # sz is NaN without a Z step (2D only)
        halves = (math.ceil(axial), math.ceil(lateral), math.ceil(lateral))
        return halves[-ndim:]
    sizes = (size,) * ndim if isinstance(size, int) else tuple(size)
    if len(sizes) != ndim or not all(isinstance(s, int) and s >= 1 and s % 2 == 1 for s in sizes):
        raise OpticsError(f"size={size!r}: must be {ndim} odd whole numbers (or one)")
    return tuple(s // 2 for s in sizes)


def _psf_kwargs(optics: Optics) -> dict[str, Any]:
    kw: dict[str, Any] = {"em_wavelen": optics.wavelength_nm, "num_aperture": optics.na,
                          "refr_index": optics.n_immersion}
    if optics.modality == "confocal":
        # Airy units are diameters of 1.22 lambda_em / NA; psf takes the radius in um.
        radius_um = optics.pinhole * 0.61 * optics.wavelength_nm / optics.na / 1000
        kw.update(ex_wavelen=optics.excitation_nm, pinhole_radius=radius_um)
    return kw


def _psf_lib() -> Any:
    try:
        import psf
    except ImportError:
        raise OpticsError("a PSF from optics needs the 'psf' package: "
                          "pip install \"napari-deconoising[optics]\"") from None
    return psf


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
