"""What a model file says about the data it was trained on: task, physics, normalisation, sampler defaults.

Everything a user needs to apply a model correctly travels with the weights, so that inference normalises and
interprets images exactly as training did.  Units are in the field names (µm, rad).
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Task = Literal["super-resolution", "phase", "generic"]
TieMethod = Literal["fft", "us-tie"]  # the classical estimate a phase model is conditioned on
# the samplers: the γ-sampler, Algorithm 2 with exact per-step decays, and the paper's literal Euler form of it
SamplerMethod = Literal["gamma", "ancestral", "ancestral-euler"]


class Normalization(BaseModel):
    """How raw intensities become network inputs, and how network outputs become physical values.

    * ``input="percentile"``: x ↦ (x − p_low)/(p_high − p_low) with the image's own percentiles (BioSR practice;
      DL-SR uses 0/100).  Super-resolution outputs are mapped back with the *input's* percentiles, so the
      reconstruction is in the input's intensity units.
    * ``input="mean"``: x ↦ x / mean(x) − 1 over the whole image (all planes together).  Intensity ratios are what
      defocus phase retrieval depends on, so this is invariant to illumination power and exposure.
    * the target: y_norm = (y − target_offset) / target_scale for phase (radians).
    """

    model_config = ConfigDict(extra="forbid")

    input: Literal["percentile", "mean"] = "percentile"
    low_percentile: float = Field(0.1, ge=0, lt=100)
    high_percentile: float = Field(99.9, gt=0, le=100)
    target_offset: float = 0.0
    target_scale: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _order(self) -> Normalization:
        if self.low_percentile >= self.high_percentile:
            raise ValueError("low_percentile must be below high_percentile")
        return self


class SamplerDefaults(BaseModel):
    """The sampler a model is meant to be used with (benchmarked per model)."""

    model_config = ConfigDict(extra="forbid")

    method: SamplerMethod = "gamma"
    steps: int = Field(20, ge=1)
    grid: Literal["snr", "uniform"] = Field("snr", description="equal steps in median log-SNR, or in t")
    time_grid: list[float] | None = Field(None, description="an explicit grid 1 > … > 0 used at the default steps")
    eta: float = Field(1.0, ge=0, le=1, description="1: stochastic DDPM posterior steps; 0: deterministic (DDIM)")
    learned_grids: dict[int, list[float]] = Field(
        default_factory=dict,
        description="LD3-learned grids for the deterministic (η = 0) γ-sampler, by number of steps",
    )

    @model_validator(mode="after")
    def _check_grids(self) -> SamplerDefaults:
        for steps, grid in self.learned_grids.items():
            if (
                len(grid) != steps + 1
                or grid[0] != 1.0
                or grid[-1] != 0.0
                or any(b >= a for a, b in itertools.pairwise(grid))
            ):
                raise ValueError(
                    f"learned grid for {steps} steps must decrease strictly from 1.0 to 0.0 in {steps} steps"
                )
        if self.time_grid is not None and len(self.time_grid) != self.steps + 1:
            raise ValueError("time_grid must have steps + 1 entries")
        return self


class Calibration(BaseModel):
    """How far off the mean of N samples is, learned on held-out pairs the model never trained on.

    For one sampler setting (method, η, steps): a monotone map from the raw sample std (network units, optionally
    Gaussian-smoothed over ``smoothing_px`` output pixels) to the calibrated *posterior* std σ (knots, linear
    between them, constant below the first, proportional above the last).  The error of the mean of N samples then
    has the std σ·√(1 + 1/N), and the central interval at level q is mean ± z_q·σ·√(1 + 1/N) with z_q the
    split-conformal quantile of |error| / (σ·√(1 + 1/N)) on the calibration pairs (``interval_z``, by level).
    """

    model_config = ConfigDict(extra="forbid")

    version: int = Field(1, ge=1, description="calibration format version")
    method: SamplerMethod
    eta: float = Field(ge=0, le=1)
    steps: int = Field(ge=1)
    n_samples: int = Field(ge=2, description="samples per image of the calibration run")
    smoothing_px: float = Field(0.0, ge=0, description="σ of the Gaussian applied to the raw variance, pixels")
    raw_std: list[float] = Field(min_length=1, description="knots: raw sample std, network units, increasing")
    calibrated_std: list[float] = Field(min_length=1, description="posterior std at the knots, non-decreasing")
    interval_z: dict[str, float] = Field(description="level ('0.9') → multiplier of the calibrated error std")
    n_images: int = Field(ge=1)
    n_pixels: int = Field(ge=1)
    data: str = Field("", description="what the calibration pairs were (simulator, seeds, the user's files)")

    @model_validator(mode="after")
    def _monotone(self) -> Calibration:
        if len(self.raw_std) != len(self.calibrated_std):
            raise ValueError("raw_std and calibrated_std must have the same number of knots")
        if any(b <= a for a, b in itertools.pairwise(self.raw_std)):
            raise ValueError("raw_std knots must increase strictly")
        if any(b < a for a, b in itertools.pairwise(self.calibrated_std)) or min(self.calibrated_std) <= 0:
            raise ValueError("calibrated_std must be positive and non-decreasing")
        if not self.interval_z:
            raise ValueError("interval_z needs at least one level")
        return self


class ModelMetadata(BaseModel):
    """The physical and procedural facts stored in a model file's header."""

    model_config = ConfigDict(extra="forbid")

    task: Task
    name: str = Field("unnamed", description="registered or user-given model name")
    description: str = ""
    scale_factor: int = Field(1, ge=1, description="output grid is this many times finer than the input grid")
    input_pixel_um: float | None = Field(None, gt=0, description="pixel size of the input images (µm)")
    wavelength_um: float | None = Field(None, gt=0, description="emission (SR) or illumination (phase) λ (µm)")
    numerical_aperture: float | None = Field(None, gt=0)
    defocus_um: float | None = Field(None, gt=0, description="phase: the two planes are at −d and +d (µm)")
    input_planes: int = Field(1, ge=1, description="planes of one input image (2 for two-shot phase)")
    condition_on_tie: bool = Field(False, description="phase: append a classical TIE phase estimate as a condition")
    tie_method: TieMethod = Field(
        "fft",
        description="phase: which estimate conditions the model: 'fft' (one regularised TIE solve) or 'us-tie' "
        "(the iterative universal-solution TIE, physics.baselines.us_tie)",
    )
    tie_regularization: float = Field(
        1e-7,
        gt=0,
        description="Tikhonov α of that TIE estimate (physics.baselines.DEFAULT_TIE_ALPHA, DEFAULT_US_TIE_ALPHA)",
    )
    normalization: Normalization = Field(default_factory=Normalization)
    sampler: SamplerDefaults = Field(default_factory=SamplerDefaults)
    training: dict[str, Any] = Field(default_factory=dict, description="how it was trained: data, steps, time")
    calibrations: list[Calibration] = Field(
        default_factory=list, description="uncertainty calibrations, one per sampler setting (method, η, steps)"
    )

    @property
    def output_pixel_um(self) -> float | None:
        return None if self.input_pixel_um is None else self.input_pixel_um / self.scale_factor

    @model_validator(mode="after")
    def _check_task(self) -> ModelMetadata:
        if self.task == "phase":
            if self.input_planes != 2:
                raise ValueError("a phase model takes two planes, I(−d) and I(+d): set input_planes=2")
            if self.condition_on_tie and None in (self.defocus_um, self.wavelength_um, self.input_pixel_um):
                raise ValueError("conditioning on TIE needs defocus_um, wavelength_um and input_pixel_um")
        if self.task == "super-resolution" and self.input_planes != 1:
            raise ValueError("a super-resolution model takes one plane: set input_planes=1")
        return self
