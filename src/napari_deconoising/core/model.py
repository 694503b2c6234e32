"""A trained DecoNoising model: weights plus everything needed to use them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np
import torch

from .config import ConfigError, TrainConfig, default_decoder
from .modelfile import SINGLE_FORMAT_VERSION, ModelFileError, read_payload, write_payload
from .network import DecoNoisingNet
from .precision import DEFAULT_PRECISION

__all__ = ["DecoNoisingModel", "ModelFileError", "save_model"]


@dataclass
class DecoNoisingModel:
    """Weights, configuration, normalisation, PSF and training history.

    Use :meth:`predict` to restore images and :meth:`save` / :meth:`load` for files.

    Attributes
    ----------
    config : TrainConfig
        The configuration it was trained with.
    state_dict : dict
        Network weights (on the CPU).
    mean, std : float
        Normalisation of the training data, in its intensity units.
    psf : numpy.ndarray or None
        The PSF inside the network; None for a Noise2Void model.
    history : list of dict
        One entry per epoch (epoch, train_loss, val_loss, lr, seconds).
    psf_estimate : dict or None
        How the Gaussian sigma was chosen when it was estimated from the data
        (:meth:`~napari_deconoising.core.psf_search.SigmaSearch.to_dict`); None when
        the user gave it.
    """

    config: TrainConfig
    state_dict: dict[str, torch.Tensor]
    mean: float
    std: float
    psf: np.ndarray | None
    history: list[dict[str, Any]] = field(default_factory=list)
    psf_estimate: dict[str, Any] | None = None

    @property
    def is_noise2void(self) -> bool:
        """True when there is no PSF: the phantom equals the denoised image."""
        return self.psf is None or self.psf.size == 1

    @property
    def ndim(self) -> int:
        return self.config.ndim

    def build_network(self) -> DecoNoisingNet:
        """A fresh :class:`DecoNoisingNet` holding these weights (on the CPU)."""
        net = DecoNoisingNet(self.psf, depth=self.config.depth, channels=self.config.channels,
                             ndim=self.config.ndim, pool_z=self.config.pools_z(), n2v2=self.config.n2v2,
                             wiener_eps=self.config.phantom_wiener_eps, decoder=self.config.unet_decoder)
        net.load_state_dict(self.state_dict)
        return net.eval()

    # -- prediction -------------------------------------------------------------
    def predict(self, image: np.ndarray | Sequence[np.ndarray], axes: str | None = None, *,
                tile_size: int | None = None, device: str = "auto", precision: str = DEFAULT_PRECISION,
                batch_size: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                cancel: Callable[[], bool] | None = None, on_plan: Callable[[Any], None] | None = None):
        """Denoise and deconvolve; see :func:`napari_deconoising.core.predict.predict`."""
        from .predict import predict

        return predict(self, image, axes, tile_size=tile_size, device=device, precision=precision,
                       batch_size=batch_size, progress=progress, cancel=cancel, on_plan=on_plan)

    def predict_iter(self, image: np.ndarray | Sequence[np.ndarray], axes: str | None = None,
                     **kwargs: Any) -> Generator[tuple[int, int], None, Any]:
        """Generator form of :meth:`predict`: yields ``(done, total)`` tiles."""
        from .predict import predict_iter

        return predict_iter(self, image, axes, **kwargs)

    # -- files ------------------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        """The model as plain data (tensors, numbers, strings, lists, dicts) for :mod:`.modelfile`."""
        payload = {
            "config": self.config.to_dict(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict.items()},
            "normalisation": {"mean": float(self.mean), "std": float(self.std)},
            "psf": None if self.psf is None else torch.from_numpy(np.ascontiguousarray(self.psf, np.float32)),
            "history": [{k: _plain(v) for k, v in h.items()} for h in self.history],
        }
        if self.psf_estimate is not None:  # only then: older files round-trip unchanged
            payload["psf_estimate"] = self.psf_estimate
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: str | PathLike = "the model file") -> DecoNoisingModel:
        """Rebuild a model from :meth:`to_payload`'s data, checking the weights fit the network.

        Raises
        ------
        ModelFileError
            Keys are missing or wrong, or the weights do not fit (``source`` names the file).
        """
        if "channels" in payload:
            raise ModelFileError(f"{source} holds one model per channel ({len(payload['channels'])} channels); "
                                 "open it with load_model")
        try:
            norm, psf = payload["normalisation"], payload["psf"]
            model = cls(
                config=TrainConfig.from_dict(payload["config"]),
                state_dict=dict(payload["state_dict"]),
                mean=float(norm["mean"]),
                std=float(norm["std"]),
                psf=None if psf is None else psf.numpy().astype(np.float32),
                history=list(payload.get("history", [])),
                psf_estimate=payload.get("psf_estimate"),  # absent in files before issue 12
            )
            _check_plain_values(model)
            model.build_network()  # checks that the weights fit the architecture
        except (ConfigError, KeyError, TypeError, AttributeError, RuntimeError, ValueError) as e:
            raise ModelFileError(f"{source} is damaged: {e}") from None
        return model

    def save(self, path: str | PathLike) -> None:
        """Write the model atomically to ``path`` (see :mod:`.modelfile`)."""
        write_payload(path, self.to_payload(), SINGLE_FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | PathLike) -> DecoNoisingModel:
        """Read a model file safely (no code in it is ever executed).

        Raises
        ------
        ModelFileError
            No such file, not a model file, unsafe content, a newer format, or damaged.
        """
        return cls.from_payload(read_payload(path), source=path)

    def summary(self) -> str:
        """One line describing the model, for logs and widgets."""
        c = self.config
        if self.is_noise2void:
            psf = "no PSF (Noise2Void)"
        elif c.psf == "gaussian":
            psf = f"Gaussian PSF sigma={c.psf_sigma}"
            est = self.psf_estimate
            if est is not None:
                psf += f" ({_estimate_words(est)})"
        elif c.optics is not None:
            psf = f"{c.optics.describe(c.ndim)}, {tuple(self.psf.shape)}"
        else:
            kernel = np.ascontiguousarray(self.psf, np.float32)
            sigma = " x ".join(f"{v:.2f}" for v in _kernel_sigma(kernel.tobytes(), kernel.shape))
            psf = f"measured PSF {tuple(self.psf.shape)} (≈ Gaussian sigma {sigma} px)"
        if c.unet_decoder != default_decoder(c.ndim):  # the default goes unsaid
            psf += f", {c.unet_decoder} decoder"
        if c.n2v2:
            psf += ", N2V2"
        if c.phantom_wiener_eps and not self.is_noise2void:
            psf += f", Wiener-preconditioned phantom (eps {c.phantom_wiener_eps:g})"
        best = min((h["val_loss"] for h in self.history if h.get("val_loss") is not None), default=None)
        val = f", best val loss {best:.4g}" if best is not None else ""
        dims = "" if c.ndim == 2 else f"3D ({'' if c.pools_z() else 'no '}Z pooling) "
        head = f", PSF head lr x{c.head_learning_rate_scale:g}" if c.head_learning_rate_scale != 1 else ""
        head += f", weight average {c.weight_average:g}" if c.weight_average else ""
        head += f", lr {c.learning_rate:.2g}" if c.learning_rate != 1e-3 else ""  # the paper's rate goes unsaid
        return f"{dims}U-Net depth {c.depth}/{c.channels} ch, {psf}, {len(self.history)} epochs{head}{val}"


def _estimate_words(est: dict) -> str:
    """How the sigma of a ``--psf-sigma auto`` model was chosen, for its summary."""
    if est.get("clear"):
        if est.get("method") != "edges":
            return "estimated from the data"
        # In 3D the edges give the lateral sigma; the axial one stays learned.
        return "lateral from the data's edges" if isinstance(est.get("sigma"), list) else "from the data's edges"
    if est.get("edges") is not None and est.get("sigma") == est.get("learned"):
        return "learned from the data, not confirmed by its edges"
    return "default: no clear estimate from the data"


#: How to train in 2D or 3D, by the model's dimensions, in the Python API's terms: callers with
#: other controls (the command line's --3d, the Train widget's 3D box) pass their own wording.
NDIM_HINTS: Mapping[int, str] = {3: "ndim=3 in the TrainConfig", 2: "ndim=2 in the TrainConfig"}


def check_resume_ndim(model: DecoNoisingModel, ndim: int, what: str = "the model to resume",
                      hints: Mapping[int, str] = NDIM_HINTS) -> None:
    """Raise :class:`ConfigError` unless ``model`` continues as an ``ndim``-D model: 2D <-> 3D is a
    different network, never a silent switch. ``what`` names the model in the message; ``hints``
    says how to switch to the model's dimensions (2 or 3) with the caller's controls."""
    m = model.config.ndim
    if m != ndim:
        raise ConfigError(f"ndim={ndim}: {what} is {m}D; train it in {m}D ({hints[m]})")


def _plain(v: Any) -> Any:
    """numpy scalars as Python numbers: ``weights_only`` loading refuses numpy objects."""
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def _check_plain_values(model: DecoNoisingModel) -> None:
    """Raise ValueError where a file's normalisation or PSF cannot belong to its network: caught at
    loading, not at the first prediction, where it would fail with a message about padding."""
    if not (np.isfinite(model.mean) and np.isfinite(model.std) and model.std > 0):
        raise ValueError(f"its normalisation (mean {model.mean}, std {model.std}) needs finite values and std > 0")
    psf = model.psf
    if psf is not None and (psf.ndim != model.config.ndim or not np.all(np.isfinite(psf))):
        raise ValueError(f"its PSF ({psf.ndim}D, shape {psf.shape}) does not fit a {model.config.ndim}D model "
                         "or holds values that are not finite")


def save_model(model: DecoNoisingModel, path: str | PathLike) -> None:
    """Write ``model`` to ``path`` atomically; same as ``model.save(path)``."""
    model.save(path)


@functools.lru_cache(maxsize=32)
def _kernel_sigma(data: bytes, shape: tuple[int, ...]) -> tuple[float, ...]:
    """:func:`.gaussian_fit.kernel_sigma`, once per PSF: summaries are asked for often, on the GUI thread,
    and a large 3D kernel's fit takes about a second."""
    from .gaussian_fit import kernel_sigma

    return kernel_sigma(np.frombuffer(data, dtype=np.float32).reshape(shape))
