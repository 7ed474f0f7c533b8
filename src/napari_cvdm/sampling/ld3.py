"""Learned time discretisation for few-step sampling, in the spirit of LD3 (Tong et al., "Learning to Discretize
Denoising Diffusion ODEs").

The γ-sampler with η = 0 (:func:`napari_cvdm.sampling.samplers.iter_sample`, ``eta=0``) is a deterministic solver of
the probability-flow ODE: a fixed initial noise z₁ maps to one sample.  With many steps its result is accurate
(the *teacher*); with K steps it depends strongly on *where* the K evaluations sit in t.  LD3 learns those K times
by making the K-step result match the teacher's result from the same noise, backpropagating through the K network
calls into the times.  Only K − 1 numbers are learned (the network is frozen), so a few conditions from the
training data and minutes of CPU suffice.

As in LD3, the student may start from a slightly moved noise z₁′ with ‖z₁′ − z₁‖ ≤ ``slack``·‖z₁‖ (a relaxed
target).  It is off by default: on the SR model with ``slack=0.1`` the moved noises fitted the training patches
(training MSE 10× lower) while the held-out MSE did not improve (before the
sampler's start-distribution fix; not repeated since).  The grid is parameterised by the softmax of K logits
(the K step lengths, positive and summing to 1), so every iterate is a valid grid 1 = t₀ > … > t_K = 0.  The
returned grid is the one with the lowest loss on held-out conditions, with no slack; the starting grid (equal
steps in median log-SNR) is kept when nothing beats it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._runtime import drive
from .._runtime.device import Precision
from ..model.cvdm import CVDM
from .grids import check_time_grid, snr_time_grid
from .samplers import NoiseRunner, gamma_steps

MIN_STEP = 1e-4  # shortest step in t: keeps every grid strictly decreasing in float32


@dataclass
class GridFit:
    """A learned K-step grid and its loss (mean squared error to the teacher, network units) before and after."""

    steps: int
    grid: list[float]
    start_grid: list[float]
    val_loss_start: float
    val_loss: float
    iterations: int


def grid_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Decreasing grid 1 = t₀ > … > t_K = 0 whose K step lengths are softmax(logits), each at least 1e-4."""
    floor = MIN_STEP * len(logits)
    lengths = torch.softmax(logits, dim=0) * (1 - floor) + MIN_STEP
    inner = 1.0 - torch.cumsum(lengths, dim=0)[:-1]
    return torch.cat([torch.ones(1, dtype=logits.dtype), inner, torch.zeros(1, dtype=logits.dtype)])


def logits_from_grid(grid: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`grid_from_logits` (up to an additive constant)."""
    lengths = -torch.diff(check_time_grid(grid).double())
    share = (lengths - MIN_STEP) / (1 - MIN_STEP * len(lengths))
    return torch.log(share.clamp_min(1e-12)).float()


def deterministic_sample(
    model: CVDM, cond: torch.Tensor, lam: torch.Tensor, z1: torch.Tensor, grid: torch.Tensor, precision: Precision
) -> torch.Tensor:
    """ŷ₀ of the η = 0 γ-sampler from noise ``z1`` (B, C, H, W) on ``grid``; differentiable in grid and z1."""
    run = NoiseRunner(model, cond, lam, precision, total=(len(grid) - 1) * z1.shape[0])
    return drive(gamma_steps(run, z1, grid, 0.0, []))


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def learn_time_grid(
    model: CVDM,
    conds: torch.Tensor,
    steps: int,
    *,
    teacher_steps: int = 200,
    iterations: int = 120,
    batch_size: int = 4,
    learning_rate: float = 0.05,
    slack: float = 0.0,
    val_fraction: float = 0.25,
    seed: int = 0,
    precision: Precision = "fp32",
    log: Callable[[str], None] | None = None,
) -> GridFit:
    """Learn a ``steps``-step time grid for the η = 0 γ-sampler on conditions ``conds`` (N, C, H, W).

    The first ``val_fraction`` of the conditions (at least one) only validate.  Each condition gets one fixed noise
    z₁ from ``seed``; the teacher is the same sampler with ``teacher_steps`` steps on the log-SNR grid.
    """
    if steps < 2:
        raise ValueError(f"a learned grid needs at least 2 steps; got {steps}")
    if conds.ndim != 4 or conds.shape[0] < 2:
        raise ValueError(f"need at least 2 conditions of shape (N, C, H, W); got {tuple(conds.shape)}")
    model.eval()
    frozen = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        generator = torch.Generator(device=conds.device).manual_seed(seed)
        with torch.no_grad():
            lam = model.schedule.lam(conds)
            shape = (conds.shape[0], model.config.out_channels, *conds.shape[-2:])
            z1 = torch.randn(shape, generator=generator, device=conds.device)
            teacher_grid = snr_time_grid(model, lam, teacher_steps)
            teacher = torch.cat(
                [
                    deterministic_sample(model, conds[s], lam[s], z1[s], teacher_grid, precision)
                    for s in _chunks(len(conds), batch_size)
                ]
            )
            start = snr_time_grid(model, lam, steps)

        n_val = max(1, round(val_fraction * len(conds)))
        val, train = slice(0, n_val), slice(n_val, len(conds))

        def val_loss(grid: torch.Tensor) -> float:
            with torch.no_grad():
                errs = [
                    ((deterministic_sample(model, conds[s], lam[s], z1[s], grid, precision) - teacher[s]) ** 2).sum()
                    for s in _chunks(n_val, batch_size)
                ]
            return float(sum(errs)) / teacher[val].numel()

        logits = logits_from_grid(start).requires_grad_(True)
        delta = torch.zeros_like(z1[train], requires_grad=True)
        optimiser = torch.optim.Adam(
            [{"params": [logits]}, {"params": [delta], "lr": learning_rate * 0.2}], lr=learning_rate
        )
        radius = slack * z1[train].flatten(1).norm(dim=1)
        best_grid, best = start, val_loss(start)
        loss_start = best
        n_train = z1[train].shape[0]
        order = torch.randperm(n_train, generator=generator)
        for it in range(iterations):
            pick = order[torch.arange(it * batch_size, (it + 1) * batch_size) % n_train]
            idx = pick + n_val
            with torch.enable_grad():
                grid = grid_from_logits(logits)
                student = deterministic_sample(model, conds[idx], lam[idx], z1[idx] + delta[pick], grid, precision)
                loss = ((student.float() - teacher[idx]) ** 2).mean()
                optimiser.zero_grad()
                loss.backward()
            optimiser.step()
            with torch.no_grad():  # keep the moved noise inside its ball (LD3's slack)
                norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
                delta.mul_((radius / norms).clamp(max=1.0)[:, None, None, None])
            if (it + 1) % 20 == 0 or it + 1 == iterations:
                candidate = grid_from_logits(logits.detach())
                current = val_loss(candidate)
                if current < best:
                    best, best_grid = current, candidate
                if log is not None:
                    log(
                        f"LD3 {steps} steps: iteration {it + 1}/{iterations}, train {loss.item():.4g}, "
                        f"validation {current:.4g} (start {loss_start:.4g})"
                    )
        return GridFit(
            steps=steps,
            grid=[float(t) for t in check_time_grid(best_grid)],
            start_grid=[float(t) for t in start],
            val_loss_start=loss_start,
            val_loss=best,
            iterations=iterations,
        )
    finally:
        for p, flag in zip(model.parameters(), frozen, strict=True):
            p.requires_grad_(flag)
