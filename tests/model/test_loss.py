"""The CVDM loss (paper eq. 6): four finite terms whose gradients reach every part of the model."""

from __future__ import annotations

import pytest
import torch

from napari_cvdm.model import CVDM, CVDMConfig, UNetConfig
from tests.conftest import tiny_network


def parts(net: CVDM) -> dict[str, list[torch.nn.Parameter]]:
    found = {
        "lambda": list(net.schedule.lambda_net.parameters()),
        "rho": list(net.schedule.rho.parameters()),
        "denoiser": list(net.denoiser.parameters()),
    }
    if net.schedule.tau is not None:  # a separate τ network (model files written before the exact schedule)
        found["tau"] = list(net.schedule.tau.parameters())
    return found


def grad_norms(net: CVDM, loss: torch.Tensor) -> dict[str, float]:
    net.zero_grad()
    loss.backward(retain_graph=True)
    return {name: sum(float(p.grad.abs().sum()) for p in ps if p.grad is not None) for name, ps in parts(net).items()}


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(4, 1, 16, 16, generator=gen), torch.randn(4, 1, 16, 16, generator=gen)


def test_all_terms_finite_and_total_is_their_sum(batch):
    y, x = batch
    terms = tiny_network().loss(y, x)
    values = terms.as_floats()
    for name in ("beta", "kl", "noise", "gamma_reg"):
        assert torch.isfinite(getattr(terms, name)), name
        assert getattr(terms, name).ndim == 0
    assert values["total"] == pytest.approx(values["beta"] + values["kl"] + values["noise"] + values["gamma_reg"])


@pytest.mark.parametrize("time", ["exact", "separate"])
def test_gradients_reach_every_network(batch, time):
    y, x = batch
    net = tiny_network(time=time)
    # Give the denoiser a non-zero head so its gradients are not trivially zero at initialisation.
    torch.nn.init.normal_(net.denoiser.unet.head.weight, std=0.1)
    terms = net.loss(y, x)
    total = grad_norms(net, terms.total)
    assert all(v > 0 for v in total.values()), total
    # which term drives which part: L_β (its boundary term γ(1) → 0; with a separate τ also the PDE tying τ to ρ),
    # L_ε trains the denoiser
    beta = grad_norms(net, terms.beta)
    assert beta["rho"] > 0 and beta["lambda"] > 0
    if time == "separate":
        assert beta["tau"] > 0
    assert grad_norms(net, terms.noise)["denoiser"] > 0
    assert grad_norms(net, terms.kl)["rho"] > 0
    gamma_reg = grad_norms(net, terms.gamma_reg)
    assert gamma_reg["rho"] > 0 and gamma_reg["lambda"] > 0


def test_regulariser_covers_every_sample_of_the_batch(batch):
    """The authors' code regularised only batch element 0; here changing sample 3 changes L_γ."""
    y, x = batch
    net = tiny_network()
    torch.nn.init.normal_(net.schedule.lambda_net.head.weight, std=0.5)  # make λ depend on x
    t = torch.full((4,), 0.5)
    noise = torch.zeros_like(y)
    base = net.loss(y, x, t=t, noise=noise).gamma_reg
    x2 = x.clone()
    x2[3] = x2[3] * 5 + 3
    assert net.loss(y, x2, t=t, noise=noise).gamma_reg != base


def test_the_exact_schedule_leaves_only_the_boundary_term_in_l_beta(batch):
    """With τ = ρ' the PDE residual vanishes identically: L_β is ‖γ(0) − 1‖² + ‖γ(1)‖² = mean γ(1)²."""
    y, x = batch
    net = tiny_network()
    terms = net.loss(y, x)
    lam = net.schedule.lam(x)
    gamma_1 = net.schedule.gamma(lam, torch.ones(4))
    torch.testing.assert_close(terms.beta, (gamma_1**2).mean())


def test_weighted_total_follows_the_weights(batch):
    y, x = batch
    terms = tiny_network().loss(y, x)
    v = terms.as_floats()
    assert terms.weighted_total() == pytest.approx(v["total"])
    authors = 2 * v["beta"] + 2 * v["kl"] + v["noise"] + 2 * v["gamma_reg"]
    assert terms.weighted_total((2, 2, 1, 2)) == pytest.approx(authors)


def test_loss_alpha_scales_only_the_regulariser(batch):
    y, x = batch
    net = tiny_network()
    t, noise = torch.full((4,), 0.3), torch.randn_like(y)
    a = net.loss(y, x, alpha=1e-3, t=t, noise=noise)
    b = net.loss(y, x, alpha=2e-3, t=t, noise=noise)
    torch.testing.assert_close(b.gamma_reg, 2 * a.gamma_reg)
    torch.testing.assert_close(b.noise, a.noise)


def test_residual_diffusion_round_trip():
    net = tiny_network(cond_channels=2, residual=True)
    y, x = torch.randn(2, 1, 8, 8), torch.randn(2, 2, 8, 8)
    y0 = net.to_diffused(y, x)
    torch.testing.assert_close(y0, y - x[:, :1])
    torch.testing.assert_close(net.from_diffused(y0, x), y)


def test_residual_channel_must_exist():
    with pytest.raises(ValueError, match="residual_channel=2 is not a channel"):
        CVDMConfig(cond_channels=2, residual_channel=2)


@pytest.mark.parametrize("shape", [(8, 8), (13, 21), (30, 17)])
def test_networks_accept_any_size(shape):
    net = CVDM(CVDMConfig(denoiser=UNetConfig(width=8, depth=3), schedule=UNetConfig(width=4, depth=2)))
    x = torch.randn(2, 1, *shape)
    lam = net.schedule.lam(x)
    eps = net.predict_noise(torch.randn(2, 1, *shape), x, torch.rand(2, 1, *shape))
    assert lam.shape == eps.shape == (2, 1, *shape)
