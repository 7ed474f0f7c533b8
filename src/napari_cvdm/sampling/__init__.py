"""A trained network → samples: the γ-sampler and Algorithm 2, their time grids, and LD3-learned grids."""

from .grids import check_time_grid, snr_time_grid, uniform_time_grid
from .samplers import Partial, SampleStats, Step, iter_sample, sample, sample_seed

__all__ = [
    "Partial",
    "SampleStats",
    "Step",
    "check_time_grid",
    "iter_sample",
    "sample",
    "sample_seed",
    "snr_time_grid",
    "uniform_time_grid",
]
