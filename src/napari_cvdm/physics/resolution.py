"""The resolution a widefield image shows: its incoherent cutoff 2·NA·p/λ in cycles per pixel, fitted blind.

A widefield microscope passes nothing above the incoherent cutoff ρc = 2·NA/λ, and between 0 and ρc it attenuates
the object's spectrum by the OTF of a circular pupil, OTF(ν) = (2/π)(arccos ν − ν√(1 − ν²)), ν = ρ/ρc.  The camera
pixel integrates the light over its square (MTF sinc(fx)·sinc(fy)) before the noise is added, and camera noise
(shot and read noise, independent between pixels) is white.  So the image's radially averaged power spectrum is

    P(ρ) = A · OTF(ρ/ρc)² · MTF_pixel(ρ)² · ρ^−α · exp(−(ρ/ρs)²) + floor,

the object's spectrum taken as a power law with a Gaussian roll-off (small spots and rings fall off before the
cutoff).  :func:`estimate_cutoff` fits ρc by least squares on log P over grids of ρc, α and ρs (A and the floor in
closed form for each), on the image tapered at its borders (so its edges add no power).  On the bench's simulated
widefield images the fitted cutoff is 0.92–1.03× the true one (10th–90th percentiles per row; spot-like CCPs read
lowest), over the optics users have (``physics.SROpticsRange``: NA 1.2–1.49, emission 0.45–0.70 µm, pixels
60–110 nm, 10–1000 photons per frame) 0.97–1.02× (``python benchmarks/resolution_check.py``).  The PSF width in
pixels is ∝ 1/ρc, so the ratio of the cutoff the stated (or assumed) optics predict to the one the image shows is
how much wider its PSF is than assumed.

It needs structure above the noise (a blank or very dim image gives no estimate) and a spectrum that reaches the
noise floor before the corner of the spectrum (√2/2 cycles per pixel): an image sampled much coarser than Nyquist
shows only that its cutoff lies above what it can show.  A spectrum the model does not fit (its misfit, in units
of the periodogram's own noise, above ``MAX_MISFIT``: half a wave of defocus, whose OTF reverses contrast) gives no
estimate rather than a wrong one; within a quarter wave the cutoff still reads right (``--defocus-waves``).
Aberrations lower the OTF but not its cutoff; a deconvolved or denoised image is not a widefield image, and its fit
says little.  NumPy only; at most the central 512² pixels, ~0.3 s.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["CutoffEstimate", "ResolutionEstimateError", "cutoff_ratio", "cutoffs_agree", "estimate_cutoff"]

MAX_SIDE = 512
TAPER = 0.25  # each border's share of the window's raised-cosine taper
MIN_SIDE = 32
N_BINS = 96  # radial bins from 0 to √2/2 cycles per pixel (the corner of the spectrum)
LOWEST = 0.04  # cycles/px: below this the spectrum is the field of view's and the background's, left out
CUTOFFS = np.linspace(0.08, 0.70, 249)  # the fitted cutoff's grid, cycles/px (0.0025 apart)
SLOPES = np.arange(0.0, 3.51, 0.25)  # the object spectrum's power-law exponents α tried
ROLLOFFS = np.array([np.inf, 1.0, 0.7, 0.5, 0.35])  # cycles/px: the object spectrum's Gaussian roll-off tried
MIN_CONTRAST = 6.0  # the fitted signal must reach this × the noise floor at half the cutoff
# the fit's RMS log error in units of the periodogram's noise above which no estimate is given: in-focus images read
# 1.5 (median), half a wave of defocus 3–6
MAX_MISFIT = 3.5
TOP_MARGIN = 0.02  # a cutoff this close to the grid's top is "at least" that
NYQUIST = 0.5  # cycles per pixel
FINER = 1.15  # a fitted cutoff above this × the expected one: detail the assumed optics cannot pass
COARSER = 0.87  # below this ×: the fit reads spot-like samples' cutoffs down to 0.90× (benchmarks/resolution_check.py)


class ResolutionEstimateError(ValueError):
    """The image gives no cutoff estimate (too small, constant, too little structure above the noise)."""


@dataclass(frozen=True)
class CutoffEstimate:
    """The incoherent cutoff an image shows and how well the fit holds."""

    cutoff_cycles_per_px: float  # 2·NA·p/λ as the image shows it (a lower bound where ``at_least``)
    at_least: bool  # the spectrum carries signal up to the highest cutoff fitted: the true one is higher
    contrast: float  # fitted signal / noise floor at half the cutoff
    slope: float  # the object spectrum's fitted power-law exponent α
    note: str
    misfit: float = 0.0  # RMS over the fitted bins of log(model / power) × √(pixels in the bin): ~1 for a perfect fit

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _otf(nu: np.ndarray) -> np.ndarray:
    """The incoherent OTF of a circular pupil at ν = ρ/ρc (0 at and beyond 1)."""
    s = np.clip(nu, 0.0, 1.0)
    return (2.0 / np.pi) * (np.arccos(s) - s * np.sqrt(1.0 - s * s))


def _window(n: int) -> np.ndarray:
    """A Tukey window: flat in the middle, raised-cosine tapers of ``TAPER`` × n at either end, so the image's
    borders leak nothing into the high frequencies (a cut edge spreads power ∝ ρ⁻² over the whole spectrum)."""
    ramp = max(int(TAPER * n), 1)
    window = np.ones(n)
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    window[:ramp], window[n - ramp :] = rise, rise[::-1]
    return window


def _radial_power(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ρ cycles/px, mean power, pixel count, mean pixel-integration MTF²) per radial bin of the tapered image's
    spectrum.  A camera pixel integrates the light over its square, multiplying the spectrum by
    sinc(fx)·sinc(fy) before the noise is added: the signal's spectrum has it, the noise floor does not."""
    taper = _window(image.shape[0])[:, None] * _window(image.shape[1])[None, :]
    centred = image - (image * taper).sum() / taper.sum()
    power = np.abs(np.fft.rfft2(centred * taper)) ** 2 / (taper**2).sum()
    fy, fx = np.fft.fftfreq(image.shape[0])[:, None], np.fft.rfftfreq(image.shape[1])[None, :]
    rho = np.hypot(fy, fx)
    pixel_mtf2 = (np.sinc(fy) * np.sinc(fx)) ** 2
    edges = np.linspace(0.0, math.sqrt(0.5), N_BINS + 1)
    index = np.clip(np.digitize(rho, edges) - 1, 0, N_BINS - 1)
    counts = np.bincount(index.ravel(), minlength=N_BINS)
    sums = np.bincount(index.ravel(), power.ravel(), minlength=N_BINS)
    mtf2 = np.bincount(index.ravel(), pixel_mtf2.ravel(), minlength=N_BINS) / np.maximum(counts, 1)
    return (edges[:-1] + edges[1:]) / 2, sums / np.maximum(counts, 1), counts, mtf2


def estimate_cutoff(image: np.ndarray) -> CutoffEstimate:
    """The incoherent cutoff (cycles per pixel) of one widefield plane (H, W) in any intensity units (see the
    module text).  Raises :class:`ResolutionEstimateError` when the image gives no estimate."""
    arr = np.asarray(image)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ResolutionEstimateError(f"needs a real 2-D image, got shape {arr.shape} of {arr.dtype}")
    h, w = arr.shape
    r, c = max((h - MAX_SIDE) // 2, 0), max((w - MAX_SIDE) // 2, 0)
    arr = arr[r : r + MAX_SIDE, c : c + MAX_SIDE].astype(np.float64)
    if min(arr.shape) < MIN_SIDE:
        raise ResolutionEstimateError(
            f"the image is {h}×{w} px; the resolution fit needs at least {MIN_SIDE}×{MIN_SIDE}"
        )
    if not np.all(np.isfinite(arr)) or np.ptp(arr) == 0:
        raise ResolutionEstimateError("the image is constant or holds NaN or infinite values")
    rho, power, counts, pixel_mtf2 = _radial_power(arr)
    keep = (rho > LOWEST) & (counts > 0) & (power > 0)
    rho, power, pixel_mtf2, counts = rho[keep], power[keep], pixel_mtf2[keep], counts[keep]
    log_power = np.log(power)
    weights = 1.0 / power  # relative errors: every bin counts alike, bright or dim
    best: tuple[Any, ...] | None = None  # residual, cutoff, slope, roll-off, A, floor, fitted spectrum
    for slope, rolloff in itertools.product(SLOPES, ROLLOFFS):
        spectrum = pixel_mtf2 * rho ** (-slope) * np.exp(-((rho / rolloff) ** 2))
        shapes = _otf(rho[None, :] / CUTOFFS[:, None]) ** 2 * spectrum[None, :]  # (cutoffs, bins)
        # weighted least squares of power ≈ A·shape + floor, for every cutoff at once (2×2 normal equations)
        s_gg = (weights**2 * shapes**2).sum(1)
        s_g1 = (weights**2 * shapes).sum(1)
        s_11 = (weights**2).sum()
        s_gp = (weights**2 * shapes * power).sum(1)
        s_1p = (weights**2 * power).sum()
        det = s_gg * s_11 - s_g1**2
        with np.errstate(divide="ignore", invalid="ignore"):
            amp = (s_gp * s_11 - s_g1 * s_1p) / det
            floor = (s_gg * s_1p - s_g1 * s_gp) / det
        valid = (amp > 0) & (floor > 0) & (det > 0)
        if not valid.any():
            continue
        model = amp[:, None] * shapes + floor[:, None]
        residual = np.where(valid, ((np.log(np.maximum(model, 1e-300)) - log_power[None, :]) ** 2).sum(1), np.inf)
        k = int(np.argmin(residual))
        if best is None or residual[k] < best[0]:
            best = (residual[k], float(CUTOFFS[k]), float(slope), float(rolloff), amp[k], floor[k], model[k])
    if best is None:
        raise ResolutionEstimateError("the power spectrum fits no band-limited image plus white noise")
    _, cutoff, slope, rolloff, amp, floor, fitted = best
    misfit = math.sqrt(float(np.mean(counts * (np.log(fitted) - log_power) ** 2)))
    half = cutoff / 2  # the signal there, relative to the floor (the pixel MTF² at (ρ/√2, ρ/√2) stands for its mean)
    spectrum = np.sinc(half / math.sqrt(2)) ** 4 * half ** (-slope) * math.exp(-((half / rolloff) ** 2))
    contrast = float(amp * _otf(np.array([0.5]))[0] ** 2 * spectrum / floor)
    if contrast < MIN_CONTRAST:
        raise ResolutionEstimateError(
            f"too little structure above the noise to see the optics' cutoff (signal {contrast:.1f}× the noise "
            f"floor at half of it; needs ≥ {MIN_CONTRAST:g}×)"
        )
    if misfit > MAX_MISFIT and cutoff < NYQUIST:  # (beyond Nyquist aliasing folds the spectrum: no shape to fit)
        raise ResolutionEstimateError(
            f"the power spectrum does not fit an in-focus widefield image (misfit {misfit:.1f}, at most "
            f"{MAX_MISFIT:g}): out of focus, aberrated or processed?"
        )
    at_least = cutoff >= CUTOFFS[-1] - TOP_MARGIN
    shown = f"≥ {cutoff:.2f}" if at_least else f"{cutoff:.3f}"
    note = (
        f"the image passes detail up to {shown} cycles per pixel (its power spectrum fitted as a widefield OTF "
        f"times the object's spectrum plus white noise; signal {contrast:.0f}× the noise at half the cutoff)"
    )
    return CutoffEstimate(cutoff, bool(at_least), contrast, slope, note, misfit)


def cutoff_ratio(shown: float, expected: float) -> float:
    """The cutoff an image shows over the one its optics predict, both taken up to Nyquist: beyond it an image
    aliases and its cutoff is not measured, so two cutoffs beyond it agree."""
    return min(shown, NYQUIST) / min(expected, NYQUIST)


def cutoffs_agree(shown: float, expected: float) -> bool:
    """Whether a fitted cutoff agrees with the expected one within the fit's error (``COARSER``–``FINER``)."""
    return COARSER <= cutoff_ratio(shown, expected) <= FINER
