"""The learned schedule: boundary values, monotonicity, signs and exact time derivatives."""

from __future__ import annotations

import pytest
import torch

from napari_cvdm.model.schedule import MonotoneTimeNet, Schedule
from napari_cvdm.model.unet import UNetConfig


def random_schedule(seed: int) -> Schedule:
    """A schedule with random (also large) parameters: the guarantees must hold for every parameter value."""
    torch.manual_seed(seed)
    sched = Schedule(cond_channels=2, out_channels=1, config=UNetConfig(width=4, depth=2), time_hidden=32)
    with torch.no_grad():
        for p in sched.parameters():
            p.add_(torch.randn_like(p) * 2.0)
    return sched.double()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gamma_starts_at_one_decreases_and_beta_is_non_negative(seed):
    sched = random_schedule(seed)
    x = torch.randn(3, 2, 12, 10, dtype=torch.float64) * 3
    lam = sched.lam(x)
    assert (lam > 0).all()
    times = torch.linspace(0, 1, 101, dtype=torch.float64)
    gammas = torch.stack([sched.gamma(lam, torch.full((3,), float(t), dtype=torch.float64)) for t in times])
    betas = torch.stack([sched.beta(lam, torch.full((3,), float(t), dtype=torch.float64)) for t in times])
    assert torch.equal(gammas[0], torch.ones_like(gammas[0]))  # γ(0, x) = 1 exactly
    assert (gammas[1:] <= gammas[:-1]).all()  # non-increasing in t, pixel by pixel
    assert (gammas[-1] < 1).all() and (gammas > 0).all()
    assert (betas >= 0).all()
    assert torch.equal(betas[0], torch.zeros_like(betas[0]))  # τ(0) = 0


@pytest.mark.parametrize("seed", [0, 3])
def test_closed_form_time_derivatives_match_finite_differences_and_autograd(seed):
    sched = random_schedule(seed)
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    lam = sched.lam(x)
    t = torch.tensor([0.05, 0.3, 0.61, 0.97], dtype=torch.float64)
    at = sched.at(lam, t)
    h = 1e-5
    g_plus, g_minus = sched.gamma(lam, t + h), sched.gamma(lam, t - h)
    fd1 = (g_plus - g_minus) / (2 * h)
    fd2 = (g_plus - 2 * at.gamma + g_minus) / h**2
    torch.testing.assert_close(at.dgamma_dt, fd1, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(at.d2gamma_dt2, fd2, rtol=1e-3, atol=1e-5)

    # autograd of ρ(t) agrees with the closed form (per sample, so per pixel after broadcasting with λ)
    tt = t.clone().requires_grad_(True)
    rho = sched.rho(tt)
    (d1,) = torch.autograd.grad(rho.sum(), tt, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), tt)
    _, d1_closed, d2_closed = sched.rho.with_derivatives(t)
    torch.testing.assert_close(d1, d1_closed)
    torch.testing.assert_close(d2, d2_closed)


def test_derivative_is_exact_per_pixel_not_mixed_with_neighbours():
    """∂γ/∂t at a pixel depends only on that pixel's λ (the authors' 3×3 time convolution mixes neighbours)."""
    sched = random_schedule(5)
    lam = torch.rand(1, 1, 5, 5, dtype=torch.float64) + 0.5
    t = torch.tensor([0.4], dtype=torch.float64)
    base = sched.at(lam, t).dgamma_dt
    lam2 = lam.clone()
    lam2[0, 0, 2, 2] *= 3  # change one pixel
    changed = sched.at(lam2, t).dgamma_dt
    diff = (changed - base).abs()[0, 0]
    assert diff[2, 2] > 0
    diff[2, 2] = 0
    assert torch.equal(diff, torch.zeros_like(diff))


def test_integrated_beta_equals_quadrature_of_beta():
    sched = random_schedule(7)
    lam = sched.lam(torch.randn(1, 2, 6, 6, dtype=torch.float64))
    t = torch.linspace(0, 1, 20001, dtype=torch.float64)
    tau = sched.tau(t)
    trapezoid = torch.trapezoid(tau, t)
    torch.testing.assert_close(sched.integrated_beta(lam), lam * trapezoid, rtol=1e-7, atol=1e-9)


def test_monotone_net_is_zero_at_zero_and_non_decreasing_for_any_weights():
    torch.manual_seed(0)
    net = MonotoneTimeNet(hidden=64).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 5)
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    f, df, _ = net.with_derivatives(t)
    assert f[0] == 0
    assert (f[1:] >= f[:-1]).all()
    assert (df >= 0).all()
