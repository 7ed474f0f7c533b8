"""The napari edge of napari-cvdm: dock widgets, worker threads and layer handling (the only Qt/napari code)."""

from .finetune import FineTuneWidget
from .reconstruct import ReconstructWidget

__all__ = ["FineTuneWidget", "ReconstructWidget"]
