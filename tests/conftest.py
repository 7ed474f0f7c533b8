"""Shared fixtures and helpers: tiny CVDMs that train in seconds on the CPU, as networks, models and files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from napari_cvdm.model import CVDM, CVDMConfig, ModelMetadata, TrainedModel, UNetConfig
from napari_cvdm.model.files import save_model

TINY = dict(
    denoiser=UNetConfig(width=8, depth=2, norm="group"),
    schedule=UNetConfig(width=4, depth=1, norm="none"),
    time_hidden=16,
    gamma_embedding=8,
)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny networks run fastest on one thread, and torch's spinning threads crawl on a busy 2-core machine.

    Also makes bit-exactness tests independent of the machine: results depend on the thread count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_network(cond_channels: int = 1, residual: bool = False, seed: int = 0, time: str = "exact") -> CVDM:
    """A tiny untrained CVDM; ``time`` is its τ parameterisation ("exact", or "separate" as in older files)."""
    torch.manual_seed(seed)
    config = CVDMConfig(
        cond_channels=cond_channels, residual_channel=0 if residual else None, time_parameterisation=time, **TINY
    )
    return CVDM(config)


TINY_INFO: dict[str, dict[str, Any]] = {
    "sr": dict(task="super-resolution", scale_factor=2, input_pixel_um=0.0626),
    "phase": dict(
        task="phase",
        input_planes=2,
        input_pixel_um=0.21,
        wavelength_um=0.521,
        defocus_um=2.0,
        normalization={"input": "mean", "target_scale": 1.75},
    ),
}


def tiny_model(task: str, **info: Any) -> TrainedModel:
    """An untrained tiny model (shapes, units, errors — not quality): ``"sr"`` (2×, residual) or ``"phase"`` (two
    defocus planes); ``info`` overrides fields of its metadata."""
    network = tiny_network(residual=True) if task == "sr" else tiny_network(cond_channels=2)
    return TrainedModel(network=network, info=ModelMetadata(**{**TINY_INFO[task], **info}), source=f"tiny-{task}")


def save_tiny_models(folder: Path, **info: Any) -> dict[str, Path]:
    """Write the tiny SR and phase models as ``tiny-sr.cvdm`` and ``tiny-phase.cvdm`` into ``folder``."""
    paths = {}
    for task in TINY_INFO:
        model = tiny_model(task, name=f"tiny-{task}", **info)
        paths[f"tiny-{task}"] = save_model(folder / f"tiny-{task}.cvdm", model.network, model.info)
    return paths


@pytest.fixture
def tiny_sr_model() -> TrainedModel:
    return tiny_model("sr", wavelength_um=0.515)


@pytest.fixture
def tiny_phase_model() -> TrainedModel:
    return tiny_model("phase")


def toy_batch(n: int, size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The toy law with a known answer: x ~ U(0.3, 1.5) per pixel, y = s·x with s = ±1 at random.

    Given x, the true conditional mean of y is 0 and its variance is x².
    """
    x = torch.rand(n, 1, size, size, generator=generator) * 1.2 + 0.3
    sign = torch.randint(0, 2, (n, 1, size, size), generator=generator) * 2 - 1
    return sign * x, x


@pytest.fixture(scope="session")
def toy_network() -> CVDM:
    """A CVDM trained on the toy law (≈1000 Adam steps, well under a minute on 2 CPU cores)."""
    torch.manual_seed(0)
    net = CVDM(
        CVDMConfig(
            cond_channels=1,
            denoiser=UNetConfig(width=16, depth=1, norm="none"),
            schedule=UNetConfig(width=8, depth=1, norm="none"),
            time_hidden=32,
            gamma_embedding=16,
        )
    )
    opt = torch.optim.Adam(net.parameters(), lr=8e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(1000):
        y, x = toy_batch(64, 8, gen)
        loss = net.loss(y, x).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()
