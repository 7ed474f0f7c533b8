"""Sampling from a trained CVDM: N samples of p(y | x) → mean, pixel-wise variance and ∫₀¹β dt.

Three samplers, all per pixel, all starting from z₁ ~ N(0, 1 − γ(1, x)) — the forward marginal of a zero-mean
(residual) target, since γ(1, x) is learned and not exactly 0 — except the literal form of Algorithm 2:

* ``"gamma"`` (the default) — uses the learned γ(t, x) directly on any decreasing time grid 1 = t_0 > … > t_K = 0:
  predict ŷ₀ = (z − √(1−γ_t) ε̂)/√γ_t, then draw z_s from the DDPM posterior q(z_s | z_t, ŷ₀) (η = 1) or move
  deterministically (η = 0, DDIM).  K network evaluations per sample, K free.
* ``"ancestral"`` — the paper's Algorithm 2 on t_i = i/T with the *exact* per-step decay
  α_i = γ(t_i, x)/γ(t_{i−1}, x) = exp(−λ ∫ τ over the step), γ̄_i = γ(t_i, x), and for i = T … 1
  z_{i−1} = (z_i − β̂_i/√(1−γ̄_i) · ε̂(z_i, x, γ̄_i)) / √α_i + √β̂_i · ξ   (β̂_i = 1 − α_i; no noise at i = 1).
  Its last step returns ŷ₀ exactly, and γ̄_T is the learned γ(1, x), so any T is consistent with the schedule.
* ``"ancestral-euler"`` — Algorithm 2 as printed: β̂_i = β(i/T, x)/T, α_i = 1 − β̂_i, γ̄_i = ∏_{j≤i} α_j, from
  N(0, I).  At small T the Euler product ends far below the learned γ(1, x) (the denoiser never saw such γ) and the
  start ignores γ(1, x) > 0; it needs hundreds of steps.  Kept for comparison with the paper.

Samples are drawn in batches (by default as many per network call as the device does fastest:
:func:`~napari_cvdm._runtime.device.samples_per_call`);
sample k's noise comes from its own generator seeded from (seed, k),
so results do not depend on the batch size.  The time grid of ``"gamma"`` may also be learned (LD3,
:mod:`.ld3`).  Each sampler is a generator that yields a :class:`Step` after every network
evaluation and a :class:`Partial` (running mean and variance) after every batch; closing the generator cancels
the run between two network evaluations.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .._runtime import drive
from .._runtime.device import Precision, autocast, samples_per_call
from ..model.cvdm import CVDM, GAMMA_MAX, GAMMA_MIN
from ..model.metadata import SamplerMethod as Method
from .grids import check_time_grid, snr_time_grid, uniform_time_grid

GridKind = Literal["snr", "uniform"]


@dataclass
class Step:
    """A network call done; ``done`` of ``total`` per-sample network evaluations of the whole run."""

    done: int
    total: int


@dataclass
class Partial:
    """Running statistics after ``n_done`` samples (tensors on the model's device, shape (C, H, W))."""

    n_done: int
    mean: torch.Tensor
    variance: torch.Tensor


@dataclass
class SampleStats:
    """Result of a sampling run, tensors of shape (C, H, W) (samples: (N, C, H, W) or None)."""

    mean: torch.Tensor
    variance: torch.Tensor
    beta_map: torch.Tensor
    samples: torch.Tensor | None
    n_samples: int
    nfe_per_sample: int


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` in a run seeded with ``seed`` (independent streams per sample)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _randn(shape: tuple[int, ...], generators: list[torch.Generator], like: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.randn((1, *shape), generator=g, device=like.device, dtype=like.dtype) for g in generators])


class NoiseRunner:
    """Shared state of one sampling run: the model, condition, λ, precision and the count of network calls."""

    def __init__(self, model: CVDM, x: torch.Tensor, lam: torch.Tensor, precision: Precision, total: int):
        self.model, self.x, self.lam, self.precision = model, x, lam, precision
        self.done, self.total = 0, total

    def eps(self, z: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        with autocast(z.device, self.precision):
            out = self.model.predict_noise(z, self.x, gamma)
        self.done += z.shape[0]
        return out.to(z.dtype)

    def clip(self, y0: torch.Tensor) -> torch.Tensor:
        c = self.model.config.clip_denoised
        return y0 if c is None else y0.clamp(-c, c)


def gamma_steps(
    run: NoiseRunner, z: torch.Tensor, grid: torch.Tensor, eta: float, gens: list[torch.Generator]
) -> Generator[Step, None, torch.Tensor]:
    """The γ-sampler on ``grid`` (η = 1: DDPM posterior steps, 0: DDIM); ``z`` is standard normal noise."""
    # ρ at every grid time in one call: the loop then only does element-wise work and never reads the device.
    rho = run.model.schedule.rho(grid.to(device=z.device, dtype=z.dtype))
    times = [float(t) for t in grid.detach()]

    def gamma_at(k: int) -> torch.Tensor:
        return torch.exp(-run.lam * rho[k]).clamp(GAMMA_MIN, GAMMA_MAX)

    g_t = gamma_at(0)
    # Start from the forward process's marginal at t = 1 for a zero-mean target, N(0, 1 − γ(1, x)): a learned
    # schedule ends near but not at γ = 0 (0.15–0.22 for an SR model), and starting from N(0, 1) instead
    # biases every step — fatally for η = 0 (bench --nfe: MS-SSIM 0.87 at any NFE), mildly for η = 1.
    z = z * torch.sqrt(1 - g_t)
    y0 = z
    for k in range(len(times) - 1):
        eps = run.eps(z, g_t)
        y0 = run.clip((z - torch.sqrt(1 - g_t) * eps) / torch.sqrt(g_t))
        yield Step(run.done, run.total)
        if times[k + 1] == 0.0:
            break
        g_s = torch.maximum(gamma_at(k + 1), g_t)  # γ is monotone; guard against round-off
        var = (1 - g_s) / (1 - g_t) * (1 - g_t / g_s)
        c2 = (eta**2) * var
        eps_dir = torch.sqrt((1 - g_s - c2).clamp_min(0)) * eps
        z = torch.sqrt(g_s) * y0 + eps_dir
        if eta > 0:
            z = z + torch.sqrt(c2) * _randn(tuple(z.shape[1:]), gens, z)
        g_t = g_s
    return y0


def ancestral_steps(
    run: NoiseRunner, z: torch.Tensor, steps: int, gens: list[torch.Generator]
) -> Generator[Step, None, torch.Tensor]:
    """Algorithm 2 with the exact per-step decay α_i = γ(t_i)/γ(t_{i−1}); ``z`` is standard normal noise."""
    schedule = run.model.schedule
    lam = run.lam[:1]
    # log γ̄_i = log γ(i/T, x) for i = 0..T, as the schedule's own decays (exact: −λ ρ(t_i))
    knots = torch.arange(0, steps + 1, device=z.device, dtype=lam.dtype) / steps
    steps_log = [schedule.log_decay(lam, knots[i - 1], knots[i]) for i in range(1, steps + 1)]
    log_gbar = [torch.zeros_like(lam)]
    for step_log in steps_log:
        log_gbar.append(log_gbar[-1] + step_log)
    gbar_T = torch.exp(log_gbar[-1]).clamp(GAMMA_MIN, GAMMA_MAX)
    z = z * torch.sqrt(1 - gbar_T)  # the forward marginal at t = 1 of a zero-mean target
    for i in range(steps, 0, -1):
        alpha = torch.exp(steps_log[i - 1]).clamp(GAMMA_MIN, 1.0)
        beta_hat = 1 - alpha
        gbar = torch.exp(log_gbar[i]).clamp(GAMMA_MIN, GAMMA_MAX)
        eps = run.eps(z, gbar.expand_as(z))
        z = (z - beta_hat / torch.sqrt(1 - gbar) * eps) / torch.sqrt(alpha)
        if i > 1:
            z = z + torch.sqrt(beta_hat) * _randn(tuple(z.shape[1:]), gens, z)
        yield Step(run.done, run.total)
    return run.clip(z)


def ancestral_euler_steps(
    run: NoiseRunner, z: torch.Tensor, steps: int, gens: list[torch.Generator]
) -> Generator[Step, None, torch.Tensor]:
    """Algorithm 2 as printed in the paper: Euler steps β̂_i = β(i/T, x)/T, from N(0, I)."""
    schedule = run.model.schedule
    t = torch.arange(1, steps + 1, device=z.device, dtype=z.dtype) / steps
    tau = schedule.tau_of(t)  # (T,)
    lam = run.lam[:1]

    def log_alpha(i: int) -> torch.Tensor:  # i = 1..T
        return torch.log((1 - tau[i - 1] * lam / steps).clamp(GAMMA_MIN, GAMMA_MAX))

    log_gbar = sum(log_alpha(i) for i in range(1, steps + 1))
    for i in range(steps, 0, -1):
        la = log_alpha(i)
        alpha = torch.exp(la)
        beta_hat = 1 - alpha
        gbar = torch.exp(log_gbar).clamp(GAMMA_MIN, GAMMA_MAX)
        eps = run.eps(z, gbar.expand_as(z))
        z = (z - beta_hat / torch.sqrt(1 - gbar) * eps) / torch.sqrt(alpha)
        if i > 1:
            z = z + torch.sqrt(beta_hat) * _randn(tuple(z.shape[1:]), gens, z)
        log_gbar = log_gbar - la
        yield Step(run.done, run.total)
    return run.clip(z)


@torch.no_grad()
def iter_sample(
    model: CVDM,
    cond: torch.Tensor,
    *,
    n_samples: int = 8,
    steps: int = 20,
    method: Method = "gamma",
    seed: int = 0,
    batch_size: int | None = None,
    keep_samples: bool = False,
    eta: float = 1.0,
    time_grid: torch.Tensor | None = None,
    grid: GridKind = "snr",
    precision: Precision = "fp32",
) -> Generator[Step | Partial, None, SampleStats]:
    """Draw ``n_samples`` samples of y | x for one condition ``cond`` of shape (1, C, H, W).

    ``steps`` is the number of network evaluations per sample (ignored by ``"gamma"`` when ``time_grid`` is
    given; otherwise ``grid`` chooses between equal steps in the median log-SNR, ``"snr"``, and in t).
    Returns (as the generator's value) a :class:`SampleStats` with the *unbiased* pixel-wise variance.
    """
    if cond.ndim != 4 or cond.shape[0] != 1:
        raise ValueError(f"the condition must have shape (1, C, H, W); got {tuple(cond.shape)}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1; got {n_samples}")
    if method == "gamma":
        if time_grid is None and steps < 1:
            raise ValueError(f"steps must be at least 1; got {steps}")
        nfe = len(check_time_grid(time_grid)) - 1 if time_grid is not None else steps
    elif method in ("ancestral", "ancestral-euler"):
        if steps < 1:
            raise ValueError(f"steps must be at least 1; got {steps}")
        nfe = steps
    else:
        raise ValueError(f"unknown sampler {method!r}; use 'gamma', 'ancestral' or 'ancestral-euler'")
    model.eval()
    device = cond.device
    if batch_size is None:
        batch_size = samples_per_call(device, cond.shape[-2] * cond.shape[-1], n_samples, model.config.widest)
    batch_size = max(1, min(batch_size, n_samples))
    if model.denoiser.unet.stem.weight.is_contiguous(memory_format=torch.channels_last):
        cond = cond.contiguous(memory_format=torch.channels_last)  # match a network laid out by inference_copy
    lam = model.schedule.lam(cond)
    beta_map = model.schedule.integrated_beta(lam)[0]
    if method == "gamma":
        if time_grid is not None:
            times = check_time_grid(time_grid)
        elif grid == "snr":
            times = snr_time_grid(model, lam, steps)
        else:
            times = uniform_time_grid(steps)
    shape = (model.config.out_channels, *cond.shape[-2:])

    mean = torch.zeros(shape, device=device, dtype=cond.dtype)
    m2 = torch.zeros(shape, device=device, dtype=cond.dtype)
    kept: list[torch.Tensor] = []
    run = NoiseRunner(model, cond, lam, precision, total=nfe * n_samples)
    for start in range(0, n_samples, batch_size):
        b = min(batch_size, n_samples - start)
        gens = [torch.Generator(device=device).manual_seed(sample_seed(seed, k)) for k in range(start, start + b)]
        run.x, run.lam = cond.expand(b, -1, -1, -1), lam.expand(b, -1, -1, -1)
        z = _randn(shape, gens, cond)
        if method == "gamma":
            y0 = yield from gamma_steps(run, z, times, eta, gens)
        elif method == "ancestral":
            y0 = yield from ancestral_steps(run, z, nfe, gens)
        else:
            y0 = yield from ancestral_euler_steps(run, z, nfe, gens)
        y = model.from_diffused(y0, run.x)
        for k in range(b):  # Welford's update, one sample at a time
            n = start + k + 1
            delta = y[k] - mean
            mean += delta / n
            m2 += delta * (y[k] - mean)
        if keep_samples:
            kept.append(y.cpu())
        n_done = start + b
        yield Partial(n_done, mean.clone(), m2 / max(n_done - 1, 1))
    return SampleStats(
        mean=mean,
        variance=m2 / max(n_samples - 1, 1),
        beta_map=beta_map,
        samples=torch.cat(kept) if keep_samples else None,
        n_samples=n_samples,
        nfe_per_sample=nfe,
    )


def sample(model: CVDM, cond: torch.Tensor, **kwargs) -> SampleStats:
    """Run :func:`iter_sample` to the end and return its statistics."""
    return drive(iter_sample(model, cond, **kwargs))
