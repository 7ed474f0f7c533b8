"""Samplers: the known-answer test, reproducibility, batching, step counts and cancellation."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_cvdm.sampling.plan import ALGORITHM_2_STEPS
from napari_cvdm.sampling.samplers import Partial, Step, iter_sample, sample
from tests.conftest import tiny_network, toy_batch


@pytest.mark.parametrize(("method", "steps"), [("gamma", 20), ("ancestral", ALGORITHM_2_STEPS)])
def test_known_answer_mean_and_variance(toy_network, method, steps):
    """y = s·x with s = ±1: the true conditional mean is 0 and the variance x² (per pixel); Algorithm 2 at the
    steps a run gives it by default.

    With N = 256 samples the standard error of the mean is x/16, so E|mean|/x ≈ 0.05; we allow 0.15.
    The variance must match x² within 20 % on average and follow it pixel by pixel (correlation > 0.95).
    The untrained network fails all three checks, so the test measures the training and the sampler.
    """
    _, x = toy_batch(1, 16, torch.Generator().manual_seed(123))
    stats = sample(toy_network, x, n_samples=256, steps=steps, method=method, seed=0)
    x0 = x[0, 0]
    mean, var = stats.mean[0], stats.variance[0]
    assert float((mean.abs() / x0).mean()) < 0.15
    ratio = float((var / x0**2).mean())
    assert 0.8 < ratio < 1.2, ratio
    corr = torch.corrcoef(torch.stack([var.flatten(), (x0**2).flatten()]))[0, 1]
    assert corr > 0.95
    assert stats.nfe_per_sample == steps
    assert stats.beta_map.shape == (1, 16, 16) and (stats.beta_map > 0).all()


def test_the_trained_schedule_ends_in_noise(toy_network):
    """γ(1, x) ≈ 0 after training (the boundary term of L_β and the KL prior at work)."""
    _, x = toy_batch(1, 8)
    with torch.no_grad():
        gamma_1 = toy_network.schedule.gamma(toy_network.schedule.lam(x), torch.ones(1))
    assert float(gamma_1.max()) < 0.05


def test_untrained_network_fails_the_known_answer():
    """Guard against a vacuous known-answer test."""
    net = tiny_network()
    _, x = toy_batch(1, 16, torch.Generator().manual_seed(123))
    stats = sample(net, x, n_samples=32, steps=10, seed=0)
    ratio = float((stats.variance[0] / x[0, 0] ** 2).mean())
    assert not 0.8 < ratio < 1.2


@pytest.mark.parametrize("method", ["gamma", "ancestral"])
def test_seeded_runs_are_reproducible_and_seeds_differ(method):
    net = tiny_network(residual=True)
    x = torch.randn(1, 1, 16, 16)
    a = sample(net, x, n_samples=3, steps=4, method=method, seed=7, keep_samples=True)
    b = sample(net, x, n_samples=3, steps=4, method=method, seed=7, keep_samples=True)
    c = sample(net, x, n_samples=3, steps=4, method=method, seed=8, keep_samples=True)
    assert torch.equal(a.samples, b.samples)
    assert not torch.equal(a.samples, c.samples)


@pytest.mark.parametrize("method", ["gamma", "ancestral"])
def test_batched_sampling_equals_unbatched(toy_network, method):
    """Same samples whatever the batch size (in float64, so float32 convolution round-off cannot hide a bug)."""
    net = copy.deepcopy(toy_network).double()
    x = toy_batch(1, 8)[1].double()
    one = sample(net, x, n_samples=4, steps=5, method=method, seed=3, batch_size=1, keep_samples=True)
    four = sample(net, x, n_samples=4, steps=5, method=method, seed=3, batch_size=4, keep_samples=True)
    torch.testing.assert_close(one.samples, four.samples, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(one.variance, four.variance, rtol=1e-9, atol=1e-10)


def test_variance_is_the_unbiased_sample_variance(toy_network):
    _, x = toy_batch(1, 8)
    stats = sample(toy_network, x, n_samples=5, steps=3, seed=1, batch_size=2, keep_samples=True)
    torch.testing.assert_close(stats.mean, stats.samples.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats.variance, stats.samples.var(0, unbiased=True), rtol=1e-4, atol=1e-6)


def test_events_count_network_evaluations_and_partials():
    net = tiny_network()
    gen = iter_sample(net, torch.randn(1, 1, 8, 8), n_samples=5, steps=3, batch_size=2)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    steps = [e for e in events if isinstance(e, Step)]
    partials = [e for e in events if isinstance(e, Partial)]
    # batches of 2, 2, 1 samples × 3 steps: 15 per-sample evaluations in 9 network calls
    assert [s.done for s in steps] == [2, 4, 6, 8, 10, 12, 13, 14, 15] and steps[-1].total == 15
    assert [p.n_done for p in partials] == [2, 4, 5]
    assert result.n_samples == 5


def test_custom_time_grid_sets_the_number_of_evaluations():
    net = tiny_network()
    stats = sample(net, torch.randn(1, 1, 8, 8), n_samples=1, time_grid=torch.tensor([1.0, 0.7, 0.2, 0.0]))
    assert stats.nfe_per_sample == 3


@pytest.mark.parametrize("grid", [[1.0, 0.5], [0.9, 0.0], [1.0, 0.6, 0.7, 0.0], [1.0]])
def test_bad_time_grid_is_refused(grid):
    with pytest.raises(ValueError, match="decrease strictly from 1.0 to 0.0"):
        sample(tiny_network(), torch.randn(1, 1, 8, 8), n_samples=1, time_grid=torch.tensor(grid))


def test_closing_the_generator_stops_between_network_evaluations(monkeypatch):
    net = tiny_network()
    calls = []
    original = net.denoiser.forward
    monkeypatch.setattr(net.denoiser, "forward", lambda *a: calls.append(1) or original(*a))
    gen = iter_sample(net, torch.randn(1, 1, 8, 8), n_samples=4, steps=10)
    for _ in range(3):
        next(gen)
    gen.close()
    assert len(calls) == 3


def test_bad_arguments_are_explained():
    net = tiny_network()
    with pytest.raises(ValueError, match=r"shape \(1, C, H, W\)"):
        sample(net, torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        sample(net, torch.randn(1, 1, 8, 8), n_samples=0)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(net, torch.randn(1, 1, 8, 8), method="euler")


@pytest.mark.parametrize("method", ["gamma", "ancestral"])
def test_samplers_start_from_the_forward_marginal_at_t1(monkeypatch, method):
    """z₁ ~ N(0, 1 − γ(1, x)), not N(0, 1): with ε̂ ≡ 0 one step returns ŷ₀ = z₁/√γ₁, of variance (1 − γ₁)/γ₁.

    A learned schedule need not reach γ(1) = 0 (the default SR model stops at 0.15–0.22); starting from N(0, 1)
    made the deterministic sampler useless there.
    """
    net = tiny_network()
    monkeypatch.setattr(net, "predict_noise", lambda z, x, g: torch.zeros_like(z))
    monkeypatch.setattr(net.schedule, "lam", lambda x: torch.full_like(x, 0.1))  # γ(1) ≈ e^(−1)
    x = torch.rand(1, 1, 4, 4)
    with torch.no_grad():
        gamma_1 = float(net.schedule.gamma(net.schedule.lam(x), torch.ones(1)).mean())
    assert 0.1 < gamma_1 < 0.9  # far from 0, so the two starts differ clearly: 1/γ₁ vs (1 − γ₁)/γ₁
    if method == "gamma":
        stats = sample(net, x, n_samples=4000, time_grid=torch.tensor([1.0, 0.0]), eta=0.0, seed=1)
    else:  # one step of Algorithm 2: α₁ = γ(1)/γ(0) = γ₁, so z₀ = z₁/√γ₁ as well
        stats = sample(net, x, n_samples=4000, steps=1, method="ancestral", seed=1)
    expected = (1 - gamma_1) / gamma_1
    assert float(stats.variance.mean()) == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_deterministic_and_stochastic_gamma_samplers_agree_on_the_toy_law(toy_network, eta):
    """Both η give mean ≈ 0 and variance ≈ x² for y = ±x (η = 0 draws its spread from z₁ alone)."""
    _, x = toy_batch(1, 16, torch.Generator().manual_seed(7))
    stats = sample(toy_network, x, n_samples=256, steps=20, eta=eta, seed=0)
    x0 = x[0, 0]
    assert float((stats.mean[0].abs() / x0).mean()) < 0.15
    assert 0.8 < float((stats.variance[0] / x0**2).mean()) < 1.2


@pytest.mark.parametrize(("method", "steps"), [("ancestral", 100), ("ancestral-euler", 200)])
def test_algorithm_2_agrees_with_the_gamma_sampler_at_many_steps(toy_network, method, steps):
    """At large T both forms of Algorithm 2 sample the same law as the γ-sampler (y = ±x: mean 0, variance x²)."""
    _, x = toy_batch(1, 8, torch.Generator().manual_seed(11))
    reference = sample(toy_network, x, n_samples=128, steps=50, method="gamma", seed=0)
    stats = sample(toy_network, x, n_samples=128, steps=steps, method=method, seed=0)
    x0 = x[0, 0]
    assert float((stats.mean[0].abs() / x0).mean()) < 0.15
    ratio = float((stats.variance[0] / reference.variance[0]).mean())
    assert 0.85 < ratio < 1.15, ratio


def test_the_printed_algorithm_2_is_biased_at_few_steps_and_the_exact_one_is_not(toy_network):
    """At T = 10 the Euler product ends far below the learned γ(1); the exact decays keep the variance right."""
    _, x = toy_batch(1, 16, torch.Generator().manual_seed(12))
    x0 = x[0, 0]
    exact = sample(toy_network, x, n_samples=256, steps=10, method="ancestral", seed=0)
    euler = sample(toy_network, x, n_samples=256, steps=10, method="ancestral-euler", seed=0)
    exact_ratio = float((exact.variance[0] / x0**2).mean())
    euler_error = float(((euler.variance[0] / x0**2).mean() - 1).abs() + (euler.mean[0].abs() / x0).mean())
    assert abs(exact_ratio - 1) < euler_error, (exact_ratio, euler_error)
