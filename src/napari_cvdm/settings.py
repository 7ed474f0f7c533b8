"""Typed settings, one object per job, shared by the widgets, the CLI and the tests."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .device import resolve_device


class ReconstructSettings(BaseModel):
    """How to reconstruct: sampler, number of samples, device, tiling."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    n_samples: int = Field(8, ge=1, le=1000, description="samples drawn per image; their spread is the uncertainty")
    steps: int | None = Field(
        None,
        ge=1,
        le=2000,
        description="network evaluations per sample (None: the model's benchmarked default)",
    )
    method: Literal["gamma", "ancestral"] | None = Field(
        None,
        description="'gamma' (any number of steps) or 'ancestral' (the paper's Algorithm 2); None: model default",
    )
    seed: int = Field(0, ge=0, description="random seed; the same seed gives the same result")
    device: str = Field("auto", description="'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="network arithmetic: bf16 autocast is faster on GPUs; auto picks per device"
    )
    tile_size: int | None = Field(
        None, ge=8, description="tile side on the output grid for large images (None: whole image at once)"
    )
    tile_overlap: int = Field(32, ge=0, description="overlap of neighbouring tiles (output pixels), blended")
    batch_size: int | None = Field(None, ge=1, description="samples per network call (None: all at once)")
    keep_samples: bool = Field(False, description="also return every individual sample")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        name = value.strip().lower()
        if name not in ("auto", "cpu", "mps") and not name.startswith("cuda"):
            raise ValueError(f"unknown device {value!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return name

    def torch_device(self):
        return resolve_device(self.device)
