"""Ranges of microscopes and noise to draw training pairs from, so that a model covers the optics users have.

:class:`SROpticsRange` (widefield → SIM) and :class:`PhaseOpticsRange` (two-shot defocus → phase) are flat pydantic
models of (low, high) ranges.  Each simulated pair draws its own optics and noise from the range with the pair's
generator (:func:`draw_sr_settings`, :func:`draw_phase_settings`), then runs the ordinary simulator with them
(:func:`simulate_sr_pair_random`, :func:`simulate_phase_pair_random`).

SR: NA, emission wavelength and camera pixel are drawn uniformly; draws whose PSF width *in WF pixels*
(∝ λ/(NA·p)) falls outside ``psf_width_factor`` × the nominal width are drawn again.  The SIM target is kept
physically consistent with the drawn optics: its pixel is the WF pixel / 2, and its OTF support ρc + k₀ scales with
the drawn widefield cutoff ρc = 2NA/λ (k₀/ρc as in the nominal BioSR set-up, 1/(0.173 µm · 5.05 µm⁻¹) = 1.145).  k₀
is capped by the excitation limit 2n/λ_ex (λ_ex = λ_em − the nominal Stokes shift of 27 nm) and by the SIM grid's
Nyquist frequency (ρc + k₀ ≤ 1/p for a SIM pixel p/2), which binds for fine-resolving optics on coarse pixels.

Phase: defocus, wavelength and pixel are drawn uniformly (log-uniform for the defocus); draws whose λ·d/p² (the
strength of the defocus contrast, the inverse Fresnel number of one pixel) falls outside ``fresnel_factor`` × the
nominal value are drawn again.  Weak absorption and the additive noise level ξ are drawn per pair too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .settings import PhaseSimulation, SRSimulation, _check_range, _check_um
from .simulate import simulate_phase_pair, simulate_sr_pair

__all__ = [
    "PhaseOpticsRange",
    "SROpticsRange",
    "draw_phase_settings",
    "draw_sr_settings",
    "fresnel_factor",
    "psf_width_factor",
    "simulate_phase_pair_random",
    "simulate_sr_pair_random",
    "sr_psf_fwhm_px",
]

MAX_DRAWS = 1000
_NOMINAL_SR = SRSimulation()
_NOMINAL_PHASE = PhaseSimulation()
STOKES_SHIFT_UM = _NOMINAL_SR.wavelength_um - _NOMINAL_SR.excitation_wavelength_um  # 0.027 µm (BioSR 488 → 515)
# the nominal SIM pattern frequency relative to the widefield cutoff: 1/(0.173 µm) / (2·1.3/0.515 µm) = 1.145
PATTERN_RATIO = (1 / _NOMINAL_SR.pattern_spacing_um) / (2 * _NOMINAL_SR.na / _NOMINAL_SR.wavelength_um)


def sr_psf_fwhm_px(na: float, wavelength_um: float, wf_pixel_um: float) -> float:
    """FWHM of the widefield Airy PSF, 0.514·λ/NA, in WF pixels (nominal BioSR: 3.25 px)."""
    return 0.514 * wavelength_um / na / wf_pixel_um


def psf_width_factor(na: float, wavelength_um: float, wf_pixel_um: float) -> float:
    """PSF width in WF pixels relative to the nominal optics (NA 1.3, 0.515 µm, 62.6 nm pixels)."""
    nominal = sr_psf_fwhm_px(_NOMINAL_SR.na, _NOMINAL_SR.wavelength_um, _NOMINAL_SR.wf_pixel_um)
    return sr_psf_fwhm_px(na, wavelength_um, wf_pixel_um) / nominal


def fresnel_factor(defocus_um: float, wavelength_um: float, pixel_um: float) -> float:
    """λ·d/p² relative to the nominal phase optics (0.521 µm, d = 2 µm, 0.21 µm pixels: 23.6)."""
    n = _NOMINAL_PHASE
    return (wavelength_um * defocus_um / pixel_um**2) / (n.wavelength_um * n.defocus_um / n.pixel_um**2)


class SROpticsRange(BaseModel):
    """Microscopes and noise a widefield → SIM model should cover; each pair draws its own from these ranges."""

    model_config = ConfigDict(extra="forbid")

    na: tuple[float, float] = Field((1.2, 1.49), description="detection NA, uniform range (must stay < 1.515, oil)")
    wavelength_um: tuple[float, float] = Field((0.45, 0.70), description="emission wavelength in µm, uniform range")
    wf_pixel_um: tuple[float, float] = Field(
        (0.060, 0.110), description="widefield camera pixel in the sample in µm, uniform range"
    )
    psf_width_factor: tuple[float, float] = Field(
        (0.6, 1.6), description="keep draws whose PSF width in WF pixels is within this × the nominal (3.25 px)"
    )
    photons: tuple[float, float] = Field(
        (10.0, 1000.0), description="foreground photons per pixel and raw frame, log-uniform range"
    )
    background: tuple[float, float] = Field(
        (0.0, 0.10), description="smooth background as a fraction of the peak widefield signal, uniform range"
    )
    read_noise_counts: tuple[float, float] = Field(
        (1.0, 15.0), description="read noise per raw frame, σ in ADU (0.6026 e⁻/ADU), uniform range"
    )

    @field_validator("na")
    @classmethod
    def _na(cls, v: tuple[float, float]) -> tuple[float, float]:
        _check_range("na", v, 0.0)
        if v[0] <= 0 or v[1] >= _NOMINAL_SR.immersion_index:
            raise ValueError(
                f"na={v} must lie in (0, {_NOMINAL_SR.immersion_index}) (NA < n of the immersion oil); e.g. (1.2, 1.49)"
            )
        return v

    @field_validator("wavelength_um", "wf_pixel_um")
    @classmethod
    def _lengths(cls, v: tuple[float, float], info) -> tuple[float, float]:
        _check_range(info.field_name, v, 0.0)
        for x in v:
            _check_um(info.field_name, x, 5.0)
        return v

    @field_validator("psf_width_factor", "photons")
    @classmethod
    def _positive(cls, v: tuple[float, float], info) -> tuple[float, float]:
        _check_range(info.field_name, v, 0.0)
        if v[0] <= 0:
            raise ValueError(f"{info.field_name}={v} must be > 0")
        return v

    @field_validator("background")
    @classmethod
    def _background(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range("background", v, 0.0, 1.0)

    @field_validator("read_noise_counts")
    @classmethod
    def _read_noise(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range("read_noise_counts", v, 0.0)

    @model_validator(mode="after")
    def _reachable(self) -> SROpticsRange:
        lo = psf_width_factor(self.na[1], self.wavelength_um[0], self.wf_pixel_um[1])
        hi = psf_width_factor(self.na[0], self.wavelength_um[1], self.wf_pixel_um[0])
        if hi < self.psf_width_factor[0] or lo > self.psf_width_factor[1]:
            raise ValueError(
                f"no optics in these ranges give a PSF width within psf_width_factor={self.psf_width_factor}: "
                f"NA, wavelength and pixel span {lo:.2f}–{hi:.2f}× the nominal width; widen the ranges"
            )
        for na in self.na:
            for lam in self.wavelength_um:
                for px in self.wf_pixel_um:
                    if px >= lam / (2 * na):
                        raise ValueError(
                            f"wf_pixel_um up to {px} µm does not sample the widefield cutoff 2NA/λ at NA {na}, "
                            f"λ {lam} µm (the SIM pixel p/2 could not hold any SIM frequency); lower wf_pixel_um"
                        )
        return self


class PhaseOpticsRange(BaseModel):
    """Two-shot defocus set-ups a phase model should cover; each pair draws its own from these ranges."""

    model_config = ConfigDict(extra="forbid")

    defocus_um: tuple[float, float] = Field((1.0, 4.0), description="defocus d in µm (planes at ±d), log-uniform")
    wavelength_um: tuple[float, float] = Field((0.45, 0.65), description="illumination wavelength in µm, uniform")
    pixel_um: tuple[float, float] = Field((0.15, 0.30), description="camera pixel in the sample in µm, uniform")
    fresnel_factor: tuple[float, float] = Field(
        (0.5, 2.0), description="keep draws whose λ·d/p² is within this × the nominal (23.6)"
    )
    absorption: tuple[float, float] = Field(
        (0.0, 0.1), description="weak absorption: amplitude = exp(−a·φ/max φ), a uniform in this range"
    )
    noise_xi: tuple[float, float] = Field(
        (0.0, 0.2), description="additive noise N(ξ, ξ) on both planes, ξ uniform in this range"
    )

    @field_validator("defocus_um", "wavelength_um", "pixel_um")
    @classmethod
    def _lengths(cls, v: tuple[float, float], info) -> tuple[float, float]:
        _check_range(info.field_name, v, 0.0)
        upper = 5.0 if info.field_name == "wavelength_um" else 1000.0
        for x in v:
            _check_um(info.field_name, x, upper)
        return v

    @field_validator("fresnel_factor")
    @classmethod
    def _positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        _check_range("fresnel_factor", v, 0.0)
        if v[0] <= 0:
            raise ValueError(f"fresnel_factor={v} must be > 0")
        return v

    @field_validator("absorption", "noise_xi")
    @classmethod
    def _non_negative(cls, v: tuple[float, float], info) -> tuple[float, float]:
        return _check_range(info.field_name, v, 0.0)

    @model_validator(mode="after")
    def _reachable(self) -> PhaseOpticsRange:
        lo = fresnel_factor(self.defocus_um[0], self.wavelength_um[0], self.pixel_um[1])
        hi = fresnel_factor(self.defocus_um[1], self.wavelength_um[1], self.pixel_um[0])
        if hi < self.fresnel_factor[0] or lo > self.fresnel_factor[1]:
            raise ValueError(
                f"no set-up in these ranges gives λ·d/p² within fresnel_factor={self.fresnel_factor}: defocus, "
                f"wavelength and pixel span {lo:.2f}–{hi:.2f}× the nominal value; widen the ranges"
            )
        return self


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def sr_pattern_spacing(na: float, wavelength_um: float, wf_pixel_um: float, immersion_index: float = 1.515) -> float:
    """SIM line spacing Λ for drawn optics: k₀ = 1.145·ρc, capped by 2n/λ_ex and by the SIM grid (ρc + k₀ ≤ 1/p)."""
    rho_c = 2 * na / wavelength_um
    excitation = wavelength_um - STOKES_SHIFT_UM
    k0 = min(PATTERN_RATIO * rho_c, 2 * immersion_index / excitation * 0.999, (1 / wf_pixel_um - rho_c) * 0.999)
    return 1.0 / k0


def draw_sr_settings(optics: SROpticsRange, rng: np.random.Generator, base: SRSimulation | None = None) -> SRSimulation:
    """One microscope and noise level from ``optics``; fields not drawn (structure, frames, gain…) are ``base``'s."""
    base = base or SRSimulation()
    for _ in range(MAX_DRAWS):
        na = float(rng.uniform(*optics.na))
        lam = float(rng.uniform(*optics.wavelength_um))
        px = float(rng.uniform(*optics.wf_pixel_um))
        lo, hi = optics.psf_width_factor
        if lo <= psf_width_factor(na, lam, px) <= hi:
            break
    else:  # pragma: no cover - the validator makes the accepted region non-empty
        raise ValueError(f"no draw within psf_width_factor={optics.psf_width_factor} after {MAX_DRAWS} tries")
    photons = _log_uniform(rng, *optics.photons)
    update: dict[str, Any] = {
        "na": na,
        "wavelength_um": lam,
        "excitation_wavelength_um": lam - STOKES_SHIFT_UM,
        "wf_pixel_um": px,
        "pattern_spacing_um": sr_pattern_spacing(na, lam, px, base.immersion_index),
        "photons": (photons, photons),
        "background": (float(rng.uniform(*optics.background)),) * 2,
        "read_noise_counts": float(rng.uniform(*optics.read_noise_counts)),
    }
    return SRSimulation.model_validate({**base.model_dump(), **update})


def simulate_sr_pair_random(
    optics: SROpticsRange, size: int, rng: np.random.Generator, base: SRSimulation | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One WF / SIM pair whose optics and noise are drawn from ``optics`` with ``rng`` (then the pair itself).

    Returns the same as :func:`~napari_cvdm.physics.simulate_sr_pair`; ``info`` adds the drawn optics, the PSF FWHM in
    WF pixels, its factor over the nominal width and the SIM cutoff.
    """
    settings = draw_sr_settings(optics, rng, base)
    wf, sim, info = simulate_sr_pair(settings, size, rng)
    info.update(
        {
            "na": settings.na,
            "wavelength_um": settings.wavelength_um,
            "read_noise_counts": settings.read_noise_counts,
            "pattern_spacing_um": settings.pattern_spacing_um,
            "psf_fwhm_px": sr_psf_fwhm_px(settings.na, settings.wavelength_um, settings.wf_pixel_um),
            "psf_width_factor": psf_width_factor(settings.na, settings.wavelength_um, settings.wf_pixel_um),
            "sim_cutoff_per_um": 2 * settings.na / settings.wavelength_um + 1 / settings.pattern_spacing_um,
        }
    )
    return wf, sim, info


def draw_phase_settings(
    optics: PhaseOpticsRange, rng: np.random.Generator, base: PhaseSimulation | None = None
) -> tuple[PhaseSimulation, float]:
    """One defocus set-up from ``optics`` and the pair's noise level ξ (``base`` gives the rest; its noise is off)."""
    base = base or PhaseSimulation()
    for _ in range(MAX_DRAWS):
        d = _log_uniform(rng, *optics.defocus_um)
        lam = float(rng.uniform(*optics.wavelength_um))
        px = float(rng.uniform(*optics.pixel_um))
        if optics.fresnel_factor[0] <= fresnel_factor(d, lam, px) <= optics.fresnel_factor[1]:
            break
    else:  # pragma: no cover - the validator makes the accepted region non-empty
        raise ValueError(f"no draw within fresnel_factor={optics.fresnel_factor} after {MAX_DRAWS} tries")
    update = {
        "defocus_um": d,
        "wavelength_um": lam,
        "pixel_um": px,
        "absorption": float(rng.uniform(*optics.absorption)),
        "noise_max": 0.0,
    }
    xi = float(rng.uniform(*optics.noise_xi))
    return PhaseSimulation.model_validate({**base.model_dump(), **update}), xi


def simulate_phase_pair_random(
    optics: PhaseOpticsRange, size: int, rng: np.random.Generator, base: PhaseSimulation | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One defocus stack and its phase with the set-up and noise drawn from ``optics`` with ``rng``.

    ``info`` adds the drawn wavelength, absorption, λ·d/p² and its factor over the nominal.  A model conditioned on
    a TIE estimate needs the estimate computed with these optics (``info``), not the model header's.
    """
    settings, xi = draw_phase_settings(optics, rng, base)
    stack, phase, info = simulate_phase_pair(settings, size, rng)
    if xi > 0:
        stack = (stack + rng.normal(xi, xi, size=stack.shape)).astype(np.float32)
    s = settings
    info.update(
        {
            "noise_xi": xi,
            "wavelength_um": s.wavelength_um,
            "absorption": s.absorption,
            "lambda_d_over_p2": s.wavelength_um * s.defocus_um / s.pixel_um**2,
            "fresnel_factor": fresnel_factor(s.defocus_um, s.wavelength_um, s.pixel_um),
        }
    )
    return stack, phase, info
