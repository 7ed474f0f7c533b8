"""The sampler of a run: the model's benchmarked defaults combined with the user's settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.metadata import SamplerDefaults
from ..settings import ReconstructSettings
from ..tasks import InputError


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
    """
    method = settings.method or defaults.method
    steps = settings.steps or defaults.steps
    if method == "ancestral":
        return SamplerPlan(method, steps, "–", 1.0, None)
    learned = defaults.learned_grids.get(steps)
    if settings.grid == "learned" and learned is None:
        have = ", ".join(str(k) for k in sorted(defaults.learned_grids)) or "none"
        raise InputError(
            f"this model has no learned time grid for {steps} steps (it has: {have}). Pick one of those step "
            "counts, use grid 'snr', or learn one with `napari-cvdm learn-grid`."
        )
    if settings.grid == "learned":
        return SamplerPlan(method, steps, "learned", settings.eta or 0.0, torch.tensor(learned))
    eta = defaults.eta if settings.eta is None else settings.eta
    if settings.grid == "auto" and eta == 0.0 and learned is not None:
        return SamplerPlan(method, steps, "learned", eta, torch.tensor(learned))
    if settings.grid == "auto" and settings.steps is None and defaults.time_grid:
        return SamplerPlan(method, steps, "explicit", eta, torch.tensor(defaults.time_grid))
    kind = defaults.grid if settings.grid == "auto" else settings.grid
    return SamplerPlan(method, steps, kind, eta, None)
