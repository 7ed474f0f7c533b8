"""The uncertainty columns of ``napari-cvdm bench``: each test image's error against the model's spread and its
calibrated std, and a row's scores over its images.

Raw (the sample spread): Spearman rank correlation between the pixel-wise std and |error| (does the std map point
at the wrong pixels?), err²/var = mean(err²)/mean(var) (≈ 1 + 1/N for N calibrated samples), the coverage of the
central 90 % Student-t interval of the N-sample mean, and the ENCE over 10 spread bins.  Calibrated (the model's
:class:`~napari_cvdm.model.metadata.Calibration`): Spearman(σ_cal, |err|), err²/σ_cal² (1 when calibrated) and the
coverage of the calibrated central 50 / 90 / 95 % intervals, these as the mean over the row's images with its
standard error; err²/σ_cal² also pooled, mean(err²)/mean(σ_cal²) over all the row's pixels (an image with large
errors weighs more there than in the mean of the images' ratios); and the ENCE over σ_cal bins ("—" where the
model holds no calibration for the sampler run).  Errors are in the units the model's spread describes (phase: rad,
mean removed; SR: the SIM truth normalised by its own percentiles as in training, i.e. network units, not the
min–max units of PSNR).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from ..inference.noise_check import estimated_noise_xi
from ..inference.optics import network_psf_factor, resampled_fresnel_factor
from ..inference.reconstruct import Reconstruction
from ..model.files import TrainedModel
from ..model.metadata import Calibration
from ..sampling.calibration import interval_multiplier
from ..sampling.calibration_bins import select_calibration
from .metrics import (
    calibration_ratio,
    expected_normalized_calibration_error,
    half_width_coverage,
    interval_coverage,
    reliability,
    spearman,
    std_calibration_ratio,
    std_ence,
    std_reliability,
)

# the CVDM rows' uncertainty columns: rank correlation, err²/var (≈ 1 + 1/N calibrated), share of pixels inside the
# central 90 % interval (0.90 calibrated), and ENCE over 10 spread bins (its floor for calibrated N samples is in
# metrics.expected_normalized_calibration_error)
UNCERTAINTY_HEADER = ["Spearman(std, |err|) ↑", "err²/var", "90 % coverage", "ENCE"]
# the same after calibration, from the calibrated error std σ_cal and the calibrated central intervals
CALIBRATED_LEVELS = (0.5, 0.9, 0.95)
CALIBRATED_HEADER = [
    "Spearman(σ_cal, |err|) ↑",
    "err²/σ_cal²",
    "err²/σ_cal² (pooled)",
    *(f"cal. {round(100 * q)} % coverage" for q in CALIBRATED_LEVELS),
    "ENCE (σ_cal)",
]
NOT_CALIBRATED = "—"
STANDARD_ERROR_NOTE = (
    "Calibrated err²/σ_cal² and coverages: the mean over the row's images ± its standard error (std over the images "
    "/ √n). One image's pixels share one draw of its error field, so the number of images sets how precisely a row "
    "measures a bar: a row whose 90 % coverage is 0.96 ± 0.02 does not show that its intervals are too wide."
)


@dataclass
class Uncertainty:
    """Per-image uncertainty scores of one row of a benchmark, raw and (when the model is calibrated) calibrated, the
    (mean std, RMSE) of every image for the task-wide image ranking, and the pixels for the reliability diagram."""

    n_samples: int = 8
    spearman: list[float] = field(default_factory=list)
    calibration: list[float] = field(default_factory=list)
    coverage_90: list[float] = field(default_factory=list)
    ence: list[float] = field(default_factory=list)
    per_image: list[tuple[float, float]] = field(default_factory=list)
    cal_spearman: list[float] = field(default_factory=list)
    cal_ratio: list[float] = field(default_factory=list)
    cal_coverage: dict[float, list[float]] = field(default_factory=lambda: {q: [] for q in CALIBRATED_LEVELS})
    cal_ence: list[float] = field(default_factory=list)
    pixels: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = field(default_factory=list)

    def add(
        self,
        error: np.ndarray,
        variance: np.ndarray,
        calibrated_std: np.ndarray | None = None,
        half_widths: dict[float, np.ndarray] | None = None,
    ) -> None:
        """One image: error of the mean and raw sample variance, and optionally σ_cal and the calibrated interval
        half-widths by level, all in the metric's units."""
        std = np.sqrt(variance)
        self.spearman.append(spearman(std, np.abs(error)))
        self.calibration.append(calibration_ratio(error, variance))
        if self.n_samples >= 2:
            self.coverage_90.append(interval_coverage(error, variance, self.n_samples, (0.9,))[0.9])
            self.ence.append(expected_normalized_calibration_error(error, variance, self.n_samples))
        self.per_image.append((float(std.mean()), float(np.sqrt(np.mean(np.square(error))))))
        if calibrated_std is not None:
            self.cal_spearman.append(spearman(calibrated_std, np.abs(error)))
            self.cal_ratio.append(std_calibration_ratio(error, calibrated_std))
            for level, half in (half_widths or {}).items():
                self.cal_coverage[level].append(half_width_coverage(error, half))
            self.cal_ence.append(std_ence(error, calibrated_std))
        flat = lambda a: None if a is None else np.asarray(a, np.float32).ravel()  # noqa: E731
        self.pixels.append((flat(error), flat(variance), flat(calibrated_std)))

    def cells(self) -> list[str]:
        raw = [_fmt(self.spearman), _fmt(self.calibration, 2), _fmt(self.coverage_90, 2), _fmt(self.ence, 2)]
        if not self.cal_ratio:
            return [*raw, *[NOT_CALIBRATED] * len(CALIBRATED_HEADER)]
        coverage = [_fmt_se(self.cal_coverage[q], 2, NOT_CALIBRATED) for q in CALIBRATED_LEVELS]
        pooled = f"{self.pooled_ratio():.2f}"
        return [*raw, _fmt(self.cal_spearman), _fmt_se(self.cal_ratio, 2), pooled, *coverage, _fmt(self.cal_ence, 2)]

    def pooled_ratio(self) -> float:
        """mean(err²) / mean(σ_cal²) over all the row's pixels (NaN when not calibrated)."""
        if not self.pixels or any(c is None for _, _, c in self.pixels):
            return float("nan")
        err = np.concatenate([e for e, _, _ in self.pixels]).astype(np.float64)
        cal = np.concatenate([c for _, _, c in self.pixels]).astype(np.float64)
        return std_calibration_ratio(err, cal)

    def reliability(self, label: str, bins: int = 10) -> dict:
        """Reliability-diagram bins over all pixels of the row: predicted error std vs RMS error, raw and calibrated.

        Raw: predicted std √(var·(1 + 1/N)) of the N-sample mean; calibrated: σ_cal (None when not calibrated)."""
        err = np.concatenate([e for e, _, _ in self.pixels]) if self.pixels else np.zeros(0)
        keys = ("predicted_std", "rmse", "mean_abs_error", "pixels")
        out: dict = {"row": label, "n_samples": self.n_samples, "raw": [], "calibrated": None}
        if err.size and self.n_samples >= 2:
            var = np.concatenate([v for _, v, _ in self.pixels])
            out["raw"] = [dict(zip(keys, row, strict=True)) for row in reliability(err, var, self.n_samples, bins)]
        if err.size and all(c is not None for _, _, c in self.pixels):
            cal = np.concatenate([c for _, _, c in self.pixels])
            out["calibrated"] = [dict(zip(keys, row, strict=True)) for row in std_reliability(err, cal, bins)]
        return out


def run_calibration(model: TrainedModel, result: Reconstruction, image: np.ndarray | None) -> Calibration | None:
    """The calibration of ``model`` that reconstruct() applies to ``result``'s run: for its sampler (method, η,
    steps; the nearest steps without an exact match), the bin of the noise ξ estimated from the input plane
    ``image`` (phase) or of the run's PSF width (SR), as held; None when the model holds none for the sampler."""
    settings = result.settings
    xi = None if image is None else estimated_noise_xi(model.info.task, image)
    psf = network_psf_factor(result.optics or {})
    setup = resampled_fresnel_factor(result.optics or {})
    cal, _ = select_calibration(
        model.info.calibrations, settings["method"], settings["eta"], settings["steps"], xi, psf_factor=psf,
        fresnel_factor=setup,
    )  # fmt: skip
    return cal


def calibrated_interval(
    model: TrainedModel, result: Reconstruction, image: np.ndarray | None = None
) -> tuple[np.ndarray | None, dict[float, np.ndarray]]:
    """σ_cal of a reconstruction and the half-widths of its calibrated central intervals at 50 / 90 / 95 %.

    The interval at ``result.interval_level`` is the reconstruction's own [lower, upper]; the other levels are
    z_q·σ_cal with z_q from the model's calibration for the sampler run (method, η, steps; nearest steps if no exact
    match; for a noise-conditioned phase model, by the noise ξ estimated from the input plane ``image``; for an SR
    model calibrated per PSF width, by the run's), as
    reconstruct() picks it.  A level outside the calibrated ones is left out.  ``(None, {})`` when the
    reconstruction is not calibrated.
    """
    if result.calibrated_std is None:
        return None, {}
    cal = run_calibration(model, result, image)
    halves: dict[float, np.ndarray] = {}
    for level in CALIBRATED_LEVELS:
        if result.lower is not None and result.upper is not None and abs(level - result.interval_level) < 1e-9:
            halves[level] = (result.upper - result.lower) / 2
        elif cal is not None:
            with contextlib.suppress(ValueError):  # a level outside the calibrated ones
                halves[level] = interval_multiplier(cal, level) * result.calibrated_std
    return result.calibrated_std, halves


def image_ranking_note(rows: list[Uncertainty], n_samples: int) -> list[str]:
    """One sentence: Spearman over all test images between mean std and RMSE, and the ideal calibration ratio."""
    pairs = [p for row in rows for p in row.per_image]
    if len(pairs) < 3:
        return []
    std, rmse = np.array(pairs).T
    return [
        f"Over all {len(pairs)} test images, Spearman(image's mean std, image's RMSE) = {spearman(std, rmse):.2f}. "
        f"A calibrated {n_samples}-sample mean has err²/var ≈ {1 + 1 / n_samples:.2f}."
    ]


def _fmt(values: list[float], digits: int = 3, empty: str = "–") -> str:
    return f"{np.nanmean(values):.{digits}f}" if values else empty


def _fmt_se(values: list[float], digits: int = 2, empty: str = "–") -> str:
    """The row's mean over its images ± its standard error (std over the images / √n), where there are 2 or more:
    an image's pixels share one draw of the error field, so the images, not the pixels, are the independent units
    that set how precisely the row measures a calibration bar."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        return _fmt(values, digits, empty)
    se = float(finite.std(ddof=1) / np.sqrt(finite.size))
    return f"{finite.mean():.{digits}f} ± {se:.{digits}f}"
