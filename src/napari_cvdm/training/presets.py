"""Default architectures and physical metadata for the two tasks, and in-memory simulated training pairs.

The physics (pixel sizes, wavelength, NA, defocus) comes from the simulators' defaults, so a model trained on
simulated data records exactly the optics it was trained for.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..model.cvdm import CVDMConfig
from ..model.metadata import ModelMetadata, Normalization, TieMethod
from ..model.unet import UNetConfig
from ..physics import PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair

TaskName = Literal["sr", "phase"]
TASKS: dict[str, str] = {"sr": "super-resolution", "phase": "phase"}
PHASE_TARGET_SCALE = 1.75  # rad per network unit: the simulators' phases (≤ 3.5 rad, zero-mean) map to about ±1


def default_architecture(
    task: TaskName, width: int = 32, depth: int = 4, pixel_unshuffle: int = 1, fine_head: int = 0
) -> CVDMConfig:
    """A CPU-trainable CVDM (≈2 M parameters at width 32).

    ``pixel_unshuffle`` = 2 runs both U-Nets on a grid 2× coarser than the output (SR: the widefield grid), with
    the same widths: 3.6× fewer FLOPs per output pixel (docs/performance.md, *A cheaper network*).
    """
    grid = dict(blocks=1, max_multiplier=4, norm="group", pixel_unshuffle=pixel_unshuffle, fine_head=fine_head)
    denoiser = UNetConfig(width=width, depth=depth, **grid)
    schedule = UNetConfig(width=max(width // 2, 8), depth=3, **grid)
    if task == "sr":
        return CVDMConfig(cond_channels=1, residual_channel=0, denoiser=denoiser, schedule=schedule)
    # phase: I(−d), I(+d) and a TIE estimate (FFT-TIE or US-TIE, see default_metadata); diffuse the residual φ − TIE
    return CVDMConfig(cond_channels=3, residual_channel=2, denoiser=denoiser, schedule=schedule)


def default_metadata(
    task: TaskName,
    name: str,
    physics: SRSimulation | PhaseSimulation | None = None,
    tie_method: TieMethod = "fft",
) -> ModelMetadata:
    """Model metadata that matches the simulator settings ``physics`` (defaults: BioSR / the paper's QPI).

    ``tie_method``: the classical phase estimate a phase model is conditioned on (ignored for SR).
    """
    if task == "sr":
        sim = physics if isinstance(physics, SRSimulation) else SRSimulation()
        return ModelMetadata(
            task="super-resolution",
            name=name,
            description="widefield → SIM super-resolution (2× finer grid), trained on simulated BioSR-like pairs",
            scale_factor=sim.scale_factor,
            input_pixel_um=sim.wf_pixel_um,
            wavelength_um=sim.wavelength_um,
            numerical_aperture=sim.na,
            input_planes=1,
            normalization=Normalization(input="percentile", low_percentile=0.1, high_percentile=99.9),
        )
    sim = physics if isinstance(physics, PhaseSimulation) else PhaseSimulation()
    return ModelMetadata(
        task="phase",
        name=name,
        description="two-shot defocus (I(−d), I(+d)) → quantitative phase (rad), trained on simulated pairs",
        scale_factor=1,
        input_pixel_um=sim.pixel_um,
        wavelength_um=sim.wavelength_um,
        defocus_um=sim.defocus_um,
        input_planes=2,
        condition_on_tie=True,
        tie_method=tie_method,
        normalization=Normalization(input="mean", target_offset=0.0, target_scale=PHASE_TARGET_SCALE),
    )


def simulate_pairs(
    task: TaskName, n: int, size: int, seed: int, physics: SRSimulation | PhaseSimulation | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` simulated (input, target) pairs in memory; item k depends only on (seed, k)."""
    inputs, targets = [], []
    for child in np.random.SeedSequence(seed).spawn(n):
        rng = np.random.default_rng(child)
        if task == "sr":
            x, y, _ = simulate_sr_pair(physics or SRSimulation(), size, rng)
        else:
            x, y, _ = simulate_phase_pair(physics or PhaseSimulation(), size, rng)
        inputs.append(x)
        targets.append(y)
    return inputs, targets
