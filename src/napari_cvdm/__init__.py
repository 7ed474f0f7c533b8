"""napari-cvdm: Conditional Variational Diffusion Models for microscopy restoration.

Public API::

    import napari_cvdm as nc
    model = nc.load_model("cvdm-sr-widefield")          # a registered name or a path to a .cvdm file
    result = nc.reconstruct(model, image, n_samples=8)   # .mean, .variance, .beta_map (numpy arrays)
    result.calibrated_std, result.lower, result.upper    # calibrated error bar and 90 % interval (None if the
    result.calibration                                   # model is not calibrated), and what they rest on
    model.metadata                                       # task, pixel sizes, wavelength, normalisation, ...
"""

from ._runtime import Cancelled, CancelToken
from ._version import __version__
from .inference.optics import OpticsMismatch
from .inference.reconstruct import Reconstruction, iter_reconstruct, reconstruct
from .model.files import ModelFileError, TrainedModel
from .registry import list_models, load_model
from .settings import ReconstructSettings
from .tasks import InputError

__all__ = [
    "CancelToken",
    "Cancelled",
    "InputError",
    "ModelFileError",
    "OpticsMismatch",
    "ReconstructSettings",
    "Reconstruction",
    "TrainedModel",
    "__version__",
    "iter_reconstruct",
    "list_models",
    "load_model",
    "reconstruct",
]
