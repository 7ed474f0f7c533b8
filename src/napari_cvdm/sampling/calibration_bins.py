"""Calibrations conditioned on what is known about an image when it is reconstructed, and picking the one that applies.

The spread-to-error map of a model trained over a range of conditions is not one map.  Noisier phase images have
larger errors at the same spread; an SR model trained over many microscopes errs more, at the same spread, where
the PSF is narrow in pixels than where it is wide.  A map pooled over the range then over-states the error at one
end and under-states it at the other.  So next to the pooled calibration, one is fitted per quantile bin of a
*condition*, a number known for every image at reconstruction time:

* ``noise_xi`` — phase: the noise level ξ estimated from the input itself
  (:func:`~napari_cvdm.inference.noise_check.estimated_noise_xi`), per plane;
* ``psf_factor`` — SR: the PSF width in the network's input pixels as a factor of the model's own, from the optics
  the run uses (stated by the user, or the model's);
* ``fresnel_factor`` — phase: λ·d/p² of a stated set-up outside the model's range, as a factor of the model's, for
  runs that resample the pair to the model's set-up.  These calibrations are fitted on such resampled pairs only
  and apply to such runs only, in place of those fitted at the model's own set-up (pooled or by noise).

:func:`select_calibration` picks the bin holding the image's value (the nearest, said so, outside them all), the
pooled calibration where the value is unknown.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ..model.metadata import Calibration, SamplerMethod
from .calibration import (
    DEFAULT_BINS,
    FEATURE_CANDIDATES,
    SMOOTHING_CANDIDATES_PX,
    CalibrationError,
    error_std_factor,
    fit_calibration,
    posterior_std,
    rests_on,
)

Condition = Literal["noise_xi", "psf_factor", "fresnel_factor"]
CONDITIONS: tuple[Condition, ...] = ("noise_xi", "psf_factor", "fresnel_factor")
MAX_BINS: dict[Condition, int] = {"noise_xi": 3, "psf_factor": 4, "fresnel_factor": 3}  # at most; chosen held out
BIN_MIN_GAIN = 0.005  # nats per pixel each bin beyond the first must gain on held-out images


def range_text(c: Calibration, condition: Condition) -> str:
    """The condition's range in words, two significant digits (a low edge never reads 0.00)."""
    low, high = getattr(c, condition)
    if condition == "noise_xi":
        return f"estimated noise ξ {low:.2g}–{high:.2g}"
    if condition == "fresnel_factor":
        return f"a set-up resampled from λ·d/p² {low:.2g}–{high:.2g}× the model's"
    return f"PSF width {low:.2g}–{high:.2g}× the model's"


def condition_bins(calibrations: Sequence[Calibration], chosen: Calibration, condition: Condition) -> list[Calibration]:
    """The calibrations of ``chosen``'s sampler setting (method, η, steps) conditioned on ``condition``, by range."""
    same = [
        c
        for c in calibrations
        if getattr(c, condition) is not None
        and (c.method, c.steps) == (chosen.method, chosen.steps)
        and abs(c.eta - chosen.eta) < 1e-9
    ]
    return sorted(same, key=lambda c: getattr(c, condition))


def conditioned_on(calibrations: Sequence[Calibration], chosen: Calibration) -> Condition | None:
    """The condition the model holds bins of for ``chosen``'s sampler setting (None: pooled only)."""
    return next((k for k in CONDITIONS if condition_bins(calibrations, chosen, k)), None)


def _in_bin(bins: list[Calibration], condition: Condition, value: float) -> tuple[Calibration, str]:
    """The bin whose range holds ``value`` (else the nearest, said so) and its sentence."""
    ranges = [getattr(c, condition) for c in bins]
    inside = [c for c, (lo, hi) in zip(bins, ranges, strict=True) if lo <= value <= hi]
    if inside:
        best, where = inside[0], ""
    else:
        gaps = [min(abs(value - lo), abs(value - hi)) for lo, hi in ranges]
        best = bins[int(np.argmin(gaps))]
        low, high = ranges[0][0], ranges[-1][1]
        side = "below" if value < low else "above" if value > high else "between"
        what = {"noise_xi": "estimated ξ", "psf_factor": "PSF width factor"}.get(condition, "λ·d/p² factor")
        where = f" (the image's {what} {value:.2g} is {side} the calibrated {low:.2g}–{high:.2g}: nearest)"
    return best, f"calibrated for images with {range_text(best, condition)}{where} on {rests_on(best)}"


def select_calibration(
    calibrations: Sequence[Calibration],
    method: str,
    eta: float,
    steps: int,
    noise_xi: float | None = None,
    psf_factor: float | None = None,
    fresnel_factor: float | None = None,
) -> tuple[Calibration | None, str]:
    """The calibration for a sampler setting and one sentence saying what it rests on.

    Exact match of (method, η, steps) first; otherwise the same method and η at the nearest number of steps (said
    so: the spread changes with the steps, so that calibration is not measured for this run); otherwise none.
    Among the calibrations of that setting, the image's condition (``noise_xi``: its estimated phase noise;
    ``psf_factor``: SR, the PSF width factor the run sees) picks the one fitted on images like it when the model
    holds calibrations conditioned on it; without a value (None), or without such calibrations, the pooled one.
    A phase run that resamples its pair (``fresnel_factor``: its set-up's λ·d/p² as a factor of the model's) takes
    the model's calibrations for resampled set-ups where it holds them, the others otherwise.
    """
    same = [c for c in calibrations if c.method == method and abs(c.eta - eta) < 1e-9]
    if not same:
        return None, (
            f"not calibrated: the model holds no calibration for the {method!r} sampler with η = {eta:g}; the layers "
            "show the raw sample spread, which understates the error (run `napari-cvdm calibrate`)"
        )
    nearest = min({c.steps for c in same}, key=lambda s: (abs(math.log(s) - math.log(steps)), -s))
    at = [c for c in same if c.steps == nearest]
    setups = condition_bins(at, at[0], "fresnel_factor")
    if setups and (fresnel_factor is not None or len(setups) == len(at)):
        best, note = _in_bin(setups, "fresnel_factor", 1.0 if fresnel_factor is None else fresnel_factor)
        if fresnel_factor is None:  # better than none, said so
            note += "; this run is at the model's own set-up, where the model holds no calibration"
        return best, _steps_note(best, steps, note)
    at = [c for c in at if c.fresnel_factor is None]
    pooled = [c for c in at if c.noise_xi is None and c.psf_factor is None]
    condition = conditioned_on(at, at[0])
    bins = condition_bins(at, at[0], condition) if condition else []
    value = {"noise_xi": noise_xi, "psf_factor": psf_factor}.get(condition or "")
    what = {"noise_xi": "noise level", "psf_factor": "PSF width"}.get(condition or "", "")
    if bins and value is not None:
        best, note = _in_bin(bins, condition, value)  # type: ignore[arg-type]
    elif pooled:
        best = pooled[0]
        note = f"calibrated on {rests_on(best)}"
        if bins:
            note += (
                f", pooled over every {what} (used where an image's {what} is not known; the others use the "
                f"calibration for theirs: {', '.join(range_text(c, condition) for c in bins)})"  # type: ignore[arg-type]
            )
    else:  # conditioned calibrations only, and no value: the one resting on the most pixels
        best = max(bins, key=lambda c: c.n_pixels)
        note = (
            f"calibrated for images with {range_text(best, condition)} on {rests_on(best)} (the image's {what} "  # type: ignore[arg-type]
            "is not known and the model holds no calibration pooled over all of them)"
        )
    return best, _steps_note(best, steps, note)


def _steps_note(best: Calibration, steps: int, note: str) -> str:
    """``note``, saying so where ``best`` was fitted at another number of steps than the run's."""
    if best.steps == steps:
        return note
    return (
        f"calibrated at {best.steps} steps, applied to {steps} steps (not measured at {steps}; calibrate the model "
        f"at these steps with `napari-cvdm calibrate --steps {steps}`); {note.removeprefix('calibrated ')}"
    )


def quantile_groups(values: Sequence[float | None], n_bins: int) -> list[tuple[list[int], tuple[float, float]]]:
    """The images with a value in ``n_bins`` groups of (nearly) equal count by value (quantiles), each with the
    range it stands for: from the lowest to the highest value of the images, split half-way between neighbouring
    groups, so the ranges touch and an image's bin is where its value falls."""
    known = sorted((float(x), i) for i, x in enumerate(values) if x is not None and math.isfinite(x))
    if n_bins < 1 or len(known) < n_bins:
        return []
    parts = [list(p) for p in np.array_split(np.arange(len(known)), n_bins)]
    groups = [[known[j] for j in p] for p in parts]
    edges = [groups[0][0][0]]
    edges += [(a[-1][0] + b[0][0]) / 2 for a, b in itertools.pairwise(groups)]
    edges.append(groups[-1][-1][0])
    return [
        (sorted(i for _, i in g), (float(lo), float(hi)))
        for g, lo, hi in zip(groups, edges[:-1], edges[1:], strict=True)
    ]


def _fit_bins(
    indices: Sequence[int],
    values: Sequence[float | None],
    count: int,
    fit: Callable[[list[int]], Calibration],
    condition: Condition,
) -> list[Calibration]:
    """``count`` calibrations of the images ``indices``, one per quantile bin of their values (1: pooled)."""
    if count == 1:
        return [fit(list(indices))]
    groups = quantile_groups([values[i] for i in indices], count)
    if not groups:
        raise CalibrationError(f"fewer than {count} images with a value of {condition}")
    return [fit([indices[j] for j in idx]).model_copy(update={condition: r}) for idx, r in groups]


def _held_out_nll(
    bins: list[Calibration], test: Sequence[int], data: tuple, values: Sequence[float | None], condition: Condition
) -> tuple[float, int]:
    """Σ of the Gaussian negative log-likelihood of the errors of images ``test`` under the calibration of their
    value's bin (the only one when pooled), and their pixel count.  Images without a value are left out: every
    count would score them with a pooled calibration."""
    variances, errors, means, n_samples = data
    total, pixels = 0.0, 0
    for i in test:
        value = values[i]
        if value is None:
            continue
        cal = bins[0] if len(bins) == 1 else _in_bin(bins, condition, float(value))[0]
        std = posterior_std(cal, variances[i], None if means is None else means[i]) * error_std_factor(n_samples)
        err = np.asarray(errors[i], dtype=np.float64)
        total += float(np.sum(np.log(std) + 0.5 * np.square(err / std)))
        pixels += err.size
    return total, pixels


def fit_binned_calibrations(
    raw_variances: Sequence[np.ndarray],
    errors: Sequence[np.ndarray],
    values: Sequence[float | None],
    condition: Condition,
    n_samples: int,
    method: SamplerMethod,
    eta: float,
    steps: int,
    data: str = "",
    max_bins: int | None = None,
    n_bins: int = DEFAULT_BINS,
    smoothing_candidates: Sequence[float] = SMOOTHING_CANDIDATES_PX,
    means: Sequence[np.ndarray] | None = None,
    feature_candidates: Sequence[tuple[str, float, float]] = FEATURE_CANDIDATES,
    report: list[tuple[int, float]] | None = None,
) -> list[Calibration]:
    """The pooled calibration of all images (:func:`~napari_cvdm.sampling.calibration.fit_calibration`), then one
    per bin of the images' ``condition`` (``values``, one per image, None where unknown: pooled only); the other
    arguments as ``fit_calibration``'s, for each.

    How many quantile bins (1 — the pooled one only — up to ``max_bins``, default :data:`MAX_BINS`) is chosen like
    the rest of a calibration, on images the fit did not see: the images are split into two random halves, each
    half's bins score the other half's images in the bin of their value, and the count with the lowest Gaussian
    negative log-likelihood per pixel wins, each bin beyond the first having to gain ``BIN_MIN_GAIN`` on each
    half's images (a gain only one half shows is noise of a small calibration set).  A count
    whose bins fall short of ``fit_calibration``'s rules (``MIN_IMAGES``, ``MIN_PIXELS`` per half) in a half is not
    tried.  ``report`` receives (count, held-out NLL per pixel) of every count tried.
    """
    options = {
        "data": data, "n_bins": n_bins, "smoothing_candidates": smoothing_candidates,
        "feature_candidates": feature_candidates,
    }  # fmt: skip
    if len(values) != len(errors):
        raise CalibrationError(f"{len(values)} values of {condition} for {len(errors)} images")

    def fit(idx: list[int]) -> Calibration:
        subset = None if means is None else [means[i] for i in idx]
        return fit_calibration([raw_variances[i] for i in idx], [errors[i] for i in idx], n_samples, method, eta,
                               steps, means=subset, **options)  # fmt: skip

    pooled = fit(list(range(len(errors))))
    order = np.random.default_rng(1).permutation(len(errors))  # its own split: not the one inside fit_calibration
    halves = (sorted(order[: (len(errors) + 1) // 2].tolist()), sorted(order[(len(errors) + 1) // 2 :].tolist()))
    data_ = (raw_variances, errors, means, n_samples)
    held_out: list[tuple[int, list[float]]] = []  # (count, NLL per pixel on each half's images)
    for count in range(1, (MAX_BINS[condition] if max_bins is None else max_bins) + 1):
        try:
            per_half = []
            for fit_half, test_half in (halves, halves[::-1]):
                part, n = _held_out_nll(_fit_bins(fit_half, values, count, fit, condition), test_half, data_, values,
                                        condition)  # fmt: skip
                per_half.append(part / max(n, 1))
        except CalibrationError:
            break  # a bin too small in a half: no more bins than this
        held_out.append((count, per_half))
        if report is not None:
            report.append((count, float(np.mean(per_half))))
    pooled_nll = held_out[0][1] if held_out else [0.0, 0.0]
    confirmed = [  # counts whose every extra bin gains BIN_MIN_GAIN on *each* half's images
        (float(np.mean(nll)) + BIN_MIN_GAIN * (c - 1), c)
        for c, nll in held_out
        if c == 1 or all(b < a - BIN_MIN_GAIN * (c - 1) for a, b in zip(pooled_nll, nll, strict=True))
    ]
    best = min(confirmed) if confirmed else None
    count = 1 if best is None else best[1]
    if count == 1:
        return [pooled]
    return [pooled, *_fit_bins(list(range(len(errors))), values, count, fit, condition)]
