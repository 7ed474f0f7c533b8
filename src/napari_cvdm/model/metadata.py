"""What a model file says about the data it was trained on: task, physics, normalisation, sampler defaults.

Everything a user needs to apply a model correctly travels with the weights, so that inference normalises and
interprets images exactly as training did.  Units are in the field names (µm, rad).
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Task = Literal["super-resolution", "phase", "generic"]
TieMethod = Literal["fft", "us-tie"]  # the classical estimate a phase model is conditioned on
# the samplers: the γ-sampler, Algorithm 2 with exact per-step decays, and the paper's literal Euler form of it
SamplerMethod = Literal["gamma", "ancestral", "ancestral-euler"]


# The bundled models' nominal optics (physics.SRSimulation / PhaseSimulation defaults); the PSF width and λ·d/p²
# ranges of physics.SROpticsRange / PhaseOpticsRange are relative to these.
PSF_FWHM_FACTOR = 0.514  # widefield Airy PSF FWHM = 0.514·λ/NA
NOMINAL_SR = {"pixel_um": 0.0626, "wavelength_um": 0.515, "numerical_aperture": 1.3}
NOMINAL_PHASE = {"pixel_um": 0.21, "wavelength_um": 0.521, "defocus_um": 2.0}
DEFAULT_TOLERANCE = 0.10  # ± of the PSF width in pixels (SR) or λ·d/p² (phase) stated for single-optics models
_LENGTH_UNITS = {"nm": 1e-3, "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "mm": 1e3}


def parse_length_um(value: Any, name: str = "length", upper_um: float | None = None) -> float | None:
    """A length in µm from a number (µm) or a string with an optional unit: ``"62.6nm"``, ``"0.0626um"``,
    ``"0.0626 µm"``, ``"0.0626"`` (µm).  ``None`` and ``""`` stay ``None``.  A unit-less value above ``upper_um``
    is refused as probably nanometres."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a length, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµμ]*)\s*", str(value))
        if match is None or match.group(2).lower() not in ("", *_LENGTH_UNITS):
            raise ValueError(
                f"{name} {value!r} is not a length; give µm (0.0626) or a unit: 62.6nm, 0.0626um, 0.0626µm"
            )
        number, unit = float(match.group(1)), match.group(2).lower()
    um = number * _LENGTH_UNITS.get(unit, 1.0)
    if not um > 0 or um != um:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if upper_um is not None and um > upper_um:
        hint = f"; if you meant nanometres, write {number:g}nm" if not unit else ""
        raise ValueError(f"{name} {value!r} = {um:g} µm is implausibly large (at most {upper_um:g} µm){hint}")
    return um


def psf_fwhm_px(wavelength_um: float, numerical_aperture: float, pixel_um: float) -> float:
    """FWHM of the widefield Airy PSF, 0.514·λ/NA, in input pixels (the quantity an SR network sees)."""
    return PSF_FWHM_FACTOR * wavelength_um / numerical_aperture / pixel_um


def fresnel_q(wavelength_um: float, defocus_um: float, pixel_um: float) -> float:
    """λ·d/p²: in pixel units the paraxial two-shot intensities depend on this number only."""
    return wavelength_um * defocus_um / pixel_um**2


class ValidOptics(BaseModel):
    """The optics and noise a model covers: outside them it is refused, or the data are resampled when that is
    exact (:mod:`napari_cvdm.inference.optics`).

    The ranges that decide are relative to the header's own nominal optics (``input_pixel_um``, ``wavelength_um``,
    ``numerical_aperture``, ``defocus_um``): super-resolution by the PSF width in input pixels (∝ λ/(NA·p)),
    phase by λ·d/p².  The absolute ranges of the training data and its noise are stated for the user to read.
    """

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    basis: str = Field("", description="how the range was set: training optics, a measured tolerance, …")
    psf_width_factor: tuple[float, float] | None = Field(
        None, description="SR: PSF FWHM in input pixels, as a factor of the nominal optics' (low, high)"
    )
    fresnel_factor: tuple[float, float] | None = Field(
        None, description="phase: λ·d/p² as a factor of the nominal optics' (low, high)"
    )
    pixel_um: tuple[float, float] | None = Field(None, description="input pixels of the training data (µm)")
    wavelength_um: tuple[float, float] | None = Field(
        None, description="emission / illumination λ of the training data"
    )
    numerical_aperture: tuple[float, float] | None = None
    defocus_um: tuple[float, float] | None = None
    photons_per_frame: tuple[float, float] | None = Field(None, description="SR: foreground photons per raw frame")
    read_noise_counts: tuple[float, float] | None = Field(None, description="SR: camera read noise σ (ADU per frame)")
    noise_xi: tuple[float, float] | None = Field(None, description="phase: additive noise N(ξ, ξ) level ξ")

    @model_validator(mode="after")
    def _ordered(self) -> ValidOptics:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, tuple) and not 0 <= value[0] <= value[1]:
                raise ValueError(f"valid_optics.{name}={value} must be (low, high) with 0 ≤ low ≤ high")
        return self


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

    ``noise_xi`` (version 2): the range of the phase noise level ξ *estimated from the input*
    (:func:`~napari_cvdm.inference.noise_check.estimated_noise_xi`) of the calibration images this one was fitted
    on.  Several calibrations of one (method, η, steps) with disjoint ranges may coexist, next to a pooled one
    (``None``, fitted on all images), which is the fallback.  Version 1 files have no condition and load as pooled.

    ``psf_factor`` (version 3): likewise, for a super-resolution model trained over many microscopes, the range of
    the PSF width (in the network's input pixels, as a factor of the model's own optics) of its calibration images;
    a reconstruction picks it by the optics it runs with.  A calibration has at most one such condition.

    ``fresnel_factor`` (version 5): for a phase model, the range of λ·d/p² (as a factor of the model's) of set-ups
    that reconstruction resamples to the model's (outside its covered range); such a calibration applies to those
    runs only, in place of the ones fitted at the model's own set-up.

    ``score_feature`` (version 3): the knots are in the score u = s^(1 − w)·f^w, the raw std s blended (weight
    ``feature_weight``) with the local structure of the mean or the nearness to the plane's edge f (width
    ``feature_px``; :mod:`~napari_cvdm.sampling.calibration_score`); ``"spread"`` (versions 1–2) is s alone.
    ``"detail"`` (version 4): f is the raw std itself with its variance smoothed over ``feature_px`` only;
    ``"coarse"`` (version 4): f is the RMS of the mean's band ``feature_px``/2–8·``feature_px`` averaged over
    ``feature_px``.
    """

    model_config = ConfigDict(extra="forbid")

    version: int = Field(
        5,
        ge=1,
        description="calibration format version (2: optional noise_xi condition; 3: optional score feature; 4: the "
        "detail feature; 5: optional fresnel_factor condition)",
    )
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
    noise_xi: tuple[float, float] | None = Field(
        None, description="phase: (low, high) of the estimated noise ξ of the images it applies to; None: pooled"
    )
    psf_factor: tuple[float, float] | None = Field(
        None,
        description="SR: (low, high) PSF width in the network's input pixels, as a factor of the model's own, of the "
        "images it applies to; None: pooled",
    )
    fresnel_factor: tuple[float, float] | None = Field(
        None,
        description="phase: (low, high) λ·d/p², as a factor of the model's, of the resampled set-ups it applies to; "
        "None: the model's own set-up",
    )
    score_feature: Literal["spread", "structure", "border", "detail", "coarse"] = Field(
        "spread",
        description="what is blended with the raw std in the score: nothing, the mean's structure, the edge, the raw "
        "std at a finer smoothing, the mean's coarse structure",
    )
    feature_weight: float = Field(0.0, ge=0, le=1, description="w of the score s^(1−w)·f^w")
    feature_px: float = Field(
        0.0, ge=0, description="structure, detail, coarse: Gaussian σ of its average; border: its length, px"
    )
    feature_clip_px: float = Field(0.0, ge=0, description="border: distances to the edge beyond this count as this")

    @model_validator(mode="after")
    def _monotone(self) -> Calibration:
        if self.score_feature == "border" and self.feature_weight > 0 and self.feature_px <= 0:
            raise ValueError("a border score needs its length feature_px > 0")
        conditions = ("noise_xi", "psf_factor", "fresnel_factor")
        for name in conditions:
            value = getattr(self, name)
            if value is not None and not 0 <= value[0] <= value[1]:
                raise ValueError(f"{name}={value} must be (low, high) with 0 ≤ low ≤ high")
        if sum(getattr(self, name) is not None for name in conditions) > 1:
            raise ValueError("a calibration is conditioned on one of the noise ξ, the PSF width or the set-up, at most")
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
    valid_optics: ValidOptics | None = Field(
        None,
        description="the optics and noise the model covers (None: derived from the nominal optics and the "
        "training record, see covered_optics())",
    )

    @property
    def output_pixel_um(self) -> float | None:
        return None if self.input_pixel_um is None else self.input_pixel_um / self.scale_factor

    @property
    def input_psf_fwhm_px(self) -> float | None:
        """The PSF FWHM of an SR model's own optics in its input pixels, 0.514·λ/(NA·p) (None: not an SR model, or
        its header states no wavelength, NA or pixel size)."""
        optics = (self.wavelength_um, self.numerical_aperture, self.input_pixel_um)
        if self.task != "super-resolution" or None in optics:
            return None
        return psf_fwhm_px(self.wavelength_um, self.numerical_aperture, self.input_pixel_um)  # type: ignore[arg-type]

    def covered_optics(self) -> ValidOptics | None:
        """The stated :class:`ValidOptics`, or for files without one: the range of ``training["optics_range"]``
        (``train --simulate-optics random``), else the nominal optics ±10 % (PSF width in pixels for SR, λ·d/p²
        for phase) with the noise of the bundled simulators.  None for a model that states no optics."""
        if self.valid_optics is not None:
            return self.valid_optics
        if self.input_pixel_um is None or self.task == "generic":
            return None
        tol = (round(1 - DEFAULT_TOLERANCE, 6), round(1 + DEFAULT_TOLERANCE, 6))
        drawn = self.training.get("optics_range") or {}
        if self.task == "super-resolution":
            if drawn.get("model") == "SROpticsRange" and None not in (self.wavelength_um, self.numerical_aperture):
                # the range's PSF factors are relative to the simulator's nominal optics: re-express them
                nominal = psf_fwhm_px(
                    NOMINAL_SR["wavelength_um"], NOMINAL_SR["numerical_aperture"], NOMINAL_SR["pixel_um"]
                )
                low, high = (f * nominal / self.input_psf_fwhm_px for f in drawn["psf_width_factor"])
                return ValidOptics(
                    basis="the randomised optics of its training data (physics.SROpticsRange)",
                    psf_width_factor=(low, high),
                    pixel_um=tuple(drawn["wf_pixel_um"]),
                    wavelength_um=tuple(drawn["wavelength_um"]),
                    numerical_aperture=tuple(drawn["na"]),
                    photons_per_frame=tuple(drawn["photons"]),
                    read_noise_counts=tuple(drawn["read_noise_counts"]),
                )
            return ValidOptics(
                basis="trained at single nominal optics; stated range: PSF width in input pixels within ±10 % of "
                "nominal",
                psf_width_factor=tol,
                pixel_um=(self.input_pixel_um, self.input_pixel_um),
                wavelength_um=None if self.wavelength_um is None else (self.wavelength_um, self.wavelength_um),
                numerical_aperture=None
                if self.numerical_aperture is None
                else (self.numerical_aperture, self.numerical_aperture),
                photons_per_frame=(15.0, 600.0),
                read_noise_counts=(10.0, 10.0),
            )
        if drawn.get("model") == "PhaseOpticsRange":
            return ValidOptics(
                basis="the randomised set-ups of its training data (physics.PhaseOpticsRange)",
                fresnel_factor=tuple(drawn["fresnel_factor"]),
                pixel_um=tuple(drawn["pixel_um"]),
                wavelength_um=tuple(drawn["wavelength_um"]),
                defocus_um=tuple(drawn["defocus_um"]),
                noise_xi=tuple(drawn["noise_xi"]),
            )
        return ValidOptics(
            basis="trained at single nominal optics; stated range: λ·d/p² within ±10 % of nominal",
            fresnel_factor=tol,
            pixel_um=(self.input_pixel_um, self.input_pixel_um),
            wavelength_um=None if self.wavelength_um is None else (self.wavelength_um, self.wavelength_um),
            defocus_um=None if self.defocus_um is None else (self.defocus_um, self.defocus_um),
            noise_xi=(0.0, 0.2),
        )

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
