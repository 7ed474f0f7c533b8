"""The U-Net's grid option (pixel_unshuffle): shapes on any size, f = 1 is the original network bit for bit, the
per-pixel embedding survives the coarser grid, min_size, and the FLOP saving (a count, not a timing)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from napari_cvdm.model import CVDM
from napari_cvdm.model.unet import ResBlock, UNet, UNetConfig, _norm
from napari_cvdm.training import presets


class _OriginalUNet(nn.Module):
    """The U-Net as it was before the grid option, kept verbatim as the reference for f = 1."""

    def __init__(self, in_channels: int, out_channels: int, config: UNetConfig, emb_channels: int = 0) -> None:
        super().__init__()
        self.config = config
        chans = config.channels()
        self.stem = nn.Conv2d(in_channels, chans[0], 3, padding=1)
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
        self.head = nn.Conv2d(chans[0], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        m = 2 ** (self.config.depth - 1)
        pad_h, pad_w = (-height) % m, (-width) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
            if emb is not None:
                emb = F.pad(emb, (0, pad_w, 0, pad_h), mode="replicate")
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
        out = self.head(F.silu(self.head_norm(h)))
        return out[..., :height, :width]


def _randomise_head(net: nn.Module) -> None:
    """Give the head non-zero weights, as after training (the denoiser's head starts at zero)."""
    with torch.no_grad():
        net.head.weight.normal_(0, 0.1)
        net.head.bias.normal_(0, 0.1)


@pytest.mark.parametrize("norm", ["group", "none"])
def test_full_grid_is_the_original_network_bit_for_bit(norm):
    config = UNetConfig(width=8, depth=3, blocks=2, norm=norm)
    assert config.pixel_unshuffle == 1
    torch.manual_seed(3)
    new = UNet(3, 1, config, emb_channels=4)
    torch.manual_seed(3)
    old = _OriginalUNet(3, 1, config, emb_channels=4)
    new_state, old_state = new.state_dict(), old.state_dict()
    assert new_state.keys() == old_state.keys()  # old model files load unchanged
    for key in old_state:
        assert torch.equal(new_state[key], old_state[key]), key
    _randomise_head(old)
    new.load_state_dict(old.state_dict())
    x, emb = torch.randn(2, 3, 21, 30), torch.randn(2, 4, 21, 30)
    assert torch.equal(new(x, emb), old(x, emb))
    assert new.multiple == 4


def test_a_config_without_the_field_is_the_full_grid():
    """Model files written before the option have no pixel_unshuffle in their header."""
    stored = UNetConfig(width=8, depth=3).model_dump()
    del stored["pixel_unshuffle"]
    assert UNetConfig.model_validate(stored).pixel_unshuffle == 1


@pytest.mark.parametrize(("f", "fine"), [(1, 0), (2, 0), (3, 0), (2, 4)])
@pytest.mark.parametrize("size", [(16, 16), (37, 50), (5, 7)])
def test_output_is_on_the_input_grid(f, fine, size):
    torch.manual_seed(0)
    net = UNet(3, 2, UNetConfig(width=8, depth=3, pixel_unshuffle=f, fine_head=fine), emb_channels=4)
    _randomise_head(net)
    out = net(torch.randn(2, 3, *size), torch.randn(2, 4, *size))
    assert out.shape == (2, 2, *size)
    assert torch.isfinite(out).all()
    assert net.multiple == f * 4
    assert net.stem.in_channels == 3 * f * f
    if fine:  # the coarse head feeds k channels per output pixel, which meet the input itself
        assert net.to_fine.out_channels == fine * f * f and net.fine.in_channels == fine + 3
        assert net.head.out_channels == 2
    else:
        assert net.head.out_channels == 2 * f * f


def test_a_fine_head_needs_a_coarser_grid():
    with pytest.raises(ValueError, match="pixel_unshuffle"):
        UNetConfig(fine_head=8)


def test_every_pixel_of_the_embedding_reaches_the_network():
    """On the coarse grid the f×f pixels of a cell stay separate channels: the same change of the embedding at two
    pixels of one cell changes the output differently (an averaged embedding would give the same output)."""
    torch.manual_seed(1)
    net = UNet(1, 1, UNetConfig(width=8, depth=2, pixel_unshuffle=2), emb_channels=4).eval()
    _randomise_head(net)
    x, emb = torch.randn(1, 1, 8, 8), torch.randn(1, 4, 8, 8)
    outputs = []
    for row, col in ((2, 2), (2, 3), (3, 2), (3, 3)):  # the four pixels of one 2×2 cell
        changed = emb.clone()
        changed[..., row, col] += 1.0
        outputs.append(net(x, changed))
    reference = net(x, emb)
    for i, out in enumerate(outputs):
        assert not torch.allclose(out, reference)
        for other in outputs[i + 1 :]:
            assert not torch.allclose(out, other, atol=1e-6)


@pytest.mark.parametrize("task", ["sr", "phase"])
@pytest.mark.parametrize("fine", [0, 8])
def test_min_size_counts_the_coarser_grid(task, fine):
    full = CVDM(presets.default_architecture(task))
    coarse = CVDM(presets.default_architecture(task, pixel_unshuffle=2, fine_head=fine))
    assert full.min_size == 8
    assert coarse.min_size == 16  # 2 (grid) × 2³ (four levels)
    assert coarse.denoiser.unet.multiple == 16 and coarse.schedule.lambda_net.multiple == 8
    # the denoiser's and λ's zero/constant heads still start the model where the full-grid one starts
    c = coarse.config
    z, x = torch.randn(1, c.out_channels, 16, 16), torch.randn(1, c.cond_channels, 16, 16)
    with torch.no_grad():
        assert torch.equal(coarse.predict_noise(z, x, torch.full_like(z, 0.5)), torch.zeros_like(z))
        lam = coarse.schedule.lam(x)
    assert torch.allclose(lam, torch.full_like(lam, 1 + 1e-4))


def _flops(task: str, side: int = 256, **grid: int) -> tuple[int, int]:
    """FLOPs of one denoiser call and of one λ-network call on a ``side``² output, counted on the meta device."""
    with torch.device("meta"):
        net = CVDM(presets.default_architecture(task, **grid))
        c = net.config
        z = torch.randn(1, c.out_channels, side, side)
        x = torch.randn(1, c.cond_channels, side, side)
        g = torch.rand(1, c.out_channels, side, side)
    with torch.no_grad():
        with FlopCounterMode(display=False) as count:
            net.predict_noise(z, x, g)
        denoiser = count.get_total_flops()
        with FlopCounterMode(display=False) as count:
            net.schedule.lam(x)
    return denoiser, count.get_total_flops()


@pytest.mark.parametrize("task", ["sr", "phase"])
@pytest.mark.parametrize("fine", [0, 8])
def test_the_coarser_grid_costs_at_least_3_5_times_fewer_flops(task, fine):
    full_denoiser, full_lambda = _flops(task)
    coarse_denoiser, coarse_lambda = _flops(task, pixel_unshuffle=2, fine_head=fine)
    assert 355e9 < full_denoiser / 0.065536 < 365e9  # the 360 GFLOP per output megapixel of the full grid
    assert full_denoiser / coarse_denoiser >= 3.5
    assert full_lambda / coarse_lambda >= 3.5
