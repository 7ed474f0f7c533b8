"""Typed, validated parameters of the two simulators (pydantic).

Both models are flat (scalars, literals and 2-tuples only), so command-line flags can be generated
from ``model_fields``; every field carries its unit in its name and a description.  Unknown fields
are rejected (``extra="forbid"``) and physically wrong values raise ``ValidationError`` with a message
saying what is wrong and how to fix it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["PhaseSimulation", "SRSimulation"]


def _check_um(name: str, value: float, upper: float) -> float:
    """Positive length in µm; catches values that look like nanometres."""
    if value <= 0:
        raise ValueError(f"{name} must be > 0 µm, got {value}")
    if value > upper:
        raise ValueError(
            f"{name}={value} µm is implausibly large — it looks like nanometres; give it in µm (e.g. {value / 1000:g})"
        )
    return value


def _check_range(name: str, value: tuple[float, float], lo: float, hi: float | None = None) -> tuple:
    a, b = value
    if a > b:
        raise ValueError(f"{name}=({a}, {b}) is reversed; give (low, high) with low ≤ high")
    if a < lo or (hi is not None and b > hi):
        upper = f", ≤ {hi}" if hi is not None else ""
        raise ValueError(f"{name}=({a}, {b}) must lie within [{lo}{upper}]")
    return value


class SRSimulation(BaseModel):
    """Widefield → linear-SIM pair simulator (BioSR-like; defaults = BioSR TIRF-SIM, 488 nm)."""

    model_config = ConfigDict(extra="forbid")

    structure: Literal["mixed", "microtubules", "f-actin", "er", "ccps"] = Field(
        "mixed", description="BioSR structure family; 'mixed' draws one family per image"
    )
    wavelength_um: float = Field(0.515, description="emission wavelength λ_em in µm")
    excitation_wavelength_um: float = Field(0.488, description="excitation wavelength in µm (pattern check)")
    na: float = Field(1.3, description="effective detection numerical aperture")
    immersion_index: float = Field(1.515, description="refractive index of the immersion medium")
    wf_pixel_um: float = Field(0.0626, description="widefield (input) camera pixel in the sample, µm")
    scale_factor: int = Field(2, description="SIM pixel = wf_pixel_um / scale_factor (BioSR: 2)")
    oversampling: int = Field(2, description="fine rendering pixels per SIM pixel (2 → 15.65 nm grid)")
    pattern_spacing_um: float = Field(0.173, description="SIM illumination line spacing Λ in µm")
    photons: tuple[float, float] = Field(
        (15.0, 600.0), description="average photons per raw frame on the foreground (log-uniform range)"
    )
    background: tuple[float, float] = Field(
        (0.01, 0.05), description="smooth background as a fraction of the peak widefield signal (range)"
    )
    background_scale_um: float = Field(1.0, description="correlation length of the smooth background, µm")
    n_raw_frames: int = Field(9, description="raw SIM frames summed into the widefield image (3 angles × 3)")
    read_noise_counts: float = Field(10.0, description="sCMOS read noise per frame, σ in ADU")
    gain_photons_per_count: float = Field(0.6026, description="photo-electrons per ADU")
    gt_photons: float = Field(
        0.0, description="mean foreground photons per SIM pixel of the ground truth; 0 = noise-free"
    )
    margin_um: float = Field(1.0, description="guard band rendered around the field and cropped off, µm")

    @field_validator("wavelength_um", "excitation_wavelength_um")
    @classmethod
    def _wavelength(cls, v: float, info) -> float:
        return _check_um(info.field_name, v, 5.0)

    @field_validator("wf_pixel_um", "pattern_spacing_um", "background_scale_um")
    @classmethod
    def _length(cls, v: float, info) -> float:
        return _check_um(info.field_name, v, 50.0)

    @field_validator("scale_factor", "oversampling", "n_raw_frames")
    @classmethod
    def _positive_int(cls, v: int, info) -> int:
        if v < 1:
            raise ValueError(f"{info.field_name} must be an integer ≥ 1, got {v}")
        return v

    @field_validator("photons")
    @classmethod
    def _photons(cls, v: tuple[float, float]) -> tuple[float, float]:
        _check_range("photons", v, 0.0)
        if v[0] <= 0:
            raise ValueError("photons must be > 0 (BioSR levels span about 15–600 photons per frame)")
        return v

    @field_validator("background")
    @classmethod
    def _background(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range("background", v, 0.0, 1.0)

    @field_validator("read_noise_counts", "gt_photons", "margin_um")
    @classmethod
    def _non_negative(cls, v: float, info) -> float:
        if v < 0:
            raise ValueError(f"{info.field_name} must be ≥ 0, got {v}")
        return v

    @field_validator("gain_photons_per_count")
    @classmethod
    def _gain(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"gain_photons_per_count must be > 0 (BioSR sCMOS: 0.6026), got {v}")
        return v

    @model_validator(mode="after")
    def _physics(self) -> SRSimulation:
        if self.immersion_index < 1.0:
            raise ValueError(f"immersion_index={self.immersion_index} must be ≥ 1 (air 1.0, oil 1.515)")
        if not 0 < self.na < self.immersion_index:
            raise ValueError(
                f"na={self.na} must be > 0 and smaller than immersion_index={self.immersion_index} "
                "(NA = n·sin θ < n); lower na or raise immersion_index (oil 1.515, water 1.333)"
            )
        limit = self.excitation_wavelength_um / (2 * self.immersion_index)
        if self.pattern_spacing_um < limit:
            raise ValueError(
                f"pattern_spacing_um={self.pattern_spacing_um} is finer than the excitation diffraction "
                f"limit λ_ex/(2n) = {limit:.4f} µm; use a spacing ≥ {limit:.4f} µm (BioSR: 0.173)"
            )
        cutoff = 2 * self.na / self.wavelength_um + 1 / self.pattern_spacing_um
        sim_px = self.wf_pixel_um / self.scale_factor
        if sim_px > 1 / (2 * cutoff):
            raise ValueError(
                f"the SIM pixel wf_pixel_um/scale_factor = {sim_px:.4f} µm undersamples the SIM cutoff "
                f"{cutoff:.2f} µm⁻¹ (Nyquist needs ≤ {1 / (2 * cutoff):.4f} µm); raise scale_factor "
                "or lower wf_pixel_um"
            )
        return self

    @property
    def sim_pixel_um(self) -> float:
        """Pixel of the SIM target in µm."""
        return self.wf_pixel_um / self.scale_factor

    @property
    def fine_pixel_um(self) -> float:
        """Pixel of the fine rendering grid in µm."""
        return self.wf_pixel_um / (self.scale_factor * self.oversampling)


class PhaseSimulation(BaseModel):
    """Two-shot defocus pair → phase simulator (CVDM QPI task; Goodman sign convention)."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["photos", "cells", "mixed"] = Field(
        "mixed", description="phase objects: bundled photos (CVDM-like), procedural cells, or 50/50 mix"
    )
    wavelength_um: float = Field(0.521, description="illumination wavelength λ in µm")
    pixel_um: float = Field(0.21, description="camera pixel in the sample plane, µm")
    defocus_um: float = Field(2.0, description="defocus d in µm: planes at −d and +d (paper: 2; authors' code: 1)")
    n_medium: float = Field(1.0, description="refractive index of the propagation medium")
    max_phase_rad: float = Field(3.5, description="maximum phase in rad (photos are scaled to it)")
    min_phase_fraction: float = Field(
        1.0, description="photos: peak phase uniform in [fraction·max, max]; 1 = always max (CVDM)"
    )
    photo_zoom: tuple[float, float] = Field(
        (0.5, 2.0), description="photos: output pixels per source pixel, log-uniform range"
    )
    absorption: float = Field(0.0, description="weak absorption: amplitude = exp(−absorption·φ/max φ); 0 = pure phase")
    noise_max: float = Field(0.2, description="additive noise N(ξ, ξ) with ξ ~ U(0, noise_max) per pair; 0 disables")

    @field_validator("wavelength_um")
    @classmethod
    def _wavelength(cls, v: float) -> float:
        return _check_um("wavelength_um", v, 5.0)

    @field_validator("pixel_um", "defocus_um")
    @classmethod
    def _length(cls, v: float, info) -> float:
        if info.field_name == "defocus_um" and v <= 0:
            raise ValueError(
                f"defocus_um={v}: d is the half-distance between the planes (at −d and +d) and must be "
                "> 0; the channel order [I(−d), I(+d)] carries the sign"
            )
        return _check_um(info.field_name, v, 1000.0)

    @field_validator("n_medium")
    @classmethod
    def _index(cls, v: float) -> float:
        if v < 1.0:
            raise ValueError(f"n_medium={v} must be ≥ 1 (air 1.0, water 1.333)")
        return v

    @field_validator("max_phase_rad")
    @classmethod
    def _max_phase(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"max_phase_rad must be > 0 rad (CVDM: 3.5), got {v}")
        return v

    @field_validator("min_phase_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError(f"min_phase_fraction must be in (0, 1], got {v}")
        return v

    @field_validator("photo_zoom")
    @classmethod
    def _zoom(cls, v: tuple[float, float]) -> tuple[float, float]:
        _check_range("photo_zoom", v, 0.0)
        if v[0] <= 0:
            raise ValueError("photo_zoom must be > 0 (e.g. (0.5, 2.0))")
        return v

    @field_validator("absorption", "noise_max")
    @classmethod
    def _non_negative(cls, v: float, info) -> float:
        if v < 0:
            raise ValueError(f"{info.field_name} must be ≥ 0, got {v}")
        return v
