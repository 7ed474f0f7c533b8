"""The sampler of a run: the model's benchmarked defaults combined with the user's settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.metadata import SamplerDefaults
from ..settings import ReconstructSettings
from ..tasks import InputError
from .grids import check_time_grid

# Steps of Algorithm 2 when it is not the model's default method and no steps are given: the smallest NFE within 1 %
# MS-SSIM of 200 NFE on both bundled models (`napari-cvdm bench --nfe --samplers ancestral ancestral-euler`:
# SR 100, phase 50; docs/performance.md).  The model's own default steps belong to its default sampler.
ALGORITHM_2_STEPS = 100

# the most steps per sample a run may take: ReconstructSettings.steps' own limit (every grid supports it)
MAX_STEPS: int = next(m.le for m in ReconstructSettings.model_fields["steps"].metadata if hasattr(m, "le"))


@dataclass
class SamplerPlan:
    """The sampler a run uses after combining the model's defaults with the user's settings."""

    method: str
    steps: int
    grid: str  # "learned", "explicit", "snr" or "uniform" ("–" for the ancestral sampler)
    eta: float
    time_grid: torch.Tensor | None


def plan_sampler(defaults: SamplerDefaults, settings: ReconstructSettings) -> SamplerPlan:
    """Method, steps, time grid and η for a run.

    LD3-learned grids belong to the deterministic sampler they were learned for: ``grid="auto"`` uses the model's
    learned grid for the requested number of steps when the run is deterministic (η = 0 asked for, or the model's
    default), ``grid="learned"`` always (with η = 0 unless ``eta`` says otherwise).  Otherwise ``"auto"`` takes the
    model's explicit default grid at its default steps, else its grid kind.  The stochastic sampler stays the
    default of the bundled models: it beats η = 0 on every grid (docs/performance.md).

    Every grid this returns is valid (strictly decreasing from 1 to 0 in float32) and every step count is at most
    :data:`MAX_STEPS`; anything else raises :class:`InputError` here, before a condition or network evaluation.
    """
    method = settings.method or defaults.method
    steps = settings.steps or defaults.steps
    if settings.steps is None and method != defaults.method and method != "gamma":
        steps = ALGORITHM_2_STEPS  # the γ-sampler's few steps would bias Algorithm 2
    if not 1 <= steps <= MAX_STEPS:
        raise InputError(f"{steps} steps per sample is outside 1 to {MAX_STEPS}; pick a step count in that range")
    if method != "gamma":  # Algorithm 2 and its variants: one evaluation per step on i/T
        return SamplerPlan(method, steps, "–", 1.0, None)
    learned = defaults.learned_grids.get(steps)
    if settings.grid == "learned" and learned is None:
        have = ", ".join(str(k) for k in sorted(defaults.learned_grids)) or "none"
        raise InputError(
            f"this model has no learned time grid for {steps} steps (it has: {have}). Pick one of those step "
            "counts, use grid 'snr', or learn one with `napari-cvdm learn-grid`."
        )
    if settings.grid == "learned":
        return SamplerPlan(method, steps, "learned", settings.eta or 0.0, _model_grid(learned, "learned"))
    eta = defaults.eta if settings.eta is None else settings.eta
    if settings.grid == "auto" and eta == 0.0 and learned is not None:
        return SamplerPlan(method, steps, "learned", eta, _model_grid(learned, "learned"))
    if settings.grid == "auto" and settings.steps is None and defaults.time_grid:
        return SamplerPlan(method, steps, "explicit", eta, _model_grid(defaults.time_grid, "default"))
    kind = defaults.grid if settings.grid == "auto" else settings.grid
    return SamplerPlan(method, steps, kind, eta, None)


def _model_grid(values: list[float], kind: str) -> torch.Tensor:
    """A time grid stored in the model file, checked (float32, strictly decreasing from 1 to 0, ≤ MAX_STEPS)."""
    try:
        grid = check_time_grid(torch.tensor(values, dtype=torch.float64))
    except ValueError as err:
        raise InputError(
            f"this model file's {kind} time grid cannot be used ({err}); choose grid 'snr' or 'uniform'"
        ) from None
    if len(grid) - 1 > MAX_STEPS:
        raise InputError(
            f"this model file's {kind} time grid has {len(grid) - 1} steps, more than {MAX_STEPS}; choose grid 'snr'"
        )
    return grid
