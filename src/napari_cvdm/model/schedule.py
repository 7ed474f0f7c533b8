"""CVDM's learned, per-pixel noise schedule (paper §3.2, eq. 5).

    β(t, x) = τ(t) · λ_φ(x)        γ(t, x) = exp(−λ_φ(x) · ρ(t)),   ρ(t) = ∫₀ᵗ τ(s) ds

λ_φ(x) > 0 is a U-Net with a softplus output, one value per output pixel and channel.  τ_θ and ρ_χ are *monotone*
networks of the scalar time t ∈ [0, 1] (paper App. G: linear → 1024 sigmoid units → linear with a skip, weights
constrained non-negative, output multiplied by t).  Here the weights are kept non-negative by a softplus
re-parameterisation and the output passes through a softplus before the factor t, so that for every parameter value

    f(t) = t · softplus(s(t)),  s non-decreasing   ⇒   f(0) = 0,  f ≥ 0,  f non-decreasing.

Hence ρ(0) = 0 (γ(0, x) = 1 exactly) and γ decreasing in t.  The derivatives ∂ρ/∂t and ∂²ρ/∂t² are computed in
closed form, so ∂γ/∂t = −λ ρ' γ and ∂²γ/∂t² = γ (λ² ρ'² − λ ρ'') are exact *per pixel* (the authors' 3×3 time
convolution mixes neighbouring pixels; we do not copy that).

Two parameterisations of τ (``CVDMConfig.time_parameterisation``):

* ``"exact"`` (every new model): ρ_χ is the one learned time network and τ := ρ_χ' in closed form.  The PDE
  ∂γ/∂t + βγ = 0 then holds at every t and x by construction, ∫₀¹β dt = λ ρ(1) = −log γ(1, x) exactly, and the
  γ-sampler and Algorithm 2 run on one schedule.  τ(0) = ρ'(0) > 0 is free, as in the paper's eq. 5.
* ``"separate"`` (model files written before): τ_θ is a second monotone network f(t) = t·softplus(s(t)), tied to ρ
  only by the PDE loss.  Since τ_θ(0) = 0 while ρ'(0) > 0 for every parameter value, the PDE cannot hold near t = 0
  and ∫τ differs from ρ(1) by a few per cent; such files are read and sampled as they were trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .unet import UNet, UNetConfig


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class MonotoneTimeNet(nn.Module):
    """f(t) = t · softplus(l₁(t) + l₃(σ(l₂(l₁(t))))) with non-negative weights; t has shape (B,)."""

    def __init__(self, hidden: int = 1024, initial_rate: float = 10.0) -> None:
        super().__init__()
        self.hidden = hidden
        # Raw parameters; the effective weights are softplus(raw) ≥ 0.
        self.w1 = nn.Parameter(torch.tensor(_inverse_softplus(1.0)))
        self.b1 = nn.Parameter(torch.tensor(0.0))
        self.w2 = nn.Parameter(torch.randn(hidden) * 0.5)
        self.b2 = nn.Parameter(torch.randn(hidden))
        self.w3 = nn.Parameter(torch.full((hidden,), _inverse_softplus(1.0)) + 0.1 * torch.randn(hidden))
        # Start near f(t) ≈ initial_rate · t, i.e. γ(1) = exp(−λ·rate) small for λ ≈ 1.
        self.b3 = nn.Parameter(torch.tensor(_inverse_softplus(initial_rate) - 1.0))

    def _inner(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """s(t), s'(t), s''(t) for the pre-softplus output s (always in full precision, even under autocast)."""
        with torch.autocast(t.device.type, enabled=False):
            return self._inner_full_precision(t.to(self.b1.dtype))

    def _inner_full_precision(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a1 = F.softplus(self.w1)
        a2 = F.softplus(self.w2)
        a3 = F.softplus(self.w3) / self.hidden
        l1 = a1 * t + self.b1  # (B,)
        h = torch.sigmoid(l1[:, None] * a2 + self.b2)  # (B, H)
        dh = h * (1 - h)
        s = l1 + h @ a3 + self.b3
        ds = a1 + (dh * a2 * a1) @ a3
        d2s = (dh * (1 - 2 * h) * (a2 * a1) ** 2) @ a3
        return s, ds, d2s

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        s, _, _ = self._inner(t)
        return t.to(s.dtype) * F.softplus(s)

    def with_derivatives(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """f(t), f'(t), f''(t), exact (closed form)."""
        s, ds, d2s = self._inner(t)
        t = t.to(s.dtype)
        sp, sig = F.softplus(s), torch.sigmoid(s)
        f = t * sp
        df = sp + t * sig * ds
        d2f = 2 * sig * ds + t * (sig * (1 - sig) * ds**2 + sig * d2s)
        return f, df, d2f

    def integral(self, nodes: int = 64) -> torch.Tensor:
        """∫₀¹ f(t) dt by Gauss–Legendre quadrature (exact to float precision for this smooth f)."""
        x, w = np.polynomial.legendre.leggauss(nodes)
        t = torch.as_tensor(0.5 * (x + 1), dtype=self.b1.dtype, device=self.b1.device)
        return 0.5 * (self.forward(t) * torch.as_tensor(w, dtype=t.dtype, device=t.device)).sum()


@dataclass
class ScheduleAt:
    """The schedule evaluated at times t (shape (B,)) for a λ map (B, C, H, W)."""

    gamma: torch.Tensor  # γ(t, x)
    beta: torch.Tensor  # β(t, x) = τ(t) λ(x)
    dgamma_dt: torch.Tensor  # ∂γ/∂t
    d2gamma_dt2: torch.Tensor  # ∂²γ/∂t²


class Schedule(nn.Module):
    """λ_φ(x), ρ_χ(t) (and, in ``"separate"`` files, τ_θ(t)) and the derived γ(t, x), β(t, x)."""

    def __init__(
        self,
        cond_channels: int,
        out_channels: int,
        config: UNetConfig,
        time_hidden: int = 1024,
        exact: bool = True,
    ) -> None:
        super().__init__()
        self.lambda_net = UNet(cond_channels, out_channels, config)
        # softplus(head) starts near 1 everywhere: zero weights, bias = softplus⁻¹(1).
        nn.init.zeros_(self.lambda_net.head.weight)
        nn.init.constant_(self.lambda_net.head.bias, _inverse_softplus(1.0))
        self.exact = exact
        self.tau = None if exact else MonotoneTimeNet(time_hidden)
        self.rho = MonotoneTimeNet(time_hidden)

    def time_networks(self) -> list[nn.Module]:
        """The networks of t (ρ, and τ in ``"separate"`` files): they train with their own learning rate."""
        return [self.rho] if self.tau is None else [self.tau, self.rho]

    def tau_of(self, t: torch.Tensor) -> torch.Tensor:
        """τ(t) ≥ 0, shape (B,): ρ'(t) in closed form (exact), or the separate τ network."""
        if self.tau is None:
            return self.rho.with_derivatives(t)[1]
        return self.tau(t)

    def lam(self, x: torch.Tensor) -> torch.Tensor:
        """λ_φ(x) > 0, shape (B, out_channels, H, W)."""
        return F.softplus(self.lambda_net(x)) + 1e-4

    @staticmethod
    def _b(v: torch.Tensor) -> torch.Tensor:
        return v[:, None, None, None]

    def gamma(self, lam: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """γ(t, x) = exp(−λ ρ(t)); t of shape (B,) broadcast over λ."""
        return torch.exp(-lam * self._b(self.rho(t)))

    def beta(self, lam: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """β(t, x) = τ(t) λ(x) ≥ 0."""
        return lam * self._b(self.tau_of(t))

    def at(self, lam: torch.Tensor, t: torch.Tensor) -> ScheduleAt:
        """γ, β and the exact time derivatives of γ at t."""
        rho, drho, d2rho = (self._b(v) for v in self.rho.with_derivatives(t))
        gamma = torch.exp(-lam * rho)
        tau = drho if self.tau is None else self._b(self.tau(t))
        return ScheduleAt(
            gamma=gamma,
            beta=lam * tau,
            dgamma_dt=-lam * drho * gamma,
            d2gamma_dt2=gamma * (lam**2 * drho**2 - lam * d2rho),
        )

    def log_decay(self, lam: torch.Tensor, t_from: torch.Tensor, t_to: torch.Tensor) -> torch.Tensor:
        """log γ(t_to, x)/γ(t_from, x) = −λ(x) (ρ(t_to) − ρ(t_from)), per pixel (≤ 0 for t_to ≥ t_from).

        The exact per-step decay of Algorithm 2; with the exact schedule it is also −λ ∫ τ over the step.  (For
        ``"separate"`` files it follows γ, which the denoiser was trained on, not the separate τ.)
        """
        rho = self.rho(torch.stack([t_from, t_to]).to(lam.dtype))
        return -lam * (rho[1] - rho[0])

    def integrated_beta(self, lam: torch.Tensor) -> torch.Tensor:
        """∫₀¹ β(t, x) dt = λ(x) ∫₀¹ τ(t) dt (the paper's uncertainty map, App. M); = −log γ(1, x) when exact."""
        if self.tau is None:
            one = torch.ones(1, dtype=self.rho.b1.dtype, device=self.rho.b1.device)
            return lam * self.rho(one)[0]
        return lam * self.tau.integral()
