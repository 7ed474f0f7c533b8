"""``napari-cvdm bench``: the default models against the classical baselines on a fixed held-out simulated set.

The held-out set is regenerated from seeds ≥ 10 000, which training never uses (training sets use
``SeedSequence(simulate_seed)`` with small seeds).  Phase: 256² pairs, d = 2 µm, photos and procedural cells, with
and without the training noise, plus ``skimage.data.cell()`` — a real quantitative phase image that is reserved for
evaluation — propagated with our simulator.  SR: WF 128² → SIM 256² for each structure family, photons
log-uniform in 15–600.  Metrics: :mod:`napari_cvdm.evaluation.metrics` (phase: mean removed, MAE in rad, MS-SSIM with
data_range 3.5 rad; SR: per-image min–max normalisation as DL-SR, PSNR, MS-SSIM, decorrelation resolution in nm
and the FRC resolution against the SIM truth in nm, which amplified noise cannot improve).
Uncertainty columns (raw and calibrated, in the units the model's spread describes; calibrated bars with their
standard error over the row's images): :mod:`~napari_cvdm.evaluation.uncertainty_scores`.  Over all test images of
a task, Spearman between each image's mean std and its RMSE (does the model know which images it gets wrong?).
``Table.reliability`` holds the reliability-diagram bins of each row.
Held-out microscopes (rows marked "*"): SR at 108 nm camera pixels, and at emission 0.67 µm / NA 1.4; phase at
λ·d/p² of 0.6× and 1.8× the nominal (d = 1.2 and 3.6 µm).  The SR model is run with the header's optics (it is
told none); the phase model is told the set-up, as the classical baselines are, and resamples the pair to its own
λ·d/p² where the set-up lies outside what it covers (:mod:`~napari_cvdm.inference.optics`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

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
from ..physics.ranges import STOKES_SHIFT_UM, sr_pattern_spacing
from .calibrate import network_scale, network_units_error, stated_set_up
from .metrics import (
    decorrelation_resolution,
    frc_resolution,
    mae,
    ms_ssim,
    psnr,
)
from .report import Example, Table
from .uncertainty_scores import (
    CALIBRATED_HEADER,
    STANDARD_ERROR_NOTE,
    UNCERTAINTY_HEADER,
    Uncertainty,
    calibrated_interval,
    image_ranking_note,
)

TEST_SEED_PHASE = 10_000
TEST_SEED_SR = 10_001
TEST_SEED_SR_OPTICS = 10_101  # the held-out microscopes: 10 101 and 10 111 (SR), 10 201 and 10 211 (phase)
TEST_SEED_PHASE_OPTICS = 10_201


def held_out_rngs(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators of the held-out test set seeded with ``seed`` (≥ 10 000: never trained on)."""
    return [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(n)]


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


def real_cell_pair(settings: PhaseSimulation, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``skimage.data.cell()`` (a real quantitative phase image) scaled to ≤ 3.5 rad and propagated to ±d."""
    from skimage import data

    cell = data.cell().astype(np.float64)[:size, :size]
    phase = settings.max_phase_rad * (cell - cell.min()) / (cell.max() - cell.min())
    stack = two_shot(np.exp(1j * phase), settings.defocus_um, settings.wavelength_um, settings.pixel_um)
    return stack.astype(np.float32), phase.astype(np.float32)


def phase_bench_cases(n: int) -> list[tuple[str, PhaseSimulation, list[np.random.Generator | None], dict]]:
    """The phase bench's rows: (label, simulator settings, one generator per image — None for the real
    ``skimage.data.cell()`` — and the set-up the model is told).  The held-out set-ups are stated, as the baselines
    get them."""
    cases: list = phase_cases(n)
    cases.append(("skimage cell() (real QPI), noise-free", PhaseSimulation(noise_max=0.0), [None]))
    n_nominal = len(cases)
    cases += phase_optics_cases(n)
    return [
        (label, s, rngs, stated_set_up(s.defocus_um, s.wavelength_um, s.pixel_um) if c >= n_nominal else {})
        for c, (label, s, rngs) in enumerate(cases)
    ]


def bench_pairs(task: str, n: int) -> Iterator[tuple[str, np.ndarray, np.ndarray, dict]]:
    """(row label, input, truth, what the model is told) of every image of the bench's rows for ``task``, in row
    order, each made when it is reached.  SR: the model is told no optics, as the bench runs it."""
    if task == "phase":
        for label, settings, rngs, told in phase_bench_cases(n):
            for rng in rngs:
                image, truth = real_cell_pair(settings) if rng is None else simulate_phase_pair(settings, 256, rng)[:2]
                yield label, image, truth, told
        return
    for label, settings, rngs in sr_cases(n):
        for rng in rngs:
            yield label, *simulate_sr_pair(settings, 128, rng)[:2], {}


def phase_benchmark(
    model: TrainedModel | None, n: int, n_samples: int, steps: int | None, log: Callable[[str], None] = print
) -> Table:
    header = ["test images", "method", "MAE (rad) ↓", "MS-SSIM ↑", *UNCERTAINTY_HEADER, *CALIBRATED_HEADER]
    table = Table(f"Phase retrieval, 256², d = 2 µm (n = {n} per row)", header)
    uncertainty: list[Uncertainty] = []
    cases = phase_bench_cases(n)
    n_nominal = sum(not told for *_, told in cases)  # the held-out set-ups, stated, come last
    for label, settings, rngs, told in cases:
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
