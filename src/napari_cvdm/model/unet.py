"""The U-Net backbone shared by the schedule network λ(x) and the denoiser ε̂(z_t, x, γ).

Six choices matter for this project and are configurable through :class:`UNetConfig`:
width (channels of the first level), depth (number of resolution levels, each halving the grid),
residual blocks per level, normalisation, the grid the network works on (``pixel_unshuffle``) and an optional
per-pixel *embedding map* that is injected into every block.  The denoiser uses that embedding for the noise level
γ(t, x): it is a map, not a scalar, because CVDM's schedule is per pixel.

``pixel_unshuffle`` = f > 1 runs the whole U-Net on a grid f× coarser than its input: each f×f cell of the input
(and of the embedding map) becomes f² channels at the stem (:class:`torch.nn.PixelUnshuffle`), and the head
predicts ``out_channels``·f² channels that :class:`torch.nn.PixelShuffle` puts back on the input grid.  With the
same widths that is about f² times fewer FLOPs per pixel; for super-resolution with f = 2 the network works on the
widefield grid.  f = 1 (the default) is the original full-grid network, parameter for parameter.  ``fine_head`` = k > 0
adds a thin stage on the input grid after the shuffle: the head then predicts k·f² channels (1×1), shuffled to k
channels on the input grid, joined with the input itself and passed through two 3×3 convolutions (k + in → k → out),
a per-pixel non-linear path from every input pixel to its output pixel for a few kFLOP per pixel.

Any input size works: inputs are padded (replicate) up to a multiple of ``f·2**(depth-1)`` and cropped back.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

Norm = Literal["group", "instance", "none"]


class UNetConfig(BaseModel):
    """Architecture of one U-Net."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(32, ge=4, description="channels at full resolution; doubled at each coarser level")
    depth: int = Field(3, ge=1, le=7, description="number of resolution levels (depth-1 down-samplings)")
    blocks: int = Field(1, ge=1, le=4, description="residual blocks per level")
    max_multiplier: int = Field(8, ge=1, description="cap on the channel multiplier of coarse levels")
    norm: Norm = Field("group", description="normalisation inside the residual blocks")
    pixel_unshuffle: int = Field(
        1, ge=1, le=4, description="work on a grid this many times coarser (f×f pixels → f² channels; 1: full grid)"
    )
    fine_head: int = Field(
        0, ge=0, le=64, description="channels of a thin head on the input grid after the pixel shuffle (0: none)"
    )

    @model_validator(mode="after")
    def _fine_head_needs_a_coarser_grid(self) -> UNetConfig:
        if self.fine_head and self.pixel_unshuffle == 1:
            raise ValueError("fine_head > 0 needs pixel_unshuffle > 1 (on the full grid the head already is fine)")
        return self

    def channels(self) -> list[int]:
        """Channels at each level, finest first."""
        return [self.width * min(2**i, self.max_multiplier) for i in range(self.depth)]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels)
    return nn.Identity()


class ResBlock(nn.Module):
    """norm → SiLU → conv3×3 (+ embedding) → norm → SiLU → conv3×3, with a skip connection."""

    def __init__(self, c_in: int, c_out: int, norm: Norm, emb_channels: int) -> None:
        super().__init__()
        self.norm1 = _norm(norm, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Conv2d(emb_channels, c_out, 1) if emb_channels else None
        self.norm2 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        out = self.conv1(F.silu(self.norm1(h)))
        if self.emb is not None and emb is not None:
            out = out + self.emb(emb)
        out = self.conv2(F.silu(self.norm2(out)))
        return out + self.skip(h)


class UNet(nn.Module):
    """A residual U-Net mapping ``in_channels`` to ``out_channels`` on the same grid."""

    def __init__(self, in_channels: int, out_channels: int, config: UNetConfig, emb_channels: int = 0) -> None:
        super().__init__()
        self.config = config
        chans = config.channels()
        f = config.pixel_unshuffle
        emb_channels *= f * f  # the embedding map is unshuffled like the input: every pixel's value reaches a block
        self.unshuffle = nn.PixelUnshuffle(f) if f > 1 else nn.Identity()
        self.stem = nn.Conv2d(in_channels * f * f, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        c_prev = chans[0]
        for c in chans:
            blocks = nn.ModuleList()
            for _ in range(config.blocks):
                blocks.append(ResBlock(c_prev, c, config.norm, emb_channels))
                c_prev = c
            self.down.append(blocks)
        self.mid = ResBlock(chans[-1], chans[-1], config.norm, emb_channels)
        for level in reversed(range(config.depth)):
            c = chans[level]
            blocks = nn.ModuleList()
            for b in range(config.blocks):
                blocks.append(ResBlock(c_prev + (c if b == 0 else 0), c, config.norm, emb_channels))
                c_prev = c
            self.up.append(blocks)
        self.head_norm = _norm(config.norm, chans[0])
        k = config.fine_head
        if k:  # ``head`` stays the last layer: the denoiser zeroes it and the schedule sets its bias
            self.to_fine = nn.Conv2d(chans[0], k * f * f, 1)
            self.fine = nn.Conv2d(k + in_channels, k, 3, padding=1)
            self.head = nn.Conv2d(k, out_channels, 3, padding=1)
        else:
            self.head = nn.Conv2d(chans[0], out_channels * f * f, 3, padding=1)
        self.shuffle = nn.PixelShuffle(f) if f > 1 else nn.Identity()

    @property
    def multiple(self) -> int:
        """Input sizes are padded to a multiple of this."""
        return self.config.pixel_unshuffle * 2 ** (self.config.depth - 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        m = self.multiple
        pad_h, pad_w = (-height) % m, (-width) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
            if emb is not None:
                emb = F.pad(emb, (0, pad_w, 0, pad_h), mode="replicate")
        x_in, x = x, self.unshuffle(x)
        if emb is not None:
            emb = self.unshuffle(emb)
        embs = [emb]
        for _ in range(1, self.config.depth):
            embs.append(F.avg_pool2d(embs[-1], 2) if emb is not None else None)

        h = self.stem(x)
        skips = []
        for level, blocks in enumerate(self.down):
            if level > 0:
                h = F.avg_pool2d(h, 2)
            for block in blocks:
                h = block(h, embs[level])
            skips.append(h)
        h = self.mid(h, embs[-1])
        for i, blocks in enumerate(self.up):
            level = self.config.depth - 1 - i
            if h.shape[-1] != skips[level].shape[-1]:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = torch.cat([h, skips[level]], dim=1)
            for block in blocks:
                h = block(h, embs[level])
        h = F.silu(self.head_norm(h))
        if self.config.fine_head:
            h = self.fine(torch.cat([self.shuffle(self.to_fine(h)), x_in], dim=1))
            out = self.head(F.silu(h))
        else:
            out = self.shuffle(self.head(h))
        return out[..., :height, :width]
