"""Calibrating the spread of the samples: raw sample std → the expected error of the mean, and central intervals.

The sample variance of N CVDM samples understates the error of their mean several-fold (the bundled models'
err²/var is 2–5 where 1 + 1/N is calibrated).  A :class:`~napari_cvdm.model.metadata.Calibration` fixes that per
sampler setting with what held-out pairs say:

1. the raw variance is optionally smoothed (a Gaussian of ``smoothing_px`` output pixels: N = 8 samples give a noisy
   estimate of each pixel's spread, and neighbouring pixels share most of it);
2. a monotone map g turns each pixel's score u into the posterior std σ = g(u): u is the raw std s, or, where the
   held-out pairs show that it ranks the error better, s^(1−w)·f^w, which blends in the local structure f of the
   mean (:mod:`.calibration_score`).  Pixels are put in equal-count bins by u, each bin's σ² is
   mean(err²) / (1 + 1/N_cal) (the error of an N-sample mean of a calibrated posterior has variance σ²(1 + 1/N)),
   and pool-adjacent-violators makes σ non-decreasing in u.  Between the knots g is linear in log u; below the
   first it is constant, above the last proportional to u;
3. the error std of the mean of N samples is σ·√(1 + 1/N); the central interval at level q is mean ± z_q times it,
   with z_q the conformal quantile of |err| / (σ·√(1 + 1/N)) cross-fitted over two random halves of the calibration
   images (the map of one half scores the other), so the interval covers a fraction ≈ q of pixels on data like the
   calibration set;
4. the map depends on the conditions of the images (phase: the noise; SR models trained over many microscopes: the
   optics), so calibrations are also fitted per bin of a condition known at reconstruction, and a reconstruction
   picks the bin of its own plane (:mod:`.calibration_bins`).

All values are in network units (the normalised target), where the network learned its spread; the caller maps
them to physical units with the same linear scale as the mean.  NumPy and SciPy only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from ..model.metadata import Calibration, SamplerMethod
from .calibration_score import Score, farthest_from_edge

INTERVAL_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)  # stored z_q; others are interpolated
# chosen by the Gaussian log-likelihood on the held-out half: a few pixels where the spread says which pixel errs
# (SR), tens where it says which region or image errs most (phase, whose errors are smooth low-frequency fields)
SMOOTHING_CANDIDATES_PX = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
# (feature, weight w, width px) blended into the score, tried next to the raw spread alone (the structures only where
# the means are given); calibration_score says what they are
FEATURE_CANDIDATES: tuple[tuple[str, float, float], ...] = (
    *(("structure", w, px) for w in (0.25, 0.5, 0.75, 1.0) for px in (1.0, 3.0)),
    *(("border", w, px) for w in (0.25, 0.5, 0.75) for px in (16.0, 32.0, 64.0)),
    *(("coarse", w, px) for w in (0.25, 0.5) for px in (8.0, 16.0, 32.0)),
    *(("detail", w, px) for w in (0.25, 0.5, 0.75) for px in (0.0, 1.0, 2.0)),  # only under a wider smoothing
)
MEAN_FEATURES = ("structure", "coarse")  # the features computed from the mean
PHASE_FEATURES = ("coarse", "detail")  # made for the phase inversion's error (feature_candidates_for)
FEATURE_MIN_GAIN = 0.005  # nats per pixel a blend must gain over the raw spread alone: none is chosen by chance
LEVEL_TOLERANCE = 0.01  # how far a blend may raise the images' mean log² level over the spread's (sampling noise;
# 0.01 is an RMS factor of e^0.1 ≈ 1.1 in an image's error bars)
DEFAULT_BINS = 24
MIN_PIXELS = 10_000  # fewer pixels (per half) than this give no calibration
MIN_IMAGES = 2  # one half fits the map, the other the interval quantiles


class CalibrationError(ValueError):
    """The calibration data cannot support a calibration (too few images or pixels, shapes that disagree)."""


def feature_candidates_for(task: str) -> tuple[tuple[str, float, float], ...]:
    """The blends a calibration of a ``task`` model tries next to the raw spread.  The coarse structure and the
    two-scale detail describe the phase inversion's error (a TIE-type inversion determines the low spatial
    frequencies worst, and an image's error grows as its spread to the power 1.7); an SR model's error follows the
    pixel's own spread (power 1.1), and there, chosen by the likelihood of 24 calibration pairs, both spread the
    structure families' error-bar levels further apart on the bench's rows than the spread alone (docs/uncertainty.md).
    SR tries the structure and the border."""
    if task == "phase":
        return FEATURE_CANDIDATES
    return tuple(c for c in FEATURE_CANDIDATES if c[0] not in PHASE_FEATURES)


def error_std_factor(n_samples: int) -> float:
    """√(1 + 1/N): the error std of an N-sample mean over the posterior std, for a calibrated posterior."""
    return math.sqrt(1.0 + 1.0 / max(n_samples, 1))


def score_of(calibration: Calibration) -> Score:
    """How ``calibration`` scores pixels (:mod:`~napari_cvdm.sampling.calibration_score`)."""
    return Score(
        calibration.smoothing_px, calibration.score_feature, calibration.feature_weight, calibration.feature_px,
        calibration.feature_clip_px,
    )  # fmt: skip


def posterior_std(
    calibration: Calibration,
    raw_variance: np.ndarray,
    mean: np.ndarray | None = None,
    first_row: int = 0,
    plane_rows: int | None = None,
) -> np.ndarray:
    """σ = g(u) of every pixel, network units.  u is the raw std (``raw_variance`` smoothed as the calibration
    says), blended with the local structure of ``mean`` (network units, same shape) or the nearness to the plane's
    edge when the calibration says so; the arrays are rows [first_row, …) of a plane of ``plane_rows`` rows
    (default: the whole plane)."""
    return _map_score(calibration, score_of(calibration)(raw_variance, mean, first_row, plane_rows))


def _map_score(calibration: Calibration, raw_std: np.ndarray) -> np.ndarray:
    """g(u): the calibration's knots applied to scores ``raw_std`` (linear in log u between knots)."""
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


def rests_on(c: Calibration) -> str:
    """What a calibration rests on, in words: its images, pixels and data, and its score where it is not the raw
    spread alone."""
    about = (
        f"{c.n_images} held-out images ({c.n_pixels:,} pixels): {c.data}" if c.data else f"{c.n_images} held-out images"
    )
    if c.feature_weight > 0 and c.score_feature == "structure":
        about += (
            f"; each pixel's error bar follows its sample spread and the local structure of the mean (weight "
            f"{c.feature_weight:g}, over {c.feature_px:g} px)"
        )
    elif c.feature_weight > 0 and c.score_feature == "coarse":
        about += (
            f"; each pixel's error bar follows its sample spread and the coarse structure of the mean (weight "
            f"{c.feature_weight:g}, band {c.feature_px / 2:g}–{8 * c.feature_px:g} px), where the errors were measured "
            "to be larger"
        )
    elif c.feature_weight > 0 and c.score_feature == "detail":
        about += (
            f"; each pixel's error bar follows its region's sample spread (over {c.smoothing_px:g} px) and, with "
            f"weight {c.feature_weight:g}, its own (over {c.feature_px:g} px)"
        )
    elif c.feature_weight > 0 and c.score_feature == "border":
        about += (
            f"; each pixel's error bar follows its sample spread and its distance to the plane's edge (weight "
            f"{c.feature_weight:g}, length {c.feature_px:g} px), where the errors were measured to be larger"
        )
    return about


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
    s = np.maximum(s, max(float(s[-1]) * 1e-12, 1e-30))  # a spread of exactly 0 (degenerate pixels) keeps log u finite
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


def _choose_score(tried: list[tuple[Score, tuple[float, float], float]], sizes: list[int]) -> Score:
    """The best raw-spread score by pooled out-of-half NLL, replaced by the best blend only when that blend gains
    more than ``FEATURE_MIN_GAIN`` nats per pixel on *each* half's images (a gain one half does not confirm is noise
    of a small calibration set, not a property of the model) and does not put the images' levels further off: its
    out-of-half mean of log²(mean(err²)/mean(σ²)) over the images exceeds the spread's by at most
    ``LEVEL_TOLERANCE``.  The pixels' likelihood rewards a score that ranks the pixels within an image; the error
    bars a user reads must also hold image by image, and a blend can trade one for the other (on SR, the fine detail
    under a 64 px spread ranks the pixels better but reads sparse images' errors too small)."""

    def pooled(nll: tuple[float, float]) -> float:
        return (nll[0] * sizes[1] + nll[1] * sizes[0]) / sum(sizes)  # nll: (on halves[1]'s images, on halves[0]'s)

    spread = min((t for t in tried if not t[0].blended), key=lambda t: pooled(t[1]))
    confirmed = [
        t
        for t in tried
        if t[0].blended
        and all(b < a - FEATURE_MIN_GAIN for a, b in zip(spread[1], t[1], strict=True))
        and t[2] <= spread[2] + LEVEL_TOLERANCE
    ]
    return (min(confirmed, key=lambda t: pooled(t[1])) if confirmed else spread)[0]


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ⌈(n + 1)q⌉-th smallest of n scores: an interval with it covers ≥ q of exchangeable new scores."""
    n = scores.size
    rank = min(math.ceil((n + 1) * level), n)
    return float(np.partition(scores, rank - 1)[rank - 1])


def check_calibration_size(n_images: int, n_samples: int) -> None:
    """Refuse a calibration that cannot be fitted, before any image is reconstructed for it."""
    if n_images < MIN_IMAGES:
        raise CalibrationError(
            f"calibration needs at least {MIN_IMAGES} held-out images (one half fits the map, the other measures "
            f"the intervals); got {n_images}: give more pairs"
        )
    if n_samples < 2:
        raise CalibrationError(
            f"calibration needs at least 2 samples per image (a spread to calibrate); got {n_samples}: draw 2 or "
            "more (the reconstructions it is for should draw as many)"
        )


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
    means: Sequence[np.ndarray] | None = None,
    feature_candidates: Sequence[tuple[str, float, float]] = FEATURE_CANDIDATES,
    report: list[tuple[Score, float, float]] | None = None,
) -> Calibration:
    """Fit a :class:`Calibration` from held-out images (whole planes): per image, the raw sample variance of
    ``n_samples`` samples and the error of their mean (network units, same shape), and optionally the mean itself
    (``means``).  ``feature_candidates`` — (feature, weight, width px) — are the blends of the score tried next to
    the raw spread alone (:mod:`~napari_cvdm.sampling.calibration_score`; the structure only with ``means``).
    ``report``: a list that receives each score tried, its out-of-half negative log-likelihood per pixel and its
    out-of-half mean of log²(mean(err²)/mean(σ²)) over the images.

    Cross-fitted in two halves of the images (a seeded random split, so no cycle in the images' order — e.g.
    structure families in turn — lines up with it): the map fitted on one half scores the other, which chooses the
    smoothing and the score's blend (Gaussian log-likelihood of the out-of-half errors; a blend also must not put
    the images' levels further off, :func:`_choose_score`) and gives the conformal interval quantiles from the
    out-of-half scores of both halves, so the stored intervals are measured on images their map never saw.  The
    stored map is then fitted on all images with the chosen score.  Raises :class:`CalibrationError` with too few
    images or pixels.
    """
    if len(raw_variances) != len(errors):
        raise CalibrationError(f"{len(raw_variances)} variance maps but {len(errors)} error maps")
    check_calibration_size(len(errors), n_samples)
    for k, (v, e) in enumerate(zip(raw_variances, errors, strict=True)):
        if np.shape(v) != np.shape(e):
            raise CalibrationError(f"image {k}: variance {np.shape(v)} and error {np.shape(e)} differ in shape")
        if means is not None and np.shape(means[k]) != np.shape(e):
            raise CalibrationError(f"image {k}: mean {np.shape(means[k])} and error {np.shape(e)} differ in shape")
    if means is not None and len(means) != len(errors):
        raise CalibrationError(f"{len(means)} means for {len(errors)} images")
    order = np.random.default_rng(0).permutation(len(errors))
    halves = (sorted(order[: (len(errors) + 1) // 2]), sorted(order[(len(errors) + 1) // 2 :]))
    sizes = [sum(np.size(errors[i]) for i in half) for half in halves]
    if min(sizes) < MIN_PIXELS:
        raise CalibrationError(
            f"calibration needs at least {MIN_PIXELS:,} pixels in each half of the images; got {sizes[0]:,} and "
            f"{sizes[1]:,}: give more or larger held-out images"
        )
    errs = [np.asarray(e, dtype=np.float64).ravel() for e in errors]
    blends = [("spread", 0.0, 0.0)]
    blends += [(f, w, px) for f, w, px in feature_candidates if w > 0 and (f not in MEAN_FEATURES or means is not None)]
    clip = max(farthest_from_edge(np.shape(e)) for e in errors)  # the border's distances stop at the calibration's
    features = {  # f of every image, flat, per (feature, width): computed once (the detail, a cheap fine smoothing
        # of the spread, when it is tried, so that the fit's memory does not grow with its widths)
        (f, px): [
            Score(feature=f, weight=1.0, width_px=px, clip_px=clip)  # type: ignore[arg-type]
            .feature_map(None if means is None else means[i], np.shape(errors[i]))
            .ravel()
            for i in range(len(errors))
        ]
        for f, _, px in blends[1:]
        if f != "detail"
    }

    def fitted(indices: Sequence[int], u: list[np.ndarray], score: Score) -> Calibration:
        pooled_u, pooled_err = np.concatenate([u[i] for i in indices]), np.concatenate([errs[i] for i in indices])
        knots, sigma = _fit_map(pooled_u, pooled_err, n_samples, n_bins)
        return Calibration(
            method=method, eta=eta, steps=steps, n_samples=n_samples, smoothing_px=score.smoothing_px,
            score_feature=score.feature, feature_weight=score.weight, feature_px=score.width_px,
            feature_clip_px=score.clip_px, raw_std=knots.tolist(), calibrated_std=sigma.tolist(),
            interval_z={"0.9": 1.645}, n_images=len(errors), n_pixels=sum(sizes), data=data,
        )  # fmt: skip

    def held_out(u: list[np.ndarray], score: Score) -> tuple[tuple[float, float], float, np.ndarray]:
        """NLL per pixel of each half's images under the other half's map of score ``u``, the mean over the images
        of log²(mean(err²)/mean(std²)) under it (0 when every image's level is right), and their |err|/std."""
        per_half, ratios, image_levels = [], [], []
        for fit_half, test_half in (halves, halves[::-1]):
            provisional = fitted(fit_half, u, score)
            std = _map_score(provisional, np.concatenate([u[i] for i in test_half])) * error_std_factor(n_samples)
            err = np.concatenate([errs[i] for i in test_half])
            per_half.append(float(np.mean(np.log(std) + 0.5 * np.square(err / std))))
            ratios.append(np.abs(err) / std)
            bounds = np.cumsum([0] + [errs[i].size for i in test_half])
            image_levels += [
                math.log(np.mean(np.square(err[a:b])) / np.mean(np.square(std[a:b])))
                for a, b in itertools.pairwise(bounds)
            ]
        return (per_half[0], per_half[1]), float(np.mean(np.square(image_levels))), np.concatenate(ratios)

    def score_maps(score: Score, spread: list[np.ndarray]) -> list[np.ndarray]:
        if not score.blended:
            return spread
        if score.feature == "detail":
            fine = (Score(score.width_px).spread(v).ravel() for v in raw_variances)
            return [score.combine(s, f) for s, f in zip(spread, fine, strict=True)]
        return [score.combine(s, f) for s, f in zip(spread, features[score.feature, score.width_px], strict=True)]

    # every score's out-of-half NLL per pixel; only the chosen score's maps are kept (each score's maps and ratios
    # cost 16 bytes per pixel, and the candidates number over a hundred)
    tried: list[tuple[Score, tuple[float, float], float]] = []
    for smoothing in smoothing_candidates:
        spread = [Score(float(smoothing)).spread(v).ravel() for v in raw_variances]
        for feature, weight, px in blends:
            if feature == "detail" and px >= smoothing:
                continue  # a detail no finer than the smoothing is the spread at another smoothing, tried already
            score = Score(float(smoothing))
            if weight > 0:
                score = Score(float(smoothing), feature, float(weight), float(px), clip if feature == "border" else 0.0)  # type: ignore[arg-type]
            nll, levels, _ = held_out(score_maps(score, spread), score)
            if report is not None:
                report.append((score, (nll[0] * sizes[1] + nll[1] * sizes[0]) / sum(sizes), levels))
            tried.append((score, nll, levels))
    chosen = _choose_score(tried, sizes)
    u = score_maps(chosen, [Score(chosen.smoothing_px).spread(v).ravel() for v in raw_variances])
    _, _, out_of_half = held_out(u, chosen)
    calibration = fitted(range(len(errors)), u, chosen)
    calibration.interval_z = {f"{q:g}": conformal_quantile(out_of_half, q) for q in INTERVAL_LEVELS}
    return calibration
