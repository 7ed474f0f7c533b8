"""A learned diagonal error covariance of a reconstruction's mean: log σ²(x) from what a reconstruction has in hand.

A monotone calibration map (:mod:`~napari_cvdm.sampling.calibration`) can only rescale the raw sample spread: it
cannot move the uncertainty to pixels the spread misses, nor tell a photo from a cell at the same spread.  The
:class:`VarianceHead` predicts the error variance of the mean per pixel from the input planes, the mean, the raw
sample variance and a per-image condition (e.g. the stated λ·d/p² over the model's), all in network units.

It is fitted by moment matching: the Gaussian negative log-likelihood of the mean's error,
``½·(err²/σ² + log σ²)`` per pixel, whose minimiser over σ² is E[err² | inputs], the diagonal of the error
covariance (the quantity optimal covariance matching regresses, arXiv 2406.10808, here regressed directly on the
residual of the final mean).  Its starting point is the raw spread itself, log σ² = a·log var + b with a = 1,
and the network adds a content-dependent correction that starts at zero.

No model file carries a head and ``reconstruct()`` does not use one: it is a lever measured against the shipped
calibrations by ``benchmarks/posterior_variance.py`` (results in docs/uncertainty.md).  Its context reaches about
60 px each way and its summary spans the whole image, so a banded run would need the whole plane first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VARIANCE_FLOOR = 1e-8  # network units², below any variance a sampler reports on a real image


@dataclass
class HeadInputs:
    """One image's inputs in network units: ``planes`` (C, H, W) input channels on the output grid, ``mean`` and
    ``variance`` (H, W) of the reconstruction, ``condition`` per-image scalars (e.g. log of λ·d/p² over the
    model's)."""

    planes: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    condition: Sequence[float] = ()

    @property
    def log_var_channel(self) -> int:
        """Index of the log raw variance in :meth:`tensor` (after the planes and the mean)."""
        return int(np.asarray(self.planes).size // self.mean.size) + 1

    def tensor(self) -> torch.Tensor:
        """(1, C + 2 + K, H, W): planes, mean, log raw variance, then each condition as a constant plane."""
        h, w = self.mean.shape
        if np.shape(self.variance) != (h, w) or np.asarray(self.planes).size % (h * w):
            raise ValueError(
                f"the head's inputs do not share one grid: mean {self.mean.shape}, variance "
                f"{np.shape(self.variance)}, planes {np.shape(self.planes)}; bring the planes onto the output grid"
            )
        chans = [np.asarray(self.planes, np.float32).reshape(-1, h, w), self.mean[None], _log_var(self.variance)[None]]
        chans += [np.full((1, h, w), c, np.float32) for c in self.condition]
        return torch.from_numpy(np.concatenate(chans).astype(np.float32))[None]


def _log_var(variance: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(variance, np.float64), VARIANCE_FLOOR)).astype(np.float32)


class VarianceHead(nn.Module):
    """log σ² = a·log var + b + f(inputs): f sees a 4×-pooled context of about 120 px plus an image-wide summary
    (so images of different kind at the same spread can differ) and a per-pixel path; f starts at zero."""

    def __init__(self, in_channels: int, log_var_channel: int, width: int = 24, pool: int = 4) -> None:
        super().__init__()
        if not 0 <= log_var_channel < in_channels:
            raise ValueError(f"log-variance channel {log_var_channel} is not one of the {in_channels} inputs")
        self.in_channels, self.log_var_channel, self.width, self.pool = in_channels, log_var_channel, width, pool
        self.scale = nn.Parameter(torch.ones(()))
        self.offset = nn.Parameter(torch.zeros(()))
        self.local = nn.Conv2d(in_channels, 8, 1)
        self.context = nn.ModuleList(
            [nn.Conv2d(in_channels, width, 3, padding=1)]
            + [nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in (2, 4, 8)]
        )
        self.summary = nn.Linear(width, width)
        self.out = nn.Conv2d(width + 8, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, 1, H, W) log σ²."""
        log_var = inputs[:, self.log_var_channel : self.log_var_channel + 1]
        h = F.avg_pool2d(inputs, self.pool, ceil_mode=True)
        for conv in self.context:
            h = F.gelu(conv(h))
        h = h + self.summary(h.mean(dim=(2, 3)))[:, :, None, None]
        h = F.interpolate(h, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
        f = self.out(torch.cat([h, F.gelu(self.local(inputs))], dim=1))
        return self.scale * log_var + self.offset + f


def gaussian_nll(log_sigma2: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """Mean ½·(err²/σ² + log σ²) per pixel (the constant ½·log 2π left out): minimised by σ² = E[err²]."""
    return 0.5 * (error**2 * torch.exp(-log_sigma2) + log_sigma2).mean()


def _augment(x: torch.Tensor, e: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One of the 8 flips/rotations (the simulated optics of both tasks have no preferred direction)."""
    if k & 4:
        x, e = x.flip(-1), e.flip(-1)
    return torch.rot90(x, k & 3, (-2, -1)), torch.rot90(e, k & 3, (-2, -1))


def fit_variance_head(
    train: Sequence[tuple[HeadInputs, np.ndarray]],
    valid: Sequence[tuple[HeadInputs, np.ndarray]],
    steps: int = 1500,
    batch: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    width: int = 24,
) -> tuple[VarianceHead, dict[str, list[float]]]:
    """Fit a head on (inputs, error of the mean) images; keep the weights of the best validation NLL (checked
    every 50 steps).  Returns the head and its history: ``step`` and ``valid`` (the validation NLL) every 50
    steps and at the end, ``train`` (the NLL of the training batch) every 50 steps."""
    if not train or not valid:
        raise ValueError("a variance head needs training and validation images (each at least one)")
    torch.manual_seed(seed)
    xs = torch.cat([i.tensor() for i, _ in train])
    es = torch.from_numpy(np.stack([e for _, e in train]).astype(np.float32))[:, None]
    vx = torch.cat([i.tensor() for i, _ in valid])
    ve = torch.from_numpy(np.stack([e for _, e in valid]).astype(np.float32))[:, None]
    head = VarianceHead(xs.shape[1], train[0][0].log_var_channel, width)
    with torch.no_grad():  # start at the raw spread scaled to the right mean level
        head.offset.fill_(float(torch.log((es**2).mean() / torch.exp(xs[:, head.log_var_channel]).mean())))
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    best, best_state = float("inf"), None
    history: dict[str, list[float]] = {"step": [], "train": [], "valid": []}
    for step in range(steps + 1):
        if step % 50 == 0 or step == steps:
            with torch.no_grad():
                v = float(gaussian_nll(head(vx), ve))
            if v < best:
                best, best_state = v, {k: t.clone() for k, t in head.state_dict().items()}
            history["step"].append(step)
            history["valid"].append(v)
        if step == steps:
            break
        pick = torch.randint(0, xs.shape[0], (min(batch, xs.shape[0]),), generator=gen)
        x, e = _augment(xs[pick], es[pick], int(torch.randint(0, 8, (), generator=gen)))
        loss = gaussian_nll(head(x), e)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            history["train"].append(float(loss.detach()))
    assert best_state is not None
    head.load_state_dict(best_state)
    return head, history


@torch.no_grad()
def predict_std(head: VarianceHead, inputs: HeadInputs) -> np.ndarray:
    """σ (H, W) of the mean's error in network units."""
    return np.exp(0.5 * head(inputs.tensor())[0, 0].numpy()).astype(np.float32)
