"""Calibrating the spread of the samples: raw sample std → the expected error of the mean, and central intervals.

The sample variance of N CVDM samples understates the error of their mean several-fold (the bundled models'
err²/var is 2–5 where 1 + 1/N is calibrated).  A :class:`~napari_cvdm.model.metadata.Calibration` fixes that per
sampler setting with what held-out pairs say:

1. the raw variance is optionally smoothed (a Gaussian of ``smoothing_px`` output pixels: N = 8 samples give a noisy
   estimate of each pixel's spread, and neighbouring pixels share most of it);
2. a monotone map g turns the raw std s into the posterior std σ = g(s): pixels are put in equal-count bins by s,
   each bin's σ² is mean(err²) / (1 + 1/N_cal) (the error of an N-sample mean of a calibrated posterior has
   variance σ²(1 + 1/N)), and pool-adjacent-violators makes σ non-decreasing in s.  Between the knots g is linear
   in log s; below the first it is constant, above the last proportional to s;
3. the error std of the mean of N samples is σ·√(1 + 1/N); the central interval at level q is mean ± z_q times it,
   with z_q the conformal quantile of |err| / (σ·√(1 + 1/N)) cross-fitted over two random halves of the calibration
   images (the map of one half scores the other), so the interval covers a fraction ≈ q of pixels on data like the
   calibration set;
4. for phase, the map depends on the noise: calibrations are also fitted per bin of the noise level ξ estimated
   from each calibration input (:func:`fit_noise_calibrations`), and a reconstruction picks the bin of its own
   plane's estimate (:func:`select_calibration`), the pooled calibration where there is no estimate.

All values are in network units (the normalised target), where the network learned its spread; the caller maps
them to physical units with the same linear scale as the mean.  NumPy and SciPy only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from ..model.metadata import Calibration, SamplerMethod

INTERVAL_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)  # stored z_q; others are interpolated
SMOOTHING_CANDIDATES_PX = (0.0, 1.0, 2.0, 4.0)  # chosen by the Gaussian log-likelihood on the held-out half
DEFAULT_BINS = 24
MIN_PIXELS = 10_000  # fewer pixels (per half) than this give no calibration
MIN_IMAGES = 2  # one half fits the map, the other the interval quantiles
NOISE_BINS = 3  # bins of the estimated phase noise ξ fitted next to the pooled calibration (fewer if too small)


class CalibrationError(ValueError):
    """The calibration data cannot support a calibration (too few images or pixels, shapes that disagree)."""


def smooth_variance(variance: np.ndarray, sigma_px: float) -> np.ndarray:
    """``variance`` blurred over its last two axes by a Gaussian of ``sigma_px`` pixels (0: unchanged)."""
    variance = np.asarray(variance, dtype=np.float64)
    if sigma_px <= 0:
        return variance
    from scipy.ndimage import gaussian_filter

    sigma = (0,) * (variance.ndim - 2) + (sigma_px, sigma_px)
    return gaussian_filter(variance, sigma=sigma, mode="reflect")


def error_std_factor(n_samples: int) -> float:
    """√(1 + 1/N): the error std of an N-sample mean over the posterior std, for a calibrated posterior."""
    return math.sqrt(1.0 + 1.0 / max(n_samples, 1))


def posterior_std(calibration: Calibration, raw_variance: np.ndarray) -> np.ndarray:
    """σ = g(raw std) of every pixel, network units; ``raw_variance`` is smoothed as the calibration says."""
    raw_std = np.sqrt(np.maximum(smooth_variance(raw_variance, calibration.smoothing_px), 0.0))
    knots = np.asarray(calibration.raw_std, dtype=np.float64)
    values = np.asarray(calibration.calibrated_std, dtype=np.float64)
    if knots.size == 1:
        return np.maximum(values[0], values[0] / knots[0] * raw_std)
    tiny = knots[0] * 1e-6
    log_s = np.log(np.maximum(raw_std, tiny))
    sigma = np.interp(log_s, np.log(knots), values)  # constant below the first knot
    above = raw_std > knots[-1]
    sigma[above] = values[-1] * raw_std[above] / knots[-1]  # proportional above the last
    return sigma


def interval_multiplier(calibration: Calibration, level: float) -> float:
    """z_q of the central interval at ``level``, interpolated between the stored levels."""
    levels = sorted((float(k), v) for k, v in calibration.interval_z.items())
    qs, zs = np.array([q for q, _ in levels]), np.array([z for _, z in levels])
    if not qs[0] - 1e-9 <= level <= qs[-1] + 1e-9:
        raise ValueError(
            f"interval level {level:g} is outside the calibrated levels {qs[0]:g}–{qs[-1]:g}; pick one in that range"
        )
    return float(np.interp(level, qs, zs))


def _about(c: Calibration) -> str:
    return (
        f"{c.n_images} held-out images ({c.n_pixels:,} pixels): {c.data}" if c.data else f"{c.n_images} held-out images"
    )


def _xi_range(c: Calibration) -> str:
    assert c.noise_xi is not None
    return f"{c.noise_xi[0]:.2g}–{c.noise_xi[1]:.2g}"  # two significant digits: a low edge never reads 0.00


def noise_bins(calibrations: Sequence[Calibration], chosen: Calibration) -> list[Calibration]:
    """The noise-conditioned calibrations of ``chosen``'s sampler setting (method, η, steps), by ξ range."""
    same = [
        c
        for c in calibrations
        if c.noise_xi is not None
        and (c.method, c.steps) == (chosen.method, chosen.steps)
        and abs(c.eta - chosen.eta) < 1e-9
    ]
    return sorted(same, key=lambda c: c.noise_xi or (0.0, 0.0))


def _by_noise(bins: list[Calibration], noise_xi: float) -> tuple[Calibration, str]:
    """The bin whose estimated-ξ range holds ``noise_xi`` (else the nearest, said so) and its sentence."""
    inside = [c for c in bins if c.noise_xi is not None and c.noise_xi[0] <= noise_xi <= c.noise_xi[1]]
    if inside:
        best, where = inside[0], ""
    else:
        best = min(bins, key=lambda c: min(abs(noise_xi - c.noise_xi[0]), abs(noise_xi - c.noise_xi[1])))
        low, high = bins[0].noise_xi[0], bins[-1].noise_xi[1]
        side = "below" if noise_xi < low else "above" if noise_xi > high else "between"
        where = f" (the image's estimated ξ {noise_xi:.2g} is {side} the calibrated {low:.2g}–{high:.2g}: nearest)"
    return best, f"calibrated for images with estimated noise ξ {_xi_range(best)}{where} on {_about(best)}"


def select_calibration(
    calibrations: Sequence[Calibration], method: str, eta: float, steps: int, noise_xi: float | None = None
) -> tuple[Calibration | None, str]:
    """The calibration for a sampler setting and one sentence saying what it rests on.

    Exact match of (method, η, steps) first; otherwise the same method and η at the nearest number of steps (said
    so: the spread changes with the steps, so that calibration is not measured for this run); otherwise none.
    Among the calibrations of that setting, ``noise_xi`` (the image's estimated phase noise ξ) picks the one fitted
    on images of that estimated ξ when the model holds such noise-conditioned calibrations; without an estimate
    (None), or without such calibrations, the pooled one (fitted on all noise levels) is used.
    """
    same = [c for c in calibrations if c.method == method and abs(c.eta - eta) < 1e-9]
    if not same:
        return None, (
            f"not calibrated: the model holds no calibration for the {method!r} sampler with η = {eta:g}; the layers "
            "show the raw sample spread, which understates the error (run `napari-cvdm calibrate`)"
        )
    nearest = min({c.steps for c in same}, key=lambda s: (abs(math.log(s) - math.log(steps)), -s))
    at = [c for c in same if c.steps == nearest]
    pooled = [c for c in at if c.noise_xi is None]
    bins = noise_bins(at, at[0])
    if bins and noise_xi is not None:
        best, note = _by_noise(bins, noise_xi)
    elif pooled:
        best = pooled[0]
        note = f"calibrated on {_about(best)}"
        if bins:
            note += (
                ", pooled over all noise levels (used where a plane's noise cannot be estimated; the others use the "
                f"calibration for their estimated noise ξ: {', '.join(_xi_range(c) for c in bins)})"
            )
    else:  # noise-conditioned calibrations only, and no estimate: the one resting on the most pixels
        best = max(bins, key=lambda c: c.n_pixels)
        note = (
            f"calibrated for images with estimated noise ξ {_xi_range(best)} on {_about(best)} (the image's noise "
            "could not be estimated and the model holds no calibration pooled over all noise levels)"
        )
    if best.steps == steps:
        return best, note
    return best, (
        f"calibrated at {best.steps} steps, applied to {steps} steps (not measured at {steps}; calibrate the model "
        f"at these steps with `napari-cvdm calibrate --steps {steps}`); {note.removeprefix('calibrated ')}"
    )


def _pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(int(n), v) for v, _, n in blocks])


def _fit_map(raw_std: np.ndarray, err: np.ndarray, n_samples: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots (raw std, posterior std) of the binned isotonic map, strictly increasing raw std."""
    order = np.argsort(raw_std, kind="stable")
    s, e2 = raw_std[order], np.square(err[order])
    edges = np.linspace(0, s.size, n_bins + 1).round().astype(int)
    knots, var, counts = [], [], []
    for a, b in itertools.pairwise(edges):
        if b > a:
            knots.append(float(np.median(s[a:b])))
            var.append(float(e2[a:b].mean()) / error_std_factor(n_samples) ** 2)
            counts.append(b - a)
    knots_arr, var_arr, w = np.array(knots), np.array(var), np.array(counts, dtype=np.float64)
    var_arr = _pool_adjacent_violators(var_arr, w)
    keep_k, keep_v, keep_w = [knots_arr[0]], [var_arr[0]], [w[0]]
    for k, v, c in zip(knots_arr[1:], var_arr[1:], w[1:], strict=True):  # merge knots with equal raw std
        if k <= keep_k[-1] * (1 + 1e-9):
            keep_v[-1] = (keep_v[-1] * keep_w[-1] + v * c) / (keep_w[-1] + c)
            keep_w[-1] += c
        else:
            keep_k.append(k)
            keep_v.append(v)
            keep_w.append(c)
    floor = max(float(np.max(keep_v)) * 1e-12, 1e-24)
    return np.array(keep_k), np.sqrt(np.maximum(np.maximum.accumulate(keep_v), floor))


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ⌈(n + 1)q⌉-th smallest of n scores: an interval with it covers ≥ q of exchangeable new scores."""
    n = scores.size
    rank = min(math.ceil((n + 1) * level), n)
    return float(np.partition(scores, rank - 1)[rank - 1])


def fit_calibration(
    raw_variances: Sequence[np.ndarray],
    errors: Sequence[np.ndarray],
    n_samples: int,
    method: SamplerMethod,
    eta: float,
    steps: int,
    data: str = "",
    n_bins: int = DEFAULT_BINS,
    smoothing_candidates: Sequence[float] = SMOOTHING_CANDIDATES_PX,
) -> Calibration:
    """Fit a :class:`Calibration` from held-out images: per image, the raw sample variance of ``n_samples``
    samples and the error of their mean (network units, same shape).

    Cross-fitted in two halves of the images (a seeded random split, so no cycle in the images' order — e.g.
    structure families in turn — lines up with it): the map fitted on one half scores the other, which chooses the
    smoothing (Gaussian log-likelihood of the out-of-half errors) and gives the conformal interval quantiles from
    the out-of-half scores of both halves, so the stored intervals are measured on images their map never saw.  The
    stored map is then fitted on all images at the chosen smoothing.  Raises :class:`CalibrationError` with too
    few images or pixels.
    """
    if len(raw_variances) != len(errors):
        raise CalibrationError(f"{len(raw_variances)} variance maps but {len(errors)} error maps")
    if len(errors) < MIN_IMAGES:
        raise CalibrationError(
            f"calibration needs at least {MIN_IMAGES} held-out images (one half fits the map, the other measures "
            f"the intervals); got {len(errors)}"
        )
    if n_samples < 2:
        raise CalibrationError("calibration needs at least 2 samples per image (a spread to calibrate)")
    for k, (v, e) in enumerate(zip(raw_variances, errors, strict=True)):
        if np.shape(v) != np.shape(e):
            raise CalibrationError(f"image {k}: variance {np.shape(v)} and error {np.shape(e)} differ in shape")
    order = np.random.default_rng(0).permutation(len(errors))
    halves = (sorted(order[: (len(errors) + 1) // 2]), sorted(order[(len(errors) + 1) // 2 :]))
    sizes = [sum(np.size(errors[i]) for i in half) for half in halves]
    if min(sizes) < MIN_PIXELS:
        raise CalibrationError(
            f"calibration needs at least {MIN_PIXELS:,} pixels in each half of the images; got {sizes[0]:,} and "
            f"{sizes[1]:,}: give more or larger held-out images"
        )
    errs = [np.asarray(e, dtype=np.float64) for e in errors]

    def fitted(indices: Sequence[int], smoothing: float) -> Calibration:
        raw = [np.sqrt(np.maximum(smooth_variance(raw_variances[i], smoothing), 0.0)).ravel() for i in indices]
        knots, sigma = _fit_map(
            np.concatenate(raw), np.concatenate([errs[i].ravel() for i in indices]), n_samples, n_bins
        )
        return Calibration(
            method=method,
            eta=eta,
            steps=steps,
            n_samples=n_samples,
            smoothing_px=float(smoothing),
            raw_std=knots.tolist(),
            calibrated_std=sigma.tolist(),
            interval_z={"0.9": 1.645},
            n_images=len(errors),
            n_pixels=sum(sizes),
            data=data,
        )

    best: tuple[float, float, np.ndarray] | None = None  # (NLL, smoothing, out-of-half scores)
    for smoothing in smoothing_candidates:
        nll_sum, scores = 0.0, []
        for fit_half, test_half in (halves, halves[::-1]):
            provisional = fitted(fit_half, smoothing)
            std = np.concatenate(
                [
                    (posterior_std(provisional, raw_variances[i]) * error_std_factor(n_samples)).ravel()
                    for i in test_half
                ]
            )
            err = np.concatenate([errs[i].ravel() for i in test_half])
            nll_sum += float(np.sum(np.log(std) + 0.5 * np.square(err / std)))
            scores.append(np.abs(err) / std)
        nll = nll_sum / sum(sizes)
        if best is None or nll < best[0]:
            best = (nll, smoothing, np.concatenate(scores))
    assert best is not None
    calibration = fitted(range(len(errors)), best[1])
    calibration.interval_z = {f"{q:g}": conformal_quantile(best[2], q) for q in INTERVAL_LEVELS}
    return calibration


def noise_groups(noise_xi: Sequence[float | None], n_bins: int) -> list[tuple[list[int], tuple[float, float]]]:
    """The images with a ξ estimate in ``n_bins`` groups of (nearly) equal count by estimated ξ (quantiles), each
    with the range of estimated ξ it stands for: from the lowest to the highest estimate of the images, split
    half-way between neighbouring groups, so the ranges touch and an image's bin is where its estimate falls."""
    known = sorted((float(x), i) for i, x in enumerate(noise_xi) if x is not None and math.isfinite(x))
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


def fit_noise_calibrations(
    raw_variances: Sequence[np.ndarray],
    errors: Sequence[np.ndarray],
    noise_xi: Sequence[float | None],
    n_samples: int,
    method: SamplerMethod,
    eta: float,
    steps: int,
    data: str = "",
    max_bins: int = NOISE_BINS,
    n_bins: int = DEFAULT_BINS,
    smoothing_candidates: Sequence[float] = SMOOTHING_CANDIDATES_PX,
) -> list[Calibration]:
    """The pooled calibration of all images (:func:`fit_calibration`), then one per bin of the images' estimated
    noise ξ (``noise_xi``, one per image, None where no estimate: pooled only).

    The images are split into ``max_bins`` quantile bins of estimated ξ, or fewer when a bin would not meet
    :func:`fit_calibration`'s rules (``MIN_IMAGES``, ``MIN_PIXELS`` per half); with fewer than 2 bins possible only
    the pooled calibration is returned.  Why: the spread-to-error map of a model trained over a noise range is not
    one map, noisier images have larger errors at the same spread, and a pooled map over- or under-states both.
    """
    options = {"data": data, "n_bins": n_bins, "smoothing_candidates": smoothing_candidates}
    pooled = fit_calibration(raw_variances, errors, n_samples, method, eta, steps, **options)
    if len(noise_xi) != len(errors):
        raise CalibrationError(f"{len(noise_xi)} noise estimates for {len(errors)} images")
    for n_bins in range(max_bins, 1, -1):
        groups = noise_groups(noise_xi, n_bins)
        if not groups:
            continue
        try:
            binned = [
                fit_calibration(
                    [raw_variances[i] for i in idx], [errors[i] for i in idx], n_samples, method, eta, steps, **options
                ).model_copy(update={"noise_xi": xi_range})
                for idx, xi_range in groups
            ]  # fmt: skip
        except CalibrationError:
            continue  # a bin too small: fewer bins
        return [pooled, *binned]
    return [pooled]
