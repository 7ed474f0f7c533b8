"""Time grids 1 = t₀ > … > t_K = 0 for the γ-sampler: equal steps in t, or in the image's median log-SNR.

Both kinds give a valid grid (float32, strictly decreasing from 1.0 to 0.0) for every step count up to
``1 / MIN_GAP`` — far beyond the 2000 steps :class:`~napari_cvdm.settings.ReconstructSettings` allows.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.cvdm import CVDM

FINE_POINTS = 4001  # samples of the schedule in t from which the log-SNR grid is interpolated
MIN_GAP = 1e-6  # smallest spacing of two grid times (16 float32 ulps at t = 1, so never rounded to one value)


def uniform_time_grid(steps: int) -> torch.Tensor:
    """Decreasing grid 1 = t_0 > … > t_steps = 0 with equal spacing."""
    return torch.linspace(1.0, 0.0, steps + 1)


@torch.no_grad()
def snr_time_grid(model: CVDM, lam: torch.Tensor, steps: int, max_logsnr: float = 8.0) -> torch.Tensor:
    """Decreasing grid 1 = t_0 > … > t_steps = 0 with equal steps in the image's median log-SNR.

    log-SNR(t) = log γ/(1 − γ) with γ = exp(−λ_med ρ(t)).  Network evaluations land where the learned schedule
    actually changes the signal-to-noise ratio (from log-SNR(1) up to ``max_logsnr``), instead of being spent where
    γ ≈ 0 or γ ≈ 1.  ρ is evaluated on :data:`FINE_POINTS` times and each grid time is interpolated between them
    (log t linear in log-SNR), so the grid keeps equal log-SNR steps however many there are.  Where the schedule is
    flat (no time has the target log-SNR) neighbouring times are kept :data:`MIN_GAP` apart, which keeps every grid
    strictly decreasing in float32.
    """
    fine = torch.linspace(0.0, 1.0, FINE_POINTS, device=lam.device, dtype=torch.float64)
    rho = model.schedule.rho(fine).double()
    lam_med = lam.double().median()
    gamma = torch.exp(-lam_med * rho).clamp(1e-12, 1 - 1e-12)
    logsnr = (torch.log(gamma) - torch.log1p(-gamma)).cpu().numpy()  # decreasing in t
    hi = min(float(logsnr[1]), max_logsnr)
    lo = float(logsnr[-1])
    if not hi > lo:
        return uniform_time_grid(steps)
    targets = np.linspace(lo, hi, steps + 1)[1:-1]  # t from 1 to 0
    # log t is close to linear in log-SNR near t = 0 (log-SNR ≈ −log λρ'(0)t), where log-SNR bends most; targets
    # never exceed log-SNR(fine[1]), so t = 0 is never needed.  np.interp wants increasing abscissae: −log-SNR.
    inner = np.exp(np.interp(-targets, -logsnr[1:], np.log(fine[1:].cpu().numpy())))
    return check_time_grid(torch.from_numpy(strictly_decreasing(np.concatenate([[1.0], inner, [0.0]]))))


def strictly_decreasing(grid: np.ndarray, gap: float = MIN_GAP) -> np.ndarray:
    """``grid`` (1.0 first, 0.0 last, any values between) moved as little as needed so that neighbours are at least
    ``gap`` apart: time i is bounded to [(K − i)·gap, 1 − i·gap], then each is kept ``gap`` below the one before."""
    grid = np.asarray(grid, dtype=np.float64).copy()
    steps = len(grid) - 1
    if steps * gap >= 1:
        raise ValueError(f"{steps} steps cannot be {gap:g} apart in [0, 1]; use fewer than {int(1 / gap)} steps")
    i = np.arange(steps + 1)
    grid = np.clip(grid, (steps - i) * gap, 1.0 - i * gap)
    for k in range(1, steps):
        grid[k] = min(grid[k], grid[k - 1] - gap)
    return grid


def check_time_grid(grid: torch.Tensor) -> torch.Tensor:
    """``grid`` as a float32 vector, or a clear error unless it decreases strictly from 1.0 to 0.0."""
    grid = torch.as_tensor(grid, dtype=torch.float32).flatten()
    if grid.numel() < 2 or grid[0] != 1.0 or grid[-1] != 0.0 or not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError("a time grid must decrease strictly from 1.0 to 0.0, e.g. [1.0, 0.5, 0.0]")
    return grid
