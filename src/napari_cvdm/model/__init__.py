"""The CVDM itself, in pure PyTorch: networks, the learned schedule, the loss, model files (no device policy,
no sampling, no napari, no physics)."""

from .cvdm import CVDM, CVDMConfig, LossTerms
from .files import ModelFileError, TrainedModel, load_model_file, save_model, sha256_of
from .metadata import ModelMetadata, Normalization, SamplerDefaults
from .unet import UNetConfig

__all__ = [
    "CVDM",
    "CVDMConfig",
    "LossTerms",
    "ModelFileError",
    "ModelMetadata",
    "Normalization",
    "SamplerDefaults",
    "TrainedModel",
    "UNetConfig",
    "load_model_file",
    "save_model",
    "sha256_of",
]
