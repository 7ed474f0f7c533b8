"""The CVDM itself, in pure PyTorch (no napari, no Qt, no physics)."""

from .cvdm import CVDM, CVDMConfig, LossTerms
from .files import ModelFileError, TrainedModel, load_model_file, save_model, sha256_of
from .metadata import ModelMetadata, Normalization, SamplerDefaults
from .sampler import Partial, SampleStats, Step, iter_sample, sample
from .unet import UNetConfig

__all__ = [
    "CVDM",
    "CVDMConfig",
    "LossTerms",
    "ModelFileError",
    "ModelMetadata",
    "Normalization",
    "Partial",
    "SampleStats",
    "SamplerDefaults",
    "Step",
    "TrainedModel",
    "UNetConfig",
    "iter_sample",
    "load_model_file",
    "sample",
    "save_model",
    "sha256_of",
]
