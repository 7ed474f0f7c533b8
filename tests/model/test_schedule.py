"""The learned schedule: boundary values, monotonicity, signs and exact time derivatives."""

from __future__ import annotations

import pytest
import torch

from napari_cvdm.model.schedule import MonotoneTimeNet, Schedule
from napari_cvdm.model.unet import UNetConfig


def random_schedule(seed: int, exact: bool = True) -> Schedule:
    """A schedule with random (also large) parameters: the guarantees must hold for every parameter value."""
    torch.manual_seed(seed)
    config = UNetConfig(width=4, depth=2)
    sched = Schedule(cond_channels=2, out_channels=1, config=config, time_hidden=32, exact=exact)
    with torch.no_grad():
        for p in sched.parameters():
            p.add_(torch.randn_like(p) * 2.0)
    return sched.double()


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gamma_starts_at_one_decreases_and_beta_is_non_negative(seed, exact):
    sched = random_schedule(seed, exact)
    x = torch.randn(3, 2, 12, 10, dtype=torch.float64) * 3
    lam = sched.lam(x)
    assert (lam > 0).all()
    times = torch.linspace(0, 1, 101, dtype=torch.float64)
    gammas = torch.stack([sched.gamma(lam, torch.full((3,), float(t), dtype=torch.float64)) for t in times])
    betas = torch.stack([sched.beta(lam, torch.full((3,), float(t), dtype=torch.float64)) for t in times])
    assert torch.equal(gammas[0], torch.ones_like(gammas[0]))  # γ(0, x) = 1 exactly
    assert (gammas[1:] <= gammas[:-1]).all()  # non-increasing in t, pixel by pixel
    assert (gammas[-1] < 1).all() and (gammas >= 0).all()  # (random λρ may be large enough to underflow)
    assert (betas >= 0).all()
    if not exact:
        assert torch.equal(betas[0], torch.zeros_like(betas[0]))  # the separate τ(0) = 0 …
        assert (sched.rho.with_derivatives(times[:1])[1] > 0).all()  # … while ρ'(0) > 0: the PDE fails at t = 0


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_the_exact_schedule_satisfies_its_pde_everywhere(seed):
    """∂γ/∂t + βγ = 0 at every t and pixel (float64), for random parameters: by construction, not by training."""
    sched = random_schedule(seed, exact=True)
    lam = sched.lam(torch.randn(4, 2, 8, 8, dtype=torch.float64) * 3)
    t = torch.tensor([0.0, 1e-3, 0.5, 1.0], dtype=torch.float64)
    at = sched.at(lam, t)
    residual = (at.dgamma_dt + at.beta * at.gamma).abs()
    assert float(residual.detach().max()) <= 1e-6
    # and against finite differences of γ itself, away from the end points
    h = 1e-6
    inner = torch.tensor([1e-3, 0.25, 0.5, 0.9], dtype=torch.float64)
    fd = (sched.gamma(lam, inner + h) - sched.gamma(lam, inner - h)) / (2 * h)
    torch.testing.assert_close(fd, -sched.beta(lam, inner) * sched.gamma(lam, inner), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 6])
def test_the_exact_beta_map_is_minus_log_gamma_at_one(seed):
    sched = random_schedule(seed, exact=True)
    lam = sched.lam(torch.randn(2, 2, 6, 6, dtype=torch.float64))
    gamma_1 = sched.gamma(lam, torch.ones(2, dtype=torch.float64))
    seen = gamma_1 > 1e-200  # where γ(1) does not underflow
    assert seen.float().mean() > 0.3
    torch.testing.assert_close(sched.integrated_beta(lam)[seen], -torch.log(gamma_1[seen]), rtol=1e-10, atol=1e-4)
    # the per-step decays of Algorithm 2 multiply to γ(1) exactly
    knots = torch.linspace(0, 1, 11, dtype=torch.float64)
    total = sum(sched.log_decay(lam[:1], knots[i - 1], knots[i]) for i in range(1, 11))
    torch.testing.assert_close(total, -sched.integrated_beta(lam[:1]), rtol=1e-10, atol=1e-10)


def test_per_step_decays_follow_gamma_for_both_parameterisations():
    for exact in (True, False):
        sched = random_schedule(2, exact)
        lam = sched.lam(torch.randn(1, 2, 4, 4, dtype=torch.float64))
        a, b = torch.tensor(0.2, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)
        ratio = sched.gamma(lam, b[None]) / sched.gamma(lam, a[None])
        ok = ratio > 1e-250
        torch.testing.assert_close(sched.log_decay(lam, a, b)[ok], torch.log(ratio)[ok], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("exact", [True, False])
def test_integrated_beta_equals_quadrature_of_beta(exact):
    sched = random_schedule(7, exact)
    lam = sched.lam(torch.randn(1, 2, 6, 6, dtype=torch.float64))
    t = torch.linspace(0, 1, 20001, dtype=torch.float64)
    tau = sched.tau_of(t)
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
