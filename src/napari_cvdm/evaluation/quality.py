"""``napari-cvdm bench``: the default models against the classical baselines on a fixed held-out simulated set.

The held-out set is regenerated from seeds ≥ 10 000, which training never uses (training sets use
``SeedSequence(simulate_seed)`` with small seeds).  Phase: 256² pairs, d = 2 µm, photos and procedural cells, with
and without the training noise, plus ``skimage.data.cell()`` — a real quantitative phase image that is reserved for
evaluation — propagated with our simulator.  SR: WF 128² → SIM 256² for each structure family, photons
log-uniform in 15–600.  Metrics: :mod:`napari_cvdm.evaluation.metrics` (phase: mean removed, MAE in rad, MS-SSIM with
data_range 3.5 rad; SR: per-image min–max normalisation as DL-SR, PSNR, MS-SSIM, decorrelation resolution in nm
and the FRC resolution against the SIM truth in nm, which amplified noise cannot improve).
Uncertainty, in the metric's units: Spearman rank correlation between the pixel-wise standard deviation and the
absolute error of the mean (does the std map point at the wrong pixels?), the calibration ratio mean(err²)/mean(var)
(≈ 1 + 1/N for N calibrated samples; larger: overconfident), the share of pixels whose truth lies in the central
90 % interval of the N-sample mean (Student-t, 0.90 when calibrated), the ENCE over 10 bins of the predicted spread
(the reliability diagram in one number), and, over all test images of a task, Spearman between each image's mean
std and its RMSE (does the model know which images it gets wrong?).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..inference.reconstruct import reconstruct
from ..model.files import TrainedModel
from ..physics import (
    STRUCTURES,
    PhaseSimulation,
    SRSimulation,
    bicubic_upsample,
    richardson_lucy,
    simulate_phase_pair,
    simulate_sr_pair,
    tie_fft,
    two_shot,
    us_tie,
)
from .metrics import (
    calibration_ratio,
    decorrelation_resolution,
    expected_normalized_calibration_error,
    frc_resolution,
    interval_coverage,
    mae,
    ms_ssim,
    psnr,
)
from .report import Example, Table

# the CVDM rows' uncertainty columns: rank correlation, err²/var (≈ 1 + 1/N calibrated), share of pixels inside the
# central 90 % interval (0.90 calibrated), and ENCE over 10 spread bins (its floor for calibrated N samples is in
# metrics.expected_normalized_calibration_error)
UNCERTAINTY_HEADER = ["Spearman(std, |err|) ↑", "err²/var", "90 % coverage", "ENCE"]
TEST_SEED_PHASE = 10_000
TEST_SEED_SR = 10_001


@dataclass
class Uncertainty:
    """Per-image uncertainty scores of one row of a benchmark, and the (mean std, RMSE) of every image for the
    task-wide image ranking."""

    n_samples: int = 8
    spearman: list[float] = field(default_factory=list)
    calibration: list[float] = field(default_factory=list)
    coverage_90: list[float] = field(default_factory=list)
    ence: list[float] = field(default_factory=list)
    per_image: list[tuple[float, float]] = field(default_factory=list)

    def add(self, error: np.ndarray, variance: np.ndarray) -> None:
        std = np.sqrt(variance)
        self.spearman.append(spearman(std, np.abs(error)))
        self.calibration.append(calibration_ratio(error, variance))
        if self.n_samples >= 2:
            self.coverage_90.append(interval_coverage(error, variance, self.n_samples, (0.9,))[0.9])
            self.ence.append(expected_normalized_calibration_error(error, variance, self.n_samples))
        self.per_image.append((float(std.mean()), float(np.sqrt(np.mean(np.square(error))))))

    def cells(self) -> list[str]:
        return [_fmt(self.spearman), _fmt(self.calibration, 2), _fmt(self.coverage_90, 2), _fmt(self.ence, 2)]


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


def held_out_rngs(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators of the held-out test set seeded with ``seed`` (≥ 10 000: never trained on)."""
    return [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(n)]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; NaN (undefined) when either is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def _fmt(values: list[float], digits: int = 3) -> str:
    return f"{np.nanmean(values):.{digits}f}" if values else "–"


def phase_cases(n: int) -> list[tuple[str, PhaseSimulation, list[np.random.Generator]]]:
    cases = []
    for noise in (0.0, 0.2):
        for j, source in enumerate(("photos", "cells")):
            label = f"{source}, {'noise-free' if noise == 0 else 'noisy ξ~U(0,0.2)'}"
            rngs = held_out_rngs(TEST_SEED_PHASE + j, n)
            cases.append((label, PhaseSimulation(source=source, noise_max=noise), rngs))
    return cases


def real_cell_pair(settings: PhaseSimulation, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``skimage.data.cell()`` (a real quantitative phase image) scaled to ≤ 3.5 rad and propagated to ±d."""
    from skimage import data

    cell = data.cell().astype(np.float64)[:size, :size]
    phase = settings.max_phase_rad * (cell - cell.min()) / (cell.max() - cell.min())
    stack = two_shot(np.exp(1j * phase), settings.defocus_um, settings.wavelength_um, settings.pixel_um)
    return stack.astype(np.float32), phase.astype(np.float32)


def phase_benchmark(
    model: TrainedModel | None, n: int, n_samples: int, steps: int | None, log: Callable[[str], None] = print
) -> Table:
    header = ["test images", "method", "MAE (rad) ↓", "MS-SSIM ↑", *UNCERTAINTY_HEADER]
    table = Table(f"Phase retrieval, 256², d = 2 µm (n = {n} per row)", header)
    cases = phase_cases(n)
    cases.append(("skimage cell() (real QPI), noise-free", PhaseSimulation(noise_max=0.0), [None]))
    uncertainty: list[Uncertainty] = []
    for label, settings, rngs in cases:
        scores: dict[str, list[tuple[float, float]]] = {"TIE": [], "US-TIE": [], "CVDM": []}
        row = Uncertainty(n_samples)
        uncertainty.append(row)
        for k, rng in enumerate(rngs):
            stack, phase = real_cell_pair(settings) if rng is None else simulate_phase_pair(settings, 256, rng)[:2]
            truth = phase - phase.mean()
            args = (stack, settings.defocus_um, settings.wavelength_um, settings.pixel_um)
            estimates = {"TIE": tie_fft(*args), "US-TIE": us_tie(*args)}
            if model is not None:
                result = reconstruct(model, stack, n_samples=n_samples, steps=steps, seed=k)
                estimates["CVDM"] = result.mean - result.mean.mean()
                row.add(estimates["CVDM"] - truth, result.variance)
                if k == 0:
                    table.examples.append(
                        Example(
                            label,
                            {
                                "I(−d)": stack[0],
                                "US-TIE": estimates["US-TIE"],
                                "CVDM mean": estimates["CVDM"],
                                "CVDM std": result.std,
                                "∫β": result.beta_map,
                                "truth": truth,
                            },
                        )
                    )
            for name, est in estimates.items():
                scores[name].append((mae(est, truth), ms_ssim(est, truth, data_range=settings.max_phase_rad)))
        for name, vals in scores.items():
            if vals:
                m, s = np.mean(vals, axis=0)
                cells = row.cells() if name == "CVDM" else [""] * len(UNCERTAINTY_HEADER)
                table.rows.append([label, name, f"{m:.3f}", f"{s:.3f}", *cells])
        log(f"phase: {label} done")
    if model is not None:
        table.notes = image_ranking_note(uncertainty, n_samples)
    return table


def sr_benchmark(
    model: TrainedModel | None, n: int, n_samples: int, steps: int | None, log: Callable[[str], None] = print
) -> Table:
    header = [
        "structure",
        "method",
        "PSNR (dB) ↑",
        "MS-SSIM ↑",
        "decorr. res. (nm) ↓",
        "FRC res. vs truth (nm) ↓",
        *UNCERTAINTY_HEADER,
    ]
    table = Table(f"Super-resolution, WF 128² → SIM 256² (n = {n} per structure)", header)
    uncertainty: list[Uncertainty] = []
    for j, kind in enumerate(STRUCTURES):
        settings = SRSimulation(structure=kind)
        px_nm = settings.sim_pixel_um * 1000
        scores: dict[str, list[tuple[float, ...]]] = {"bicubic": [], "Richardson–Lucy": [], "CVDM": []}
        res_gt: list[float] = []
        row = Uncertainty(n_samples)
        uncertainty.append(row)
        for k, rng in enumerate(held_out_rngs(TEST_SEED_SR + 10 * j, n)):
            wf, sim, _ = simulate_sr_pair(settings, 128, rng)
            res_gt.append(decorrelation_resolution(sim, px_nm))
            estimates = {
                "bicubic": bicubic_upsample(wf, 2),
                "Richardson–Lucy": richardson_lucy(wf, 2, settings, iterations=20),
            }
            if model is not None:
                result = reconstruct(model, wf, n_samples=n_samples, steps=steps, seed=k)
                estimates["CVDM"] = result.mean
                lo, hi = float(sim.min()), float(sim.max())
                scale = float(np.ptp(result.mean)) or 1.0  # the metric's min–max units, for error and variance
                err = (result.mean - result.mean.min()) / scale - (sim - lo) / (hi - lo)
                row.add(err, result.variance / scale**2)
                if k == 0:
                    table.examples.append(
                        Example(
                            kind,
                            {
                                "widefield": wf,
                                "Richardson–Lucy": estimates["Richardson–Lucy"],
                                "CVDM mean": result.mean,
                                "CVDM std": result.std,
                                "∫β": result.beta_map,
                                "SIM truth": sim,
                            },
                        )
                    )
            for name, est in estimates.items():
                scores[name].append(
                    (
                        psnr(est, sim, normalize="minmax"),
                        ms_ssim(est, sim, normalize="minmax"),
                        decorrelation_resolution(est, px_nm),
                        frc_resolution(est, sim, px_nm),
                    )
                )
        for name, vals in scores.items():
            if vals:
                with warnings.catch_warnings():  # a column that is all NaN (no decorrelation peak) stays NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p, m, r, f = np.nanmean(vals, axis=0)
                cells = row.cells() if name == "CVDM" else [""] * len(UNCERTAINTY_HEADER)
                table.rows.append([kind, name, f"{p:.2f}", f"{m:.3f}", f"{r:.0f}", f"{f:.0f}", *cells])
        blank = [""] * len(UNCERTAINTY_HEADER)
        table.rows.append([kind, "SIM truth", "∞", "1", f"{np.nanmean(res_gt):.0f}", "–", *blank])
        log(f"sr: {kind} done")
    if model is not None:
        table.notes = image_ranking_note(uncertainty, n_samples)
    return table
