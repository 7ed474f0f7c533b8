"""Typed settings, one object per job, shared by the widgets, the CLI and the tests."""

from __future__ import annotations

import difflib
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._runtime.device import resolve_device
from .model.metadata import SamplerMethod, TieMethod, parse_length_um
from .tasks import InputError

Settings = TypeVar("Settings", bound=BaseModel)

DEFAULT_TILE_OVERLAP = 32  # output pixels shared by neighbouring tiles unless the tiles are smaller than twice this
LENGTH_LIMITS_UM = {"pixel_size_um": 20.0, "wavelength_um": 5.0, "defocus_um": 1000.0}  # above: probably not µm
MAX_NA = 1.7  # no objective's numerical aperture is larger


def stated_length_um(value: object, field: str) -> float | None:
    """An optics length field (µm, or a string with a unit) as µm; a unit-less value over its limit is refused."""
    return parse_length_um(value, field, LENGTH_LIMITS_UM[field])


class SettingsError(InputError):
    """Settings that are out of range or unknown; the message names each one with what is allowed."""


def settings_problems(err: ValidationError, kind: type[BaseModel] | None = None) -> str:
    """A pydantic error as one line of ``field: what is wrong`` per problem, without pydantic's links; an unknown
    field name gets the nearest known one of ``kind`` (``interval_levl`` → ``interval_level``)."""
    known = list(kind.model_fields) if kind is not None else []
    parts = []
    for e in err.errors():
        where = ".".join(map(str, e["loc"]))
        if e["type"] == "extra_forbidden":
            near = difflib.get_close_matches(str(e["loc"][-1]), known, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"the settings are {', '.join(known)}"
            parts.append(f"{where}: not a setting ({hint})" if known else f"{where}: not a setting")
            continue
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] not in ("value_error", "assertion_error") and "input" in e:
            message += f", got {e['input']!r}"
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def checked_settings(kind: type[Settings], **values: Any) -> Settings:
    """``kind(**values)``, or :class:`SettingsError` naming every bad or unknown value and what is allowed."""
    try:
        return kind(**values)
    except ValidationError as err:
        raise SettingsError(f"invalid {kind.__name__}: {settings_problems(err, kind)}") from None


class ReconstructSettings(BaseModel):
    """How to reconstruct: sampler, number of samples, device, tiling."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    n_samples: int = Field(8, ge=1, le=1000, description="samples drawn per image; their spread is the uncertainty")
    steps: int | None = Field(
        None,
        ge=1,
        le=2000,
        description="network evaluations per sample, 1 to 2000 (None: the model's benchmarked default)",
    )
    method: SamplerMethod | None = Field(
        None,
        description="'gamma' (any number of steps), 'ancestral' (Algorithm 2 with the exact per-step decay "
        "γ(tᵢ)/γ(tᵢ₋₁)) or 'ancestral-euler' (Algorithm 2 as printed: Euler steps of β, from N(0, I)); None: the "
        "model's default",
    )
    grid: Literal["auto", "learned", "snr", "uniform"] = Field(
        "auto",
        description="time grid of the 'gamma' sampler: 'auto' (the model's default; its LD3-learned grid for these "
        "steps when η = 0), 'learned' (LD3, deterministic), 'snr' (equal steps in log-SNR) or 'uniform' (in t)",
    )
    eta: float | None = Field(
        None, ge=0, le=1, description="'gamma' sampler noise: 1 stochastic (DDPM), 0 deterministic (DDIM); None: auto"
    )
    seed: int = Field(0, ge=0, description="random seed; the same seed gives the same result")
    device: str = Field("auto", description="'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="network arithmetic: auto = bf16 autocast on GPUs and CPUs with bf16 kernels, else fp32"
    )
    tile_size: int | None = Field(
        None, ge=8, description="tile side on the output grid (None: the whole image if it fits in memory)"
    )
    tile_overlap: int | None = Field(
        None,
        ge=0,
        description=f"overlap of neighbouring tiles (output pixels), blended; at most half the tile size (None: "
        f"{DEFAULT_TILE_OVERLAP}, or half the tile when that is less)",
    )
    batch_size: int | None = Field(
        None, ge=1, description="samples per network call (None: what the device does fastest)"
    )
    keep_samples: bool = Field(False, description="also return every individual sample")
    interval_level: float = Field(
        0.9,
        ge=0.5,
        le=0.99,
        description="central interval of the calibrated uncertainty: this fraction of pixels is expected to hold "
        "the truth between its lower and upper bound (0.5 to 0.99)",
    )
    pixel_size_um: float | None = Field(
        None,
        description="input pixel in the sample, µm ('0.108', '108nm', '0.108um'); None: the data are at the "
        "model's pixel size (the caller vouches for it)",
    )
    wavelength_um: float | None = Field(
        None, description="SR: emission λ, phase: illumination λ, µm or with a unit ('670nm'); None: the model's"
    )
    numerical_aperture: float | None = Field(
        None, gt=0, le=MAX_NA, description="SR: detection NA of the objective; None: the model's"
    )
    defocus_um: float | None = Field(
        None, description="phase: the planes are at −d and +d, d in µm or with a unit; None: the model's"
    )
    camera_offset: float = Field(
        0.0,
        ge=0,
        description="the camera's dark level (offset) in image units, subtracted from the input first (the mean of a "
        "frame with the light off; 0: the input is offset-subtracted). Phase needs intensities proportional to the "
        "light: an offset of 100 counts under 1000 makes the phase about a tenth too small",
    )
    plane_order: Literal["minus-plus", "plus-minus"] = Field(
        "minus-plus",
        description="phase: the order of the two planes of a stack, (I(−d), I(+d)) or (I(+d), I(−d)) (swapped)",
    )
    resample: Literal["exact", "approximate", "never"] = Field(
        "exact",
        description="optics outside the model's range: 'exact' resamples only where that is physically exact "
        "(phase: to the model's λ·d/p²; SR: b×b binning of an oversampled image) and refuses otherwise; "
        "'approximate' also interpolates SR images to the model's PSF width in pixels (at your own risk); "
        "'never' refuses",
    )

    @field_validator("pixel_size_um", "wavelength_um", "defocus_um", mode="before")
    @classmethod
    def _length(cls, value: object, info) -> float | None:
        return stated_length_um(value, info.field_name)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        name = value.strip().lower()
        if name not in ("auto", "cpu", "mps") and not name.startswith("cuda"):
            raise ValueError(f"unknown device {value!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return name

    @model_validator(mode="after")
    def _overlap_fits_the_tile(self) -> ReconstructSettings:
        overlap, tile = self.tile_overlap, self.tile_size
        if overlap is not None and tile is not None and overlap > tile // 2:
            raise ValueError(overlap_message(overlap, tile, "tile_size"))
        return self

    def overlap_for(self, tile: int) -> int:
        """The overlap of tiles of side ``tile``: ``tile_overlap``, or the default capped at half the tile."""
        return min(DEFAULT_TILE_OVERLAP, tile // 2) if self.tile_overlap is None else self.tile_overlap

    def torch_device(self):
        return resolve_device(self.device)


def overlap_message(overlap: int, tile: int, which: str) -> str:
    """Why ``overlap`` cannot be used with tiles of side ``tile`` (``which`` names where the tile size came from)."""
    return (
        f"tile_overlap {overlap} is more than half of the {which} {tile}, so the tiles would cover most pixels "
        f"many times over; use a tile_overlap of at most {tile // 2}, or a tile size of at least {2 * overlap}"
    )


class TrainSettings(BaseModel):
    """How to train: steps, batches, patches, optimiser, α, validation, device, seed, checkpoints."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    steps: int = Field(2000, ge=1, description="optimiser steps")
    batch_size: int = Field(8, ge=1, description="patches per step")
    patch_size: int = Field(64, ge=8, description="patch side on the output grid (pixels), multiple of 8")
    learning_rate: float = Field(2e-4, gt=0, le=1, description="Adam learning rate")
    warmup_steps: int | None = Field(
        None, ge=0, description="steps of linear learning-rate warm-up (None: a tenth of the steps, at most 100)"
    )
    lr_decay: Literal["constant", "cosine"] = Field(
        "constant", description="learning rate after the warm-up: constant, or a cosine decay to 0 at the last step"
    )
    time_lr_multiplier: float = Field(
        10.0, gt=0, description="learning-rate factor of the small time networks τ(t), ρ(t) (a few hundred weights)"
    )
    alpha: float = Field(1e-3, ge=0, description="weight α of the ‖∂²γ/∂t²‖² regulariser")
    loss_weights: tuple[float, float, float, float] = Field(
        (1.0, 1.0, 1.0, 1.0),
        description="weights of the loss terms (L_β, L_KL, L_ε, α·L_γ): the paper's 1 1 1 1; the authors' code "
        "uses 2 2 1 2",
    )
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA of the weights that is saved (0: no EMA)")
    grad_clip: float = Field(1.0, gt=0, description="gradient-norm clip")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of images held out for validation")
    val_every: int | None = Field(
        None, ge=1, description="validate every this many steps (None: a tenth of the steps, at most 200)"
    )
    val_batches: int = Field(4, ge=1, description="batches per validation")
    augment: bool = Field(True, description="random flips and 90° rotations")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 autocast for the networks")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    seed: int = Field(0, ge=0)
    checkpoint_every: int = Field(
        500, ge=1, description="write the model file and the resume checkpoint (<output>.ckpt) every this many steps"
    )

    @field_validator("loss_weights")
    @classmethod
    def _non_negative_weights(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(w < 0 for w in value) or not any(w > 0 for w in value):
            raise ValueError(f"loss weights must be ≥ 0 and not all 0; got {value} (the paper's: 1 1 1 1)")
        return value

    def resolved(self) -> TrainSettings:
        """A copy with the automatic warm-up and validation interval replaced by their values for these steps."""
        return self.model_copy(update={"warmup_steps": self.warmup, "val_every": self.validation_interval})

    @property
    def warmup(self) -> int:
        """Warm-up steps of this run: ``warmup_steps``, or a tenth of the steps, at most 100."""
        return derived_warmup(self.steps) if self.warmup_steps is None else self.warmup_steps

    @property
    def validation_interval(self) -> int:
        """Steps between validations: ``val_every``, or a tenth of the steps, at most 200 (at least 1)."""
        return derived_val_every(self.steps) if self.val_every is None else self.val_every


def derived_warmup(steps: int) -> int:
    """The default warm-up of a run of ``steps`` steps: a tenth of them, at least 1, at most 100."""
    return min(100, max(1, steps // 10))


def derived_val_every(steps: int) -> int:
    """The default validation interval of a run of ``steps`` steps: a tenth of them, at least 1, at most 200."""
    return max(1, min(200, steps // 10))


class PairOptics(BaseModel):
    """The optics of the user's own pairs (training, fine-tuning, calibration): a model trained on them states
    them in its header, and a phase model's TIE condition is computed with them."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    pixel_size_um: float | None = Field(
        None,
        description="the input pixel in the sample, µm or with a unit ('108nm'); None: what the input "
        "files state (OME-TIFF / ImageJ), else the base model's",
    )
    wavelength_um: float | None = Field(
        None, description="SR emission λ, phase illumination λ, µm or with a unit; None: the base model's"
    )
    numerical_aperture: float | None = Field(
        None, gt=0, le=MAX_NA, description="SR: detection NA of the objective; None: the base model's"
    )
    defocus_um: float | None = Field(
        None, description="phase: the planes at −d and +d, d in µm or with a unit; None: the base model's"
    )
    camera_offset: float = Field(
        0.0,
        ge=0,
        description="the camera's dark level in the input files' units, subtracted from every input "
        "first, as reconstruction does (0: the inputs are offset-subtracted)",
    )

    @field_validator("pixel_size_um", "wavelength_um", "defocus_um", mode="before")
    @classmethod
    def _length(cls, value: object, info) -> float | None:
        return stated_length_um(value, info.field_name)

    def stated(self) -> dict[str, float]:
        """The optics stated for the user's pairs (fields left None are absent)."""
        names = ("pixel_size_um", "wavelength_um", "numerical_aperture", "defocus_um")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class TrainJob(BaseModel):
    """A whole training run as the CLI (``napari-cvdm train --config job.yaml``) describes it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: Literal["sr", "phase"] = Field(description="'sr' (widefield → SIM) or 'phase' (two-shot defocus → phase)")
    output: str = Field(description="model file to write (.cvdm)")
    name: str | None = Field(None, description="model name stored in the file (default: the output file's stem)")
    base_model: str | None = Field(None, description="registered name or .cvdm path to fine-tune (None: scratch)")
    input_dir: str | None = Field(None, description="folder of input TIFFs (pairs matched by file name)")
    target_dir: str | None = Field(None, description="folder of target TIFFs")
    plus_dir: str | None = Field(
        None,
        description="phase: folder of the I(+d) TIFFs, one (H, W) plane each, when the two defocus planes are "
        "separate files (input_dir then holds the I(−d) ones; matched by file name)",
    )
    simulate_n: int | None = Field(None, ge=2, description="train on this many simulated pairs instead of folders")
    simulate_size: int = Field(128, ge=16, description="input side of each simulated pair (pixels)")
    simulate_seed: int = Field(0, ge=0, description="seed of the simulated training set")
    simulate_optics: Literal["nominal", "random"] = Field(
        "nominal",
        description="simulated pairs: 'nominal' (the model header's optics), or 'random': each pair draws its "
        "optics and noise — SR: NA, emission, camera pixel, photons, background and read noise from "
        "physics.SROpticsRange; phase: defocus, wavelength, pixel, weak absorption and ξ from "
        "physics.PhaseOpticsRange, its TIE condition computed with its own set-up — recorded in the model header's "
        "training['optics_range'], which then states the optics the model covers",
    )
    resume: bool = Field(
        False, description="continue exactly from the checkpoint next to output (<output stem>.ckpt) of a stopped run"
    )
    time_parameterisation: Literal["exact", "separate"] | None = Field(
        None,
        description="schedule: None keeps the base model's ('exact' from scratch); 'exact' converts a 'separate' base "
        "model (its τ network is dropped, τ := ρ′ of its learned ρ; every other weight carries over)",
    )
    width: int = Field(32, ge=4, description="denoiser width for a model trained from scratch")
    depth: int = Field(4, ge=1, le=6, description="denoiser levels for a model trained from scratch")
    tie_method: TieMethod | None = Field(
        None,
        description="phase: the TIE estimate the model is conditioned on, 'fft' or 'us-tie' (None: the base "
        "model's, or 'fft' from scratch)",
    )
    optics: PairOptics = Field(
        default_factory=PairOptics, description="input_dir pairs: their optics and camera offset (PairOptics)"
    )
    train: TrainSettings = Field(default_factory=TrainSettings)

    @model_validator(mode="after")
    def _one_data_source(self) -> TrainJob:
        folders = self.input_dir is not None or self.target_dir is not None
        if folders == (self.simulate_n is not None):
            raise ValueError(
                "give either input_dir and target_dir (your paired TIFFs) or simulate_n (simulated pairs), not both"
            )
        if folders and (self.input_dir is None or self.target_dir is None):
            raise ValueError("give both input_dir and target_dir")
        if self.plus_dir is not None and (self.task != "phase" or self.input_dir is None):
            raise ValueError(
                "plus_dir (the I(+d) files) is for phase pairs from folders: give it with task 'phase' and input_dir "
                "(the I(−d) files)"
            )
        if self.simulate_n is not None and (self.optics.stated() or self.optics.camera_offset):
            stated = ", ".join([*self.optics.stated(), *(["camera_offset"] if self.optics.camera_offset else [])])
            raise ValueError(
                f"{stated}: for your own pairs (input_dir) only; simulated pairs have the model's optics and no "
                "camera offset. To train for your microscope by simulation, use napari-cvdm adapt"
            )
        if self.simulate_optics == "random" and self.simulate_n is None:
            raise ValueError("simulate_optics='random' applies to simulated pairs only: give simulate_n as well")
        return self


ADAPT_PAIRS = 64  # simulated training pairs (a quarter held out for the recalibration)
ADAPT_SIZE = 128  # input side of each simulated pair, pixels
ADAPT_TRAIN = {"steps": 500, "batch_size": 8, "patch_size": 64, "val_fraction": 0.25}  # adapt's fine-tuning


def adapt_train_settings(**overrides: object) -> TrainSettings:
    """The fine-tuning settings of an adaptation: :data:`ADAPT_TRAIN` (shorter than a training run; a quarter of
    the pairs held out), with ``overrides`` (the CLI's and the widget's fields)."""
    return TrainSettings(**{**ADAPT_TRAIN, **overrides})
