"""The DecoNoising engine: numpy in, numpy out, torch inside. No Qt, no napari.

Typical use::

    from napari_deconoising.core import TrainConfig, train
    model = train(noisy, TrainConfig(psf_sigma=1.5))
    result = model.predict(noisy)
    result.denoised, result.deconvolved
"""

from .config import ConfigError, TrainConfig
from .data import DataError, DataWarning, as_image_set
from .device import available_devices, execution_plan, resolve_device
from .io import ImageFileError, read_image, write_image
from .model import DecoNoisingModel, load_model, save_model
from .modelfile import ModelFileError
from .network import DecoNoisingNet
from .predict import Cancelled, Prediction, predict, predict_iter
from .psf import PSFConvolution, PSFError, gaussian_psf, load_psf, prepare_psf
from .sample import Sample, make_sample, psnr
from .train import Trainer, TrainEvent, train
from .unet import UNet

__all__ = [
    "Cancelled",
    "ConfigError",
    "DataError",
    "DataWarning",
    "DecoNoisingModel",
    "DecoNoisingNet",
    "ImageFileError",
    "ModelFileError",
    "PSFConvolution",
    "PSFError",
    "Prediction",
    "Sample",
    "TrainConfig",
    "TrainEvent",
    "Trainer",
    "UNet",
    "as_image_set",
    "available_devices",
    "execution_plan",
    "gaussian_psf",
    "load_model",
    "load_psf",
    "make_sample",
    "predict",
    "predict_iter",
    "prepare_psf",
    "psnr",
    "read_image",
    "resolve_device",
    "save_model",
    "train",
    "write_image",
]
