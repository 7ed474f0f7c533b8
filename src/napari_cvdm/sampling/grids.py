"""Time grids 1 = t₀ > … > t_K = 0 for the γ-sampler: equal steps in t, or in the image's median log-SNR."""

from __future__ import annotations

import torch

from ..model.cvdm import CVDM


def uniform_time_grid(steps: int) -> torch.Tensor:
    """Decreasing grid 1 = t_0 > … > t_steps = 0 with equal spacing."""
    return torch.linspace(1.0, 0.0, steps + 1)


@torch.no_grad()
def snr_time_grid(model: CVDM, lam: torch.Tensor, steps: int, max_logsnr: float = 8.0) -> torch.Tensor:
    """Decreasing grid 1 = t_0 > … > t_steps = 0 with equal steps in the image's median log-SNR.

    log-SNR(t) = log γ/(1 − γ) with γ = exp(−λ_med ρ(t)).  Network evaluations land where the learned schedule
    actually changes the signal-to-noise ratio (from log-SNR(1) up to ``max_logsnr``), instead of being spent where
    γ ≈ 0 or γ ≈ 1.
    """
    fine = torch.linspace(0.0, 1.0, 4001, device=lam.device, dtype=torch.float64)
    rho = model.schedule.rho(fine).double()
    lam_med = lam.double().median()
    gamma = torch.exp(-lam_med * rho).clamp(1e-12, 1 - 1e-12)
    logsnr = torch.log(gamma) - torch.log1p(-gamma)  # decreasing in t
    hi = min(float(logsnr[1]), max_logsnr)
    lo = float(logsnr[-1])
    if not hi > lo:
        return uniform_time_grid(steps)
    targets = torch.linspace(lo, hi, steps + 1, dtype=torch.float64, device=lam.device)[1:-1]  # t from 1 to 0
    idx = torch.searchsorted(-logsnr, -targets).clamp(1, len(fine) - 1)
    inner = fine[idx].float().cpu()
    grid = torch.cat([torch.ones(1), inner, torch.zeros(1)])
    # keep it strictly decreasing even where the schedule is flat
    for i in range(1, steps):
        grid[i] = min(float(grid[i]), float(grid[i - 1]) - 1e-6)
    grid[1:-1] = grid[1:-1].clamp_min(1e-6 * steps)
    return check_time_grid(grid)


def check_time_grid(grid: torch.Tensor) -> torch.Tensor:
    """``grid`` as a float32 vector, or a clear error unless it decreases strictly from 1.0 to 0.0."""
    grid = torch.as_tensor(grid, dtype=torch.float32).flatten()
    if grid.numel() < 2 or grid[0] != 1.0 or grid[-1] != 0.0 or not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError("a time grid must decrease strictly from 1.0 to 0.0, e.g. [1.0, 0.5, 0.0]")
    return grid
