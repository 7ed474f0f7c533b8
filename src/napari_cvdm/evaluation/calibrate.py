"""``napari-cvdm calibrate``: reconstruct held-out pairs, measure the error of the mean, store a calibration.

The pairs are either simulated from a seed range that neither training (small seeds) nor ``napari-cvdm bench``
(10 000 + …) uses, with the same physics and structure mix as the bundled models' training data, or the user's own
validation pairs.  For every sampler setting asked for, each pair is reconstructed with N samples, and the raw
sample variance and the error of the mean go to :func:`~napari_cvdm.sampling.calibration.fit_calibration`, in
network units (SR: the target normalised by its own percentiles, as in training; phase: radians over the model's
target scale, mean removed because two defocused intensities do not determine a constant phase offset).
:func:`iter_calibrate` is a generator like every long job (progress, cancel); it never changes the model passed in.
For phase models it also fits one calibration per bin of the noise ξ estimated from each input, and for SR pairs
of many microscopes one per bin of the PSF width, next to the pooled one
(:func:`~napari_cvdm.sampling.calibration_bins.fit_binned_calibrations`).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from .._runtime import Progress, relay
from ..inference.noise_check import estimated_noise_xi
from ..inference.optics import INTERPOLATE, OpticsMismatch, plan_optics, resampled_fresnel_factor
from ..inference.reconstruct import Reconstruction, iter_reconstruct, planned_output_shape
from ..model.files import TrainedModel
from ..model.metadata import Calibration, ModelMetadata
from ..physics import (
    STRUCTURES,
    PhaseOpticsRange,
    PhaseSimulation,
    SROpticsRange,
    SRSimulation,
    simulate_phase_pair,
    simulate_phase_pair_random,
    simulate_sr_pair,
    simulate_sr_pair_random,
)
from ..sampling.calibration import (
    CalibrationError,
    check_calibration_size,
    feature_candidates_for,
    fit_calibration,
)
from ..sampling.calibration_bins import CONDITIONS, fit_binned_calibrations
from ..sampling.plan import SamplerPlan, plan_sampler
from ..settings import ReconstructSettings, settings_problems
from ..tasks import InputError, dark_subtracted, input_scale, normalize_target

CALIBRATION_SEED_SR = 20_001  # + 10·structure index; training uses small seeds, the bench 10 000 + …
CALIBRATION_SEED_PHASE = 20_000  # + source index


@dataclass(frozen=True)
class SamplerSetting:
    """One setting to calibrate: the sampler method, η and steps (None: the model's defaults)."""

    steps: int | None = None
    method: str | None = None
    eta: float | None = None


@dataclass
class CalibrationPairs:
    """Held-out (input, truth) pairs and what they are; for pairs of many microscopes also, per pair, the SR PSF
    FWHM in its input pixels (``psf_fwhm_px``: the calibration's condition) or the phase set-up a user would state
    (``stated_optics``: ``defocus_um``, ``wavelength_um``, ``pixel_size_um``, told to the reconstruction), and the
    inputs' camera offset."""

    pairs: list[tuple[np.ndarray, np.ndarray]]
    about: str
    psf_fwhm_px: list[float] | None = None
    stated_optics: list[dict[str, float]] | None = None
    camera_offset: float = 0.0  # the inputs' dark level (image units): the user's pairs


def stated_set_up(defocus_um: float, wavelength_um: float, pixel_um: float) -> dict[str, float]:
    """A two-shot set-up as a user states it to a reconstruction (:class:`~napari_cvdm.settings.ReconstructSettings`
    fields)."""
    return {"defocus_um": float(defocus_um), "wavelength_um": float(wavelength_um), "pixel_size_um": float(pixel_um)}


def simulated_calibration_pairs(task: str, n: int, seed_offset: int = 0, optics: str = "nominal") -> CalibrationPairs:
    """``n`` held-out pairs like the bundled models' training data.  SR: WF 128² → SIM 256², structure families in
    turn (``optics="random"``: each pair's optics and noise drawn from :class:`~napari_cvdm.physics.SROpticsRange`,
    as ``train --simulate-optics random``); phase: 256², photos and cells in turn, noise ξ ~ U(0, 0.2) as in
    training (``optics="random"``: each pair's set-up, absorption and noise drawn from
    :class:`~napari_cvdm.physics.PhaseOpticsRange`).  Never ``skimage.data.cell()``, which is reserved for
    evaluation."""
    if optics not in ("nominal", "random"):
        raise ValueError(f"simulated optics {optics!r}: use 'nominal' or 'random'")
    if task == "super-resolution" and optics == "random":
        pairs, fwhm = [], []
        for child in np.random.SeedSequence(CALIBRATION_SEED_SR + 1000 + seed_offset).spawn(n):
            wf, sim, drawn = simulate_sr_pair_random(SROpticsRange(), 128, np.random.default_rng(child))
            pairs.append((wf, sim))
            fwhm.append(float(drawn["psf_fwhm_px"]))
        about = (
            "simulated WF 128² → SIM 256² with randomised optics and noise (physics.SROpticsRange), seeds "
            f"{CALIBRATION_SEED_SR + 1000}+"
        )
        return CalibrationPairs(pairs, about, psf_fwhm_px=fwhm)
    if task == "super-resolution":
        streams = {
            kind: np.random.SeedSequence(CALIBRATION_SEED_SR + 10 * j + seed_offset).spawn(n)
            for j, kind in enumerate(STRUCTURES)
        }
        pairs = []
        for k in range(n):
            kind = STRUCTURES[k % len(STRUCTURES)]
            wf, sim, _ = simulate_sr_pair(SRSimulation(structure=kind), 128, np.random.default_rng(streams[kind][k]))
            pairs.append((wf, sim))
        about = f"simulated WF 128² → SIM 256², {', '.join(STRUCTURES)} in turn, seeds {CALIBRATION_SEED_SR}+"
        return CalibrationPairs(pairs, about)
    sources = ("photos", "cells")
    first = CALIBRATION_SEED_PHASE + (1000 if optics == "random" else 0)
    streams = {s: np.random.SeedSequence(first + j + seed_offset).spawn(n) for j, s in enumerate(sources)}
    pairs, stated = [], []
    for k in range(n):
        source = PhaseSimulation(source=sources[k % 2])
        rng = np.random.default_rng(streams[source.source][k])
        if optics == "random":
            stack, phase, drawn = simulate_phase_pair_random(PhaseOpticsRange(), 256, rng, source)
            stated.append(stated_set_up(drawn["defocus_um"], drawn["wavelength_um"], drawn["pixel_um"]))
        else:
            stack, phase, _ = simulate_phase_pair(source, 256, rng)
        pairs.append((stack, phase))
    if optics == "random":
        about = (
            "simulated two-shot pairs 256² with randomised set-ups, absorption and noise (physics.PhaseOpticsRange), "
            f"photos (other crops of the training photos) and cells in turn, seeds {first}+"
        )
        return CalibrationPairs(pairs, about, stated_optics=stated)
    about = (
        "simulated two-shot pairs 256², d = 2 µm, photos (other crops of the training photos) and cells in turn, "
        f"noise ξ ~ U(0, 0.2), seeds {CALIBRATION_SEED_PHASE}+"
    )
    return CalibrationPairs(pairs, about)


def network_scale(image: np.ndarray, info: ModelMetadata) -> float:
    """Physical units per network unit of one image's output (SR: its input percentile range; phase: the
    model's target scale in rad)."""
    if info.task == "phase":
        return float(info.normalization.target_scale)
    return float(input_scale(np.asarray(image), info).scale)


def network_units_error(
    result: Reconstruction, image: np.ndarray, truth: np.ndarray, info: ModelMetadata
) -> tuple[np.ndarray, np.ndarray]:
    """(raw variance, error of the mean) of one reconstruction in the network's units (see the module text)."""
    truth = np.asarray(truth, dtype=np.float64)
    if truth.shape != result.mean.shape:
        raise ValueError(
            f"the truth has shape {truth.shape} but the reconstruction {result.mean.shape}: each target must lie on "
            "the model's output grid"
        )
    if info.task == "phase":
        scale = network_scale(image, info)
        err = (result.mean - result.mean.mean()) - (truth - truth.mean())
    else:
        out = input_scale(np.asarray(image), info)  # the percentiles once: offset and scale
        scale = out.scale
        err = (result.mean - out.offset) - scale * normalize_target(truth, info)
    return result.variance / scale**2, err / scale


def network_units_mean(result: Reconstruction, image: np.ndarray, info: ModelMetadata) -> np.ndarray:
    """The mean of one reconstruction in the network's units, as the calibration sees it (SR: the input's
    percentile offset removed; phase: its own mean removed), over the same scale as :func:`network_units_error`."""
    if info.task == "phase":
        return (result.mean - result.mean.mean()) / network_scale(image, info)
    out = input_scale(np.asarray(image), info)
    return (result.mean - out.offset) / out.scale


def fit_measured(
    measured: dict[str, Any], data: str = "", by_condition: bool = True, *, task: str
) -> list[Calibration]:
    """The calibrations of one measured sampler setting (a record of :func:`iter_calibrate`'s ``measurements``) of
    a ``task`` model: pooled, plus one per bin of the images' noise ξ or PSF width factor where those were measured
    and ``by_condition``; the score blends tried are the task's (``feature_candidates_for``).  Phase pairs that
    reconstruction resampled from other set-ups get calibrations for such runs only (``fresnel_factor``), unless
    they are too few for one; then all pairs are fitted as one set."""
    setups = measured.get("fresnel_factor") or []
    resampled = [i for i, f in enumerate(setups) if f is not None]
    if resampled:
        try:
            fitted = _fit(_subset(measured, resampled), "fresnel_factor" if by_condition else None, data, task)
        except CalibrationError:  # too few resampled pairs for a calibration of their own: all pairs, as one set
            fitted = []
        if len(fitted) > 1:
            return fitted[1:]  # the bins; the pool over them is not needed: each resampled run has its factor
        if fitted:
            values = [setups[i] for i in resampled]
            return [fitted[0].model_copy(update={"fresnel_factor": (min(values), max(values))})]
    condition = next((c for c in ("noise_xi", "psf_factor") if by_condition and measured.get(c)), None)
    return _fit(measured, condition, data, task)


def _fit(m: dict[str, Any], condition: str | None, data: str, task: str) -> list[Calibration]:
    """The pooled calibration of a measured record ``m``, with one per bin of ``condition`` (None: pooled only)."""
    args = (m["variances"], m["errors"])
    setting = (m["n_samples"], m["method"], m["eta"], m["steps"])
    kw = {"data": data, "means": m.get("means"), "feature_candidates": feature_candidates_for(task)}
    if condition is None:
        return [fit_calibration(*args, *setting, **kw)]
    return fit_binned_calibrations(*args, m[condition], condition, *setting, **kw)  # type: ignore[arg-type]


def _subset(m: dict[str, Any], keep: Sequence[int]) -> dict[str, Any]:
    """The measured record ``m`` of the images ``keep`` only."""
    per_image = ("variances", "errors", "means", *CONDITIONS)
    return {**m, **{k: [m[k][i] for i in keep] for k in per_image if m.get(k)}}


def _sampler_run(
    model: TrainedModel, wanted: SamplerSetting, n_samples: int, seed: int, device: str, camera_offset: float = 0.0
) -> tuple[ReconstructSettings, SamplerPlan]:
    """The reconstruction settings and sampler plan of one setting to calibrate; an invalid one raises
    :class:`InputError` naming it."""
    try:
        run = ReconstructSettings(
            n_samples=n_samples, steps=wanted.steps, method=wanted.method, eta=wanted.eta, seed=seed, device=device,
            camera_offset=camera_offset,
        )  # fmt: skip
    except ValidationError as err:
        problems = settings_problems(err, ReconstructSettings)
        raise InputError(f"cannot calibrate this sampler setting: {problems}") from None
    return run, plan_sampler(model.info.sampler, run)


def iter_calibrate(
    model: TrainedModel,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    settings_to_fit: Sequence[SamplerSetting],
    n_samples: int = 8,
    seed: int = 0,
    data: str = "",
    device: str = "auto",
    by_condition: bool = True,
    measurements: list[dict[str, Any]] | None = None,
    psf_fwhm_px: Sequence[float] | None = None,
    stated_optics: Sequence[dict[str, float]] | None = None,
    camera_offset: float = 0.0,
) -> Generator[Progress, None, list[Calibration]]:
    """Fit :class:`Calibration` s per sampler setting on ``pairs`` (input, truth on the output grid).

    With ``by_condition``, next to the pooled calibration one per bin of a condition
    (:mod:`~napari_cvdm.sampling.calibration_bins`): for phase models the noise ξ estimated from each input (the
    estimator reconstruction uses); for SR models given each pair's PSF FWHM in its input pixels
    (``psf_fwhm_px``, pairs of many microscopes), that width as a factor of the model's own.  Otherwise one pooled
    calibration per setting.  ``stated_optics``: per pair, the optics its reconstruction is told (phase pairs of
    many set-ups: ``defocus_um``, ``wavelength_um``, ``pixel_size_um``; the user's pairs: their optics), as a user
    states them.  ``camera_offset``: the dark level of the inputs, subtracted first, as reconstruction does (the
    noise ξ is estimated after it, as reconstruction estimates it).  ``measurements``: a list that receives, per
    setting, the per-image raw variances, errors, means (network units) and conditions, to refit without
    reconstructing (:func:`fit_measured`)."""
    check_calibration_size(len(pairs), n_samples)
    runs = [_sampler_run(model, wanted, n_samples, seed, device, camera_offset) for wanted in settings_to_fit]
    calibrations = []
    total = len(pairs) * len(settings_to_fit)
    seen = [dark_subtracted(image, camera_offset) for image, _ in pairs]  # what the reconstructions see, once
    noise_xi = [estimated_noise_xi(model.info.task, image) for image in seen] if model.info.task == "phase" else []
    own = model.info.input_psf_fwhm_px
    if psf_fwhm_px is not None and len(psf_fwhm_px) != len(pairs):
        raise ValueError(f"{len(psf_fwhm_px)} PSF widths for {len(pairs)} pairs")
    psf_factor = [w / own for w in psf_fwhm_px] if psf_fwhm_px is not None and own is not None else []
    if stated_optics is not None and len(stated_optics) != len(pairs):
        raise ValueError(f"{len(stated_optics)} stated optics for {len(pairs)} pairs")
    fresnel_factor: list[float | None] = []  # phase pairs resampled from another set-up: theirs
    for k, (image, truth) in enumerate(pairs):  # every pair's grid, before any reconstruction
        told = stated_optics[k] if stated_optics is not None else {}
        try:
            optics = plan_optics(model.info, runs[0][0].model_copy(update=told))
        except OpticsMismatch as err:  # interpolation would put the output off the targets' grid: not a way here
            raise OpticsMismatch(str(err).replace(f"\n  • {INTERPOLATE}", "")) from None
        expected = planned_output_shape(np.shape(image), model.info, optics)
        fresnel_factor.append(resampled_fresnel_factor(optics.record))
        if tuple(np.shape(truth)) != tuple(expected):
            raise InputError(
                f"pair {k + 1}: the target has shape {np.shape(truth)} but the reconstruction of its input "
                f"{np.shape(image)} has {tuple(expected)}: each target must lie on the model's output grid "
                f"({model.info.scale_factor}× the input for {model.info.name}); check that the targets match the inputs"
            )
    for s_idx, (run, plan) in enumerate(runs):
        variances, errors, means = [], [], []
        for k, (image, truth) in enumerate(pairs):
            stage = f"calibrating {plan.method}, η = {plan.eta:g}, {plan.steps} steps: image {k + 1}/{len(pairs)}"
            done = s_idx * len(pairs) + k
            yield Progress(done, total, stage)
            told = stated_optics[k] if stated_optics is not None else {}
            job = iter_reconstruct(model, image, run.model_copy(update={"seed": seed + k, **told}))

            def translate(event: object, done: int = done, stage: str = stage) -> list[Progress]:
                # every network evaluation is a point where the run can be cancelled
                return [Progress(done, total, stage)] if isinstance(event, Progress) else []

            result = yield from relay(job, translate)
            # the intensities whose percentiles set the SR units are the dark-subtracted ones
            variance, err = network_units_error(result, seen[k], truth, model.info)
            variances.append(variance)
            errors.append(err)
            means.append(network_units_mean(result, seen[k], model.info))
        measured = {
            "method": plan.method, "eta": plan.eta, "steps": result.nfe_per_sample, "n_samples": n_samples,
            "variances": variances, "errors": errors, "means": means, "noise_xi": noise_xi, "psf_factor": psf_factor,
            "fresnel_factor": fresnel_factor if any(f is not None for f in fresnel_factor) else [],
        }  # fmt: skip
        if measurements is not None:
            measurements.append(measured)
        calibrations += fit_measured(measured, data, by_condition, task=model.info.task)
    yield Progress(total, total, "calibrated")
    return calibrations


def with_calibrations(info: ModelMetadata, calibrations: Sequence[Calibration]) -> ModelMetadata:
    """``info`` with ``calibrations`` replacing every earlier one of the same (method, η, steps), conditioned ones
    included; calibrations for resampled set-ups (``fresnel_factor``) replace only those, and the others keep
    them."""

    def family(c: Calibration) -> tuple:
        return (c.method, round(c.eta, 9), c.steps, c.fresnel_factor is not None)

    new = {family(c) for c in calibrations}
    kept = [c for c in info.calibrations if family(c) not in new]

    def order(c: Calibration) -> tuple:
        condition = c.noise_xi or c.psf_factor or c.fresnel_factor
        return (c.method, c.eta, c.steps, c.fresnel_factor is not None, condition is not None, condition or ())

    merged = sorted([*kept, *calibrations], key=order)
    return info.model_copy(update={"calibrations": merged}, deep=True)
