"""``napari-cvdm bench``: the default models against the classical baselines on a fixed held-out simulated set.

The held-out set is regenerated from seeds ≥ 10 000, which training never uses (training sets use
``SeedSequence(simulate_seed)`` with small seeds).  Phase: 256² pairs, d = 2 µm, photos and procedural cells, with
and without the training noise, plus ``skimage.data.cell()`` — a real quantitative phase image that is reserved for
evaluation — propagated with our simulator.  SR: WF 128² → SIM 256² for each structure family, photons
log-uniform in 15–600.  Metrics: :mod:`napari_cvdm.evaluation.metrics` (phase: mean removed, MAE in rad, MS-SSIM with
data_range 3.5 rad; SR: per-image min–max normalisation as DL-SR, PSNR, MS-SSIM, decorrelation resolution in nm
and the FRC resolution against the SIM truth in nm, which amplified noise cannot improve).
Uncertainty, in the units the model's spread describes (phase: rad, mean removed; SR: the SIM truth normalised by
its own percentiles as in training, i.e. network units, not the min–max units of PSNR): Spearman rank correlation
between the pixel-wise standard deviation and the absolute error of the mean (does the std map point at the wrong
pixels?), the calibration ratio mean(err²)/mean(var) (≈ 1 + 1/N for N calibrated samples; larger: overconfident),
the share of pixels whose truth lies in the central 90 % interval of the N-sample mean (Student-t, 0.90 when
calibrated), the ENCE over 10 bins of the predicted spread (the reliability diagram in one number), and, over all
test images of a task, Spearman between each image's mean std and its RMSE (does the model know which images it gets
wrong?).
After calibration (``napari-cvdm calibrate``; :class:`~napari_cvdm.model.metadata.Calibration`) every CVDM row also
scores the calibrated error std σ_cal: Spearman(σ_cal, |err|), mean(err²)/mean(σ_cal²) (1 when calibrated), the
coverage of the calibrated central 50 / 90 / 95 % intervals and the ENCE over σ_cal bins; "—" where the model holds
no calibration for the sampler run.  ``Table.reliability`` holds the reliability-diagram bins of each row.
Held-out microscopes (rows marked "*"): SR at 108 nm camera pixels, and at emission 0.67 µm / NA 1.4; phase at
λ·d/p² of 0.6× and 1.8× the nominal (d = 1.2 and 3.6 µm).  The SR model is run with the header's optics (it is
told none); the phase model is told the set-up, as the classical baselines are, and resamples the pair to its own
λ·d/p² where the set-up lies outside what it covers (:mod:`~napari_cvdm.inference.optics`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..inference.noise_check import estimated_noise_xi
from ..inference.optics import network_psf_factor
from ..inference.reconstruct import Reconstruction, reconstruct
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
from ..physics.ranges import STOKES_SHIFT_UM, sr_pattern_spacing
from ..sampling.calibration import interval_multiplier
from ..sampling.calibration_bins import select_calibration
from .calibrate import network_scale, network_units_error, stated_set_up
from .metrics import (
    calibration_ratio,
    decorrelation_resolution,
    expected_normalized_calibration_error,
    frc_resolution,
    half_width_coverage,
    interval_coverage,
    mae,
    ms_ssim,
    psnr,
    reliability,
    std_calibration_ratio,
    std_ence,
    std_reliability,
)
from .report import Example, Table

# the CVDM rows' uncertainty columns: rank correlation, err²/var (≈ 1 + 1/N calibrated), share of pixels inside the
# central 90 % interval (0.90 calibrated), and ENCE over 10 spread bins (its floor for calibrated N samples is in
# metrics.expected_normalized_calibration_error)
UNCERTAINTY_HEADER = ["Spearman(std, |err|) ↑", "err²/var", "90 % coverage", "ENCE"]
# the same after calibration, from the calibrated error std σ_cal and the calibrated central intervals
CALIBRATED_LEVELS = (0.5, 0.9, 0.95)
CALIBRATED_HEADER = [
    "Spearman(σ_cal, |err|) ↑",
    "err²/σ_cal²",
    *(f"cal. {round(100 * q)} % coverage" for q in CALIBRATED_LEVELS),
    "ENCE (σ_cal)",
]
NOT_CALIBRATED = "—"
TEST_SEED_PHASE = 10_000
TEST_SEED_SR = 10_001
TEST_SEED_SR_OPTICS = 10_101  # the held-out microscopes: 10 101 and 10 111 (SR), 10 201 and 10 211 (phase)
TEST_SEED_PHASE_OPTICS = 10_201


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
        return [*raw, _fmt(self.cal_spearman), _fmt_se(self.cal_ratio, 2), *coverage, _fmt(self.cal_ence, 2)]

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
    settings = result.settings
    xi = None if image is None else estimated_noise_xi(model.info.task, image)
    psf = network_psf_factor(result.optics or {})
    cal, _ = select_calibration(
        model.info.calibrations, settings["method"], settings["eta"], settings["steps"], xi, psf_factor=psf
    )
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


def held_out_rngs(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators of the held-out test set seeded with ``seed`` (≥ 10 000: never trained on)."""
    return [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(n)]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; NaN (undefined) when either is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


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


def phase_cases(n: int) -> list[tuple[str, PhaseSimulation, list[np.random.Generator]]]:
    cases = []
    for noise in (0.0, 0.2):
        for j, source in enumerate(("photos", "cells")):
            label = f"{source}, {'noise-free' if noise == 0 else 'noisy ξ~U(0,0.2)'}"
            rngs = held_out_rngs(TEST_SEED_PHASE + j, n)
            cases.append((label, PhaseSimulation(source=source, noise_max=noise), rngs))
    return cases


def phase_optics_cases(n: int) -> list[tuple[str, PhaseSimulation, list[np.random.Generator]]]:
    """Held-out two-shot set-ups: λ·d/p² at 0.6× and 1.8× the nominal, by the defocus (d = 1.2 and 3.6 µm)."""
    nominal = PhaseSimulation()
    cases = []
    for j, factor in enumerate((0.6, 1.8)):
        d = round(factor * nominal.defocus_um, 6)
        label = f"* mixed, noisy, λd/p² {factor:g}× (d = {d:g} µm, stated)"
        rngs = held_out_rngs(TEST_SEED_PHASE_OPTICS + 10 * j, n)
        cases.append((label, PhaseSimulation(source="mixed", defocus_um=d), rngs))
    return cases


def sr_microscope(**optics: float) -> SRSimulation:
    """The nominal SR simulator with other optics; the SIM pattern follows them as in physics.ranges (the SIM
    pixel stays WF/2 and the SIM support scales with 2NA/λ, capped by the excitation limit and the SIM grid)."""
    base = SRSimulation().model_dump()
    base.update(optics)
    lam, na, px = base["wavelength_um"], base["na"], base["wf_pixel_um"]
    base["excitation_wavelength_um"] = lam - STOKES_SHIFT_UM
    base["pattern_spacing_um"] = sr_pattern_spacing(na, lam, px, base["immersion_index"])
    return SRSimulation.model_validate(base)


def sr_cases(n: int) -> list[tuple[str, SRSimulation, list[np.random.Generator]]]:
    """The four structure families at the nominal optics (seeds 10 001 + 10·j), then two held-out microscopes."""
    cases = [
        (kind, SRSimulation(structure=kind), held_out_rngs(TEST_SEED_SR + 10 * j, n))
        for j, kind in enumerate(STRUCTURES)
    ]
    held_out = [
        ("* mixed, 108 nm pixels (PSF 0.58× nominal px)", sr_microscope(wf_pixel_um=0.108)),
        ("* mixed, λ_em 0.67 µm, NA 1.4 (PSF 1.21×)", sr_microscope(wavelength_um=0.67, na=1.4)),
    ]
    for j, (label, settings) in enumerate(held_out):
        cases.append((label, settings, held_out_rngs(TEST_SEED_SR_OPTICS + 10 * j, n)))
    return cases


HELD_OUT_NOTE = (
    "Rows marked * are held-out microscopes the default models were not trained for; the classical baselines get the "
    "true optics; the SR model is run with its header's optics (it is told none), the phase model is told the set-up."
)
STANDARD_ERROR_NOTE = (
    "Calibrated err²/σ_cal² and coverages: the mean over the row's images ± its standard error (std over the images "
    "/ √n). One image's pixels share one draw of its error field, so the number of images sets how precisely a row "
    "measures a bar: a row whose 90 % coverage is 0.96 ± 0.02 does not show that its intervals are too wide."
)


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
    header = ["test images", "method", "MAE (rad) ↓", "MS-SSIM ↑", *UNCERTAINTY_HEADER, *CALIBRATED_HEADER]
    table = Table(f"Phase retrieval, 256², d = 2 µm (n = {n} per row)", header)
    cases = phase_cases(n)
    cases.append(("skimage cell() (real QPI), noise-free", PhaseSimulation(noise_max=0.0), [None]))
    n_nominal = len(cases)
    cases += phase_optics_cases(n)
    uncertainty: list[Uncertainty] = []
    for c, (label, settings, rngs) in enumerate(cases):
        told = (  # the held-out set-ups are stated, as the baselines get them
            stated_set_up(settings.defocus_um, settings.wavelength_um, settings.pixel_um) if c >= n_nominal else {}
        )
        scores: dict[str, list[tuple[float, float]]] = {"TIE": [], "US-TIE": [], "CVDM": []}
        row = Uncertainty(n_samples)
        uncertainty.append(row)
        for k, rng in enumerate(rngs):
            stack, phase = real_cell_pair(settings) if rng is None else simulate_phase_pair(settings, 256, rng)[:2]
            truth = phase - phase.mean()
            args = (stack, settings.defocus_um, settings.wavelength_um, settings.pixel_um)
            estimates = {"TIE": tie_fft(*args), "US-TIE": us_tie(*args)}
            if model is not None:
                result = reconstruct(model, stack, n_samples=n_samples, steps=steps, seed=k, **told)
                estimates["CVDM"] = result.mean - result.mean.mean()
                row.add(estimates["CVDM"] - truth, result.variance, *calibrated_interval(model, result, stack))
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
                cells = row.cells() if name == "CVDM" else [""] * len(UNCERTAINTY_HEADER + CALIBRATED_HEADER)
                table.rows.append([label, name, f"{m:.3f}", f"{s:.3f}", *cells])
        if model is not None:
            table.reliability.append(row.reliability(label))
        log(f"phase: {label} done")
    table.notes = [HELD_OUT_NOTE]
    if model is not None:  # the image ranking over the nominal rows, as before the held-out set-ups existed
        table.notes = [*image_ranking_note(uncertainty[:n_nominal], n_samples), HELD_OUT_NOTE, STANDARD_ERROR_NOTE]
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
        *CALIBRATED_HEADER,
    ]
    table = Table(f"Super-resolution, WF 128² → SIM 256² (n = {n} per row)", header)
    uncertainty: list[Uncertainty] = []
    for kind, settings, rngs in sr_cases(n):
        px_nm = settings.sim_pixel_um * 1000
        scores: dict[str, list[tuple[float, ...]]] = {"bicubic": [], "Richardson–Lucy": [], "CVDM": []}
        res_gt: list[float] = []
        row = Uncertainty(n_samples)
        uncertainty.append(row)
        for k, rng in enumerate(rngs):
            wf, sim, _ = simulate_sr_pair(settings, 128, rng)
            res_gt.append(decorrelation_resolution(sim, px_nm))
            estimates = {
                "bicubic": bicubic_upsample(wf, 2),
                "Richardson–Lucy": richardson_lucy(wf, 2, settings, iterations=20),
            }
            if model is not None:
                result = reconstruct(model, wf, n_samples=n_samples, steps=steps, seed=k)
                estimates["CVDM"] = result.mean
                # the uncertainty's error is the one the model's spread describes: the mean against the SIM truth
                # normalised as in training (its own percentiles), in network units (evaluation.calibrate)
                scale = network_scale(wf, model.info)
                _, err = network_units_error(result, wf, sim, model.info)
                cal_std, halves = calibrated_interval(model, result)
                if cal_std is not None:
                    cal_std, halves = cal_std / scale, {q: h / scale for q, h in halves.items()}
                row.add(err, result.variance / scale**2, cal_std, halves)
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
                cells = row.cells() if name == "CVDM" else [""] * len(UNCERTAINTY_HEADER + CALIBRATED_HEADER)
                table.rows.append([kind, name, f"{p:.2f}", f"{m:.3f}", f"{r:.0f}", f"{f:.0f}", *cells])
        blank = [""] * len(UNCERTAINTY_HEADER + CALIBRATED_HEADER)
        table.rows.append([kind, "SIM truth", "∞", "1", f"{np.nanmean(res_gt):.0f}", "–", *blank])
        if model is not None:
            table.reliability.append(row.reliability(kind))
        log(f"sr: {kind} done")
    table.notes = [HELD_OUT_NOTE]
    if model is not None:  # the image ranking over the nominal rows, as before the held-out microscopes existed
        ranking = image_ranking_note(uncertainty[: len(STRUCTURES)], n_samples)
        table.notes = [*ranking, HELD_OUT_NOTE, STANDARD_ERROR_NOTE]
    return table
