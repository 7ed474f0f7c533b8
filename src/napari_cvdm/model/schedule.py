"""CVDM's learned, per-pixel noise schedule (paper §3.2).

    β(t, x) = τ_θ(t) · λ_φ(x)        γ(t, x) = exp(−λ_φ(x) · ρ_χ(t))

λ_φ(x) > 0 is a U-Net with a softplus output, one value per output pixel and channel.  τ_θ and ρ_χ are *monotone*
networks of the scalar time t ∈ [0, 1] (paper App. G: linear → 1024 sigmoid units → linear with a skip, weights
constrained non-negative, output multiplied by t).  Here the weights are kept non-negative by a softplus
re-parameterisation and the output passes through a softplus before the factor t, so that for every parameter value

    f(t) = t · softplus(s(t)),  s non-decreasing   ⇒   f(0) = 0,  f ≥ 0,  f non-decreasing.

Hence τ ≥ 0 (β ≥ 0), ρ(0) = 0 (γ(0, x) = 1 exactly) and γ decreasing in t.  The derivatives ∂ρ/∂t and ∂²ρ/∂t² are
computed in closed form, so ∂γ/∂t = −λ ρ' γ and ∂²γ/∂t² = γ (λ² ρ'² − λ ρ'') are exact *per pixel* (the authors'
3×3 time convolution mixes neighbouring pixels; we do not copy that).
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
    """λ_φ(x), τ_θ(t), ρ_χ(t) and the derived γ(t, x), β(t, x)."""

    def __init__(self, cond_channels: int, out_channels: int, config: UNetConfig, time_hidden: int = 1024) -> None:
        super().__init__()
        self.lambda_net = UNet(cond_channels, out_channels, config)
        # softplus(head) starts near 1 everywhere: zero weights, bias = softplus⁻¹(1).
        nn.init.zeros_(self.lambda_net.head.weight)
        nn.init.constant_(self.lambda_net.head.bias, _inverse_softplus(1.0))
        self.tau = MonotoneTimeNet(time_hidden)
        self.rho = MonotoneTimeNet(time_hidden)

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
        return lam * self._b(self.tau(t))

    def at(self, lam: torch.Tensor, t: torch.Tensor) -> ScheduleAt:
        """γ, β and the exact time derivatives of γ at t."""
        rho, drho, d2rho = (self._b(v) for v in self.rho.with_derivatives(t))
        gamma = torch.exp(-lam * rho)
        return ScheduleAt(
            gamma=gamma,
            beta=lam * self._b(self.tau(t)),
            dgamma_dt=-lam * drho * gamma,
            d2gamma_dt2=gamma * (lam**2 * drho**2 - lam * d2rho),
        )

    def integrated_beta(self, lam: torch.Tensor) -> torch.Tensor:
        """∫₀¹ β(t, x) dt = λ(x) ∫₀¹ τ(t) dt (the paper's uncertainty map, App. M)."""
        return lam * self.tau.integral()
