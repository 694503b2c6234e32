"""The DecoNoising engine: numpy in, numpy out, torch inside. No Qt, no napari.

Typical use::

    from napari_deconoising.core import TrainConfig, train
    model = train(noisy, TrainConfig(psf_sigma=1.5))
    result = model.predict(noisy)
    result.denoised, result.deconvolved

    # volumes: a 3D U-Net and a 3D PSF (sigma per axis, Z Y X)
    model3d = train(stack, TrainConfig(ndim=3, psf_sigma=(2, 1, 1), patch_size=(16, 64, 64)), axes="ZYX")
"""

from .beads import BeadError, BeadPSF, distill_psf
from .channels import ChannelModels, load_model
from .config import ConfigError, TrainConfig
from .data import DataError, DataWarning, as_image_set
from .device import available_devices, execution_plan, resolve_device
from .io import ImageFileError, read_image, write_image
from .model import DecoNoisingModel, save_model
from .modelfile import ModelFileError
from .network import DecoNoisingNet
from .predict import Cancelled, Prediction, predict, predict_iter
from .psf import PSFConvolution, PSFError, gaussian_psf, load_psf, prepare_psf
from .sample import Sample, make_sample, psnr
from .sample3d import Sample3D, make_sample_3d
from .train import Trainer, TrainEvent, train
from .unet import UNet

__all__ = [
    "BeadError",
    "BeadPSF",
    "Cancelled",
    "ChannelModels",
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
    "Sample3D",
    "TrainConfig",
    "TrainEvent",
    "Trainer",
    "UNet",
    "as_image_set",
    "available_devices",
    "distill_psf",
    "execution_plan",
    "gaussian_psf",
    "load_model",
    "load_psf",
    "make_sample",
    "make_sample_3d",
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
