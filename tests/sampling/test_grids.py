"""Time grids: every step count the settings allow gives a valid grid, with equal log-SNR steps where it can."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_cvdm.sampling.grids import MIN_GAP, check_time_grid, snr_time_grid, uniform_time_grid
from napari_cvdm.sampling.plan import MAX_STEPS
from napari_cvdm.settings import ReconstructSettings
from tests.conftest import tiny_network

STEPS = [1, 2, 3, 10, 20, 100, 250, 481, 482, 1000, 1999, MAX_STEPS]


def schedule(rho) -> SimpleNamespace:
    """A stand-in model whose only part is ρ(t) (all snr_time_grid reads)."""
    return SimpleNamespace(schedule=SimpleNamespace(rho=rho))


SCHEDULES = {
    "linear": lambda t: 10 * t,
    "steep at 0": lambda t: 10 * t**0.05,  # log-SNR changes fastest where the old fine grid was coarsest
    "flat middle": lambda t: 10 * torch.minimum(t, torch.tensor(0.3)) + 10 * torch.clamp(t - 0.7, min=0),
    "saturating": lambda t: 60 * t,  # γ reaches its clamp long before t = 1: log-SNR is flat there
}


def is_valid(grid: torch.Tensor, steps: int) -> bool:
    return grid.dtype == torch.float32 and len(grid) == steps + 1 and check_time_grid(grid) is not None


def test_the_settings_limit_is_the_plan_limit():
    assert ReconstructSettings(steps=MAX_STEPS).steps == MAX_STEPS
    with pytest.raises(ValueError, match=f"less than or equal to {MAX_STEPS}"):
        ReconstructSettings(steps=MAX_STEPS + 1)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("lam", [0.05, 1.0, 50.0])
def test_snr_grids_are_valid_for_every_allowed_step_count(kind, lam):
    model = schedule(SCHEDULES[kind])
    for steps in STEPS:
        grid = snr_time_grid(model, torch.full((1, 1, 4, 4), lam), steps)
        assert is_valid(grid, steps), (kind, lam, steps)
        assert float((grid[:-1] - grid[1:]).min()) >= 0.9 * MIN_GAP


def test_a_real_schedule_supports_the_most_steps():
    """The tiny network's ρ at the limit (the old grid failed from 482 steps on for it)."""
    net = tiny_network()
    lam = net.schedule.lam(torch.rand(1, 1, 16, 16))
    for steps in (482, MAX_STEPS):
        assert is_valid(snr_time_grid(net, lam, steps), steps)
    for steps in (1, MAX_STEPS):
        assert is_valid(uniform_time_grid(steps), steps)


def test_snr_grid_has_equal_log_snr_steps_even_with_many_steps():
    """Known answer: ρ(t) = 10 t, λ = 1, so log-SNR(t) = −10 t − log(1 − e^(−10 t)); the inner grid times are
    interpolated, not rounded to the 4001 samples of ρ, so their log-SNR steps stay equal at 2000 steps."""
    grid = snr_time_grid(schedule(lambda t: 10 * t), torch.ones(1, 1, 2, 2), MAX_STEPS).double()
    t = grid[1:-1]
    logsnr = -10 * t - torch.log1p(-torch.exp(-10 * t))
    gaps = torch.diff(logsnr).numpy()
    assert np.allclose(gaps, gaps.mean(), rtol=0.01)


def test_snr_grid_of_a_flat_schedule_falls_back_to_uniform():
    grid = snr_time_grid(schedule(lambda t: 1e-13 * t), torch.ones(1, 1, 2, 2), 4)
    assert torch.equal(grid, uniform_time_grid(4))
