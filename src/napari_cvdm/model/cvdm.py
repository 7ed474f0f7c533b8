"""The Conditional Variational Diffusion Model: forward process and the four loss terms (paper eq. 6).

Tensors are (B, C, H, W) on the *output* grid: the condition x has ``cond_channels`` channels and the target y has
``out_channels``.  Task-specific preparation (up-sampling a widefield image, normalising intensities) happens before
the model, in :mod:`napari_cvdm.tasks`.

    forward process   z_t = √γ(t,x) · y₀ + √(1 − γ(t,x)) · ε,   y₀ = y  or  y − x_r (residual diffusion)
    L_β   = E_t ‖∂γ/∂t + βγ‖² + ‖γ(0,x) − 1‖² + ‖γ(1,x)‖²          (PDE residual + boundary conditions)
    L_KL  = KL(q(z₁ | y, x) ‖ N(0, I))                            (prior term, the paper's direction)
    L_ε   = E_{t,ε} ‖ε − ε̂(z_t, x, γ(t,x))‖²                       (noise prediction)
    L_γ   = α · E_t ‖∂²γ/∂t²‖²                                      (smoothness regulariser, α = 1e-3)

Every term is a mean over batch, channels and pixels (the authors' code regularises only the first sample of a
batch; we do not copy that).  No stop-gradient: as in the paper, the schedule also learns from L_ε, which is why
L_γ is needed (App. K).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from .schedule import Schedule
from .unet import UNet, UNetConfig

GAMMA_MIN = 1e-6  # clip of γ where it enters √γ, √(1−γ) and the denoiser, as the authors do
GAMMA_MAX = 1 - 1e-5


class CVDMConfig(BaseModel):
    """Architecture of a CVDM; stored in every model file."""

    model_config = ConfigDict(extra="forbid")

    cond_channels: int = Field(1, ge=1, description="channels of the condition x (on the output grid)")
    out_channels: int = Field(1, ge=1, description="channels of the target y")
    residual_channel: int | None = Field(
        None, description="diffuse y − x[residual_channel] instead of y (the authors do this for SR)"
    )
    denoiser: UNetConfig = Field(default_factory=UNetConfig)
    schedule: UNetConfig = Field(default_factory=lambda: UNetConfig(width=16, depth=3))
    time_hidden: int = Field(1024, ge=1, description="sigmoid units of the monotone time networks τ and ρ")
    time_parameterisation: Literal["exact", "separate"] = Field(
        "exact",
        description="'exact': τ = ρ' in closed form, so the PDE ∂γ/∂t + βγ = 0 holds by construction (every new "
        "model); 'separate': τ is its own network tied to ρ by the PDE loss (files written before; a header "
        "without this field reads as 'separate')",
    )
    gamma_embedding: int = Field(32, ge=0, description="channels of the per-pixel γ embedding (0: input only)")
    clip_denoised: float | None = Field(None, gt=0, description="clip ŷ₀ to ±this while sampling")

    @property
    def widest(self) -> int:
        """Width of the wider U-Net: what inference memory and batching scale with."""
        return max(self.denoiser.width, self.schedule.width)

    @model_validator(mode="after")
    def _check_residual(self) -> CVDMConfig:
        if self.residual_channel is not None:
            if not 0 <= self.residual_channel < self.cond_channels:
                raise ValueError(
                    f"residual_channel={self.residual_channel} is not a channel of the condition "
                    f"(0..{self.cond_channels - 1}); use one of those or None"
                )
            if self.out_channels != 1:
                raise ValueError("residual diffusion needs out_channels=1; set residual_channel=None")
        return self


@dataclass
class LossTerms:
    """The four loss terms of eq. 6 (scalars) and their sum."""

    beta: torch.Tensor
    kl: torch.Tensor
    noise: torch.Tensor
    gamma_reg: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.beta + self.kl + self.noise + self.gamma_reg

    def weighted_total(self, weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> float:
        """w_β L_β + w_KL L_KL + w_ε L_ε + w_γ L_γ as a float (the training objective for those weights)."""
        terms = (self.beta, self.kl, self.noise, self.gamma_reg)
        return float(sum(w * float(v.detach()) for w, v in zip(weights, terms, strict=True)))

    def as_floats(self) -> dict[str, float]:
        """Each term and the total as plain floats (for logs and progress reports)."""
        terms = {"beta": self.beta, "kl": self.kl, "noise": self.noise, "gamma_reg": self.gamma_reg}
        out = {name: float(value.detach()) for name, value in terms.items()}
        out["total"] = sum(out.values())
        return out


class GammaEmbedding(nn.Module):
    """Per-pixel embedding of the noise level: Fourier features of log-SNR = log(γ/(1−γ)) → 1×1 MLP."""

    def __init__(self, in_channels: int, channels: int, frequencies: int = 8) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.pi * 2.0 ** torch.arange(frequencies) / 32.0, persistent=False)
        n_in = in_channels * (1 + 2 * frequencies)
        self.mlp = nn.Sequential(nn.Conv2d(n_in, channels, 1), nn.SiLU(), nn.Conv2d(channels, channels, 1))

    def forward(self, gamma: torch.Tensor) -> torch.Tensor:
        logsnr = (torch.log(gamma) - torch.log1p(-gamma)).clamp(-20, 20)
        angles = logsnr.unsqueeze(2) * self.freqs[None, None, :, None, None]  # (B, C, F, H, W)
        feats = torch.cat([logsnr.unsqueeze(2) / 10, torch.sin(angles), torch.cos(angles)], dim=2)
        return self.mlp(feats.flatten(1, 2))


class Denoiser(nn.Module):
    """ε̂_ν(z_t, x, γ): a U-Net on concat(z_t, x, γ), with γ also injected into every block as an embedding."""

    def __init__(self, config: CVDMConfig) -> None:
        super().__init__()
        c_in = 2 * config.out_channels + config.cond_channels
        self.embed = GammaEmbedding(config.out_channels, config.gamma_embedding) if config.gamma_embedding else None
        self.unet = UNet(c_in, config.out_channels, config.denoiser, emb_channels=config.gamma_embedding)
        nn.init.zeros_(self.unet.head.weight)
        nn.init.zeros_(self.unet.head.bias)

    def forward(self, z: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        emb = self.embed(gamma) if self.embed is not None else None
        return self.unet(torch.cat([z, x, gamma], dim=1), emb)


class CVDM(nn.Module):
    """Schedule (λ, τ, ρ) + denoiser, with the forward process and the training loss."""

    def __init__(self, config: CVDMConfig) -> None:
        super().__init__()
        self.config = config
        self.schedule = Schedule(
            config.cond_channels,
            config.out_channels,
            config.schedule,
            config.time_hidden,
            exact=config.time_parameterisation == "exact",
        )
        self.denoiser = Denoiser(config)

    @property
    def min_size(self) -> int:
        """Smallest image side (pixels, output grid) the networks accept."""
        return max(self.denoiser.unet.multiple, self.schedule.lambda_net.multiple, 8)

    def residual_base(self, x: torch.Tensor) -> torch.Tensor | None:
        """The part of the target that is not diffused (x_r), or None."""
        r = self.config.residual_channel
        return None if r is None else x[:, r : r + 1]

    def to_diffused(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        base = self.residual_base(x)
        return y if base is None else y - base

    def from_diffused(self, y0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        base = self.residual_base(x)
        return y0 if base is None else y0 + base

    def predict_noise(self, z: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return self.denoiser(z, x, gamma.clamp(GAMMA_MIN, GAMMA_MAX))

    def loss(
        self,
        y: torch.Tensor,
        x: torch.Tensor,
        alpha: float = 1e-3,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> LossTerms:
        """Monte-Carlo estimate of eq. 6 on a batch; t defaults to low-discrepancy uniform samples."""
        batch = y.shape[0]
        if t is None:
            t = (torch.rand((), device=y.device) + torch.arange(batch, device=y.device) / batch) % 1.0
        if noise is None:
            noise = torch.randn_like(y)
        y0 = self.to_diffused(y, x)
        lam = self.schedule.lam(x).float()
        s = self.schedule.at(lam, t)

        ones, zeros = torch.ones_like(t), torch.zeros_like(t)
        gamma_0 = self.schedule.gamma(lam, zeros)
        gamma_1 = self.schedule.gamma(lam, ones)
        loss_beta = ((s.dgamma_dt + s.beta * s.gamma) ** 2).mean() + ((gamma_0 - 1) ** 2).mean() + (gamma_1**2).mean()

        g1 = gamma_1.clamp(GAMMA_MIN, GAMMA_MAX)
        loss_kl = (0.5 * (g1 * y0**2 - g1 - torch.log1p(-g1))).mean()

        g = s.gamma.clamp(GAMMA_MIN, GAMMA_MAX)
        z_t = torch.sqrt(g) * y0 + torch.sqrt(1 - g) * noise
        loss_noise = F.mse_loss(self.predict_noise(z_t, x, g).float(), noise)

        loss_gamma = alpha * (s.d2gamma_dt2**2).mean()
        return LossTerms(beta=loss_beta, kl=loss_kl, noise=loss_noise, gamma_reg=loss_gamma)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
