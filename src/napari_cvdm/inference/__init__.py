"""Images in physical units → reconstructions: sampler plan, tiling and blending, stacks, progress."""

from ..sampling.plan import SamplerPlan, plan_sampler
from .reconstruct import MAX_STACK_AXES, Reconstruction, RunningMean, iter_reconstruct, reconstruct
from .tiling import ramp, tile_starts

__all__ = [
    "MAX_STACK_AXES",
    "Reconstruction",
    "RunningMean",
    "SamplerPlan",
    "iter_reconstruct",
    "plan_sampler",
    "ramp",
    "reconstruct",
    "tile_starts",
]
