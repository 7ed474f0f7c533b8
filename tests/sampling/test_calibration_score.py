"""The calibration's score: the raw spread blended with the mean's local structure, the plane's edge or its own
finer-scale spread — known answers, its reach, and fits that use a feature exactly when it explains the error."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm.sampling.calibration import error_std_factor, fit_calibration, posterior_std
from napari_cvdm.sampling.calibration_score import Score, coarse_structure, edge_distance, local_structure

N = 8


def test_the_local_structure_of_a_ramp_is_its_slope_everywhere() -> None:
    yy, xx = np.mgrid[:40, :30].astype(np.float64)
    ramp = 0.3 * xx - 0.1 * yy
    for sigma_px in (0.0, 1.0, 3.0):
        np.testing.assert_allclose(local_structure(ramp, sigma_px), np.hypot(0.3, 0.1), rtol=1e-9)
    stack = np.stack([ramp, 2 * ramp])  # leading axes are channels, never differenced
    np.testing.assert_allclose(local_structure(stack, 1.0)[1], 2 * np.hypot(0.3, 0.1), rtol=1e-9)


def test_the_score_blends_spread_and_feature_geometrically() -> None:
    xx = np.mgrid[:16, :16][1].astype(np.float64)
    mean, variance = 0.4 * xx, np.full((16, 16), 0.01)  # f = 0.4, s = 0.1
    np.testing.assert_allclose(Score()(variance), 0.1)
    np.testing.assert_allclose(Score(0.0, "structure", 1.0, 2.0)(variance, mean), 0.4)
    np.testing.assert_allclose(Score(1.0, "structure", 0.5, 2.0)(variance, mean), np.sqrt(0.1 * 0.4))
    with pytest.raises(ValueError, match="pass the mean"):
        Score(0.0, "structure", 0.5, 1.0)(variance)
    with pytest.raises(ValueError, match="differ in shape"):
        Score(0.0, "structure", 0.5, 1.0)(variance, mean[:8])


def test_the_border_feature_knows_where_the_planes_edge_is_and_stops_at_the_clip() -> None:
    d = edge_distance((7, 5))
    np.testing.assert_array_equal(d[3], [0, 1, 2, 1, 0])
    np.testing.assert_array_equal(d[:, 2], [0, 1, 2, 2, 2, 1, 0])
    np.testing.assert_array_equal(edge_distance((2, 5), first_row=3, plane_rows=7), d[3:5])  # a band of the plane
    border = Score(0.0, "border", 1.0, 10.0, clip_px=1.0)
    f = border.feature_map(None, (7, 5))
    np.testing.assert_allclose(f[3], 1 / (1 + np.array([0, 1, 1, 1, 0]) / 10))  # 2 px from the edge counts as 1


def test_the_reach_covers_the_gradient_and_both_gaussians() -> None:
    assert Score().reach() == 0 and Score(2.5).reach() == 10
    assert Score(0.0, "structure", 0.5, 0.0).reach() == 1  # central differences only
    assert Score(1.0, "structure", 0.5, 3.0).reach() == 13  # 1 + int(4·3 + 0.5)
    assert Score(4.0, "structure", 0.5, 1.0).reach() == 16  # the variance smoothing reaches further
    assert Score(1.0, "border", 0.5, 64.0).reach() == 4  # positional: no neighbours
    assert Score(1.0, "detail", 0.5, 2.0).reach() == 8  # the detail's own smoothing
    assert Score(16.0, "detail", 0.5, 0.0).reach() == 64
    assert Score(1.0, "coarse", 0.5, 2.0).reach() == 64 + 8  # its wide Gaussian (8 × 2 px), then its average


def test_the_coarse_structure_sees_the_band_it_names_and_not_a_constant_or_fine_texture() -> None:
    xx = np.mgrid[:256, :256][1].astype(np.float64)
    wave = lambda period: np.sin(2 * np.pi * xx / period)  # noqa: E731
    inside = coarse_structure(5.0 + wave(64.0), 4.0)  # band 2–32 px: a 64 px wave passes, the offset does not
    assert 0.3 < np.median(inside[:, 64:192]) < 0.75  # RMS of the part the band passes, at most the wave's 0.71
    assert np.max(coarse_structure(5.0 + 0.5 * wave(4.0), 4.0)[:, 16:240]) < 0.02  # a 4 px texture is blurred away
    np.testing.assert_allclose(coarse_structure(np.full((64, 64), 3.0), 4.0), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="coarse structure of the mean"):
        Score(4.0, "coarse", 0.5, 4.0)(np.ones((8, 8)))


def test_the_detail_score_is_the_geometric_mean_of_two_smoothings_of_the_spread() -> None:
    rng = np.random.default_rng(4)
    variance = rng.chisquare(N - 1, (40, 40)) / (N - 1) * 0.01
    coarse, fine = Score(8.0).spread(variance), Score(1.0).spread(variance)
    np.testing.assert_allclose(Score(8.0, "detail", 0.25, 1.0)(variance), coarse**0.75 * fine**0.25, rtol=1e-12)
    with pytest.raises(ValueError, match="raw variance"):
        Score(8.0, "detail", 0.5, 1.0).feature_map(None, (40, 40))


def structured(rng: np.random.Generator, n_images: int, size: int = 128):
    """Images whose error follows the local structure of the mean (a texture whose strength grows across the image
    in a random direction) while the raw sample spread is the same everywhere: the case where the spread alone
    cannot say where the error is."""
    raws, errs, means = [], [], []
    yy, xx = np.mgrid[:size, :size] / size
    for _ in range(n_images):
        strength = (xx if rng.random() < 0.5 else yy) ** 2
        mean = 0.2 * np.sin(3 * xx + rng.uniform(0, 6)) + 0.3 * strength * rng.normal(size=(size, size))
        f = local_structure(mean, 1.0)
        raw_var = 0.02**2 * rng.chisquare(N - 1, (size, size)) / (N - 1)
        errs.append(rng.normal(size=(size, size)) * (0.005 + 0.5 * f) * error_std_factor(N))
        raws.append(raw_var)
        means.append(mean)
    return raws, errs, means


def _ratios(cal, raws, errs, means) -> tuple[float, float]:
    """err²/σ² of the most and of the least textured third of the pixels."""
    pairs = zip(raws, means, strict=True)
    sigma = np.concatenate([(posterior_std(cal, r, m) * error_std_factor(N)).ravel() for r, m in pairs])
    err = np.concatenate([e.ravel() for e in errs])
    f = np.concatenate([local_structure(m, 1.0).ravel() for m in means])
    rough, smooth = f > np.quantile(f, 2 / 3), f < np.quantile(f, 1 / 3)
    return float(np.mean(err[rough] ** 2) / np.mean(sigma[rough] ** 2)), float(
        np.mean(err[smooth] ** 2) / np.mean(sigma[smooth] ** 2)
    )


def test_when_the_error_follows_the_structure_the_fit_blends_it_in_and_both_regions_are_calibrated() -> None:
    raws, errs, means = structured(np.random.default_rng(0), 8)
    fresh = structured(np.random.default_rng(1), 6)
    blended = fit_calibration(raws, errs, N, "gamma", 1.0, 10, means=means, smoothing_candidates=(0.0, 2.0))
    assert blended.score_feature == "structure" and blended.feature_weight >= 0.5 and blended.version == 5
    rough, smooth = _ratios(blended, *fresh)
    assert 0.8 < rough < 1.25 and 0.8 < smooth < 1.25
    spread_only = fit_calibration(raws, errs, N, "gamma", 1.0, 10, smoothing_candidates=(0.0, 2.0))
    assert spread_only.score_feature != "structure"
    rough, smooth = _ratios(spread_only, *fresh)
    assert rough > 1.5 and smooth < 0.5  # one map for all: too narrow on texture, too wide where smooth


def test_a_structure_that_explains_nothing_is_left_out() -> None:
    rng = np.random.default_rng(2)
    raws, errs, means = [], [], []
    yy, xx = np.mgrid[:128, :128] / 128
    for _ in range(8):  # the error follows the spread; the mean's texture is unrelated to either
        true_raw = 0.01 + 0.05 * (1 + np.sin(6 * xx + rng.uniform(0, 6))) * (1 + np.cos(5 * yy))
        raws.append(true_raw**2 * rng.chisquare(N - 1, true_raw.shape) / (N - 1))
        errs.append(rng.normal(size=true_raw.shape) * 2.0 * true_raw * error_std_factor(N))
        means.append(rng.normal(size=true_raw.shape) * rng.uniform(0.1, 1.0))
    cal = fit_calibration(raws, errs, N, "gamma", 1.0, 10, means=means, smoothing_candidates=(2.0,))
    assert cal.score_feature == "spread" and cal.feature_weight == 0 and cal.feature_px == 0


def test_errors_that_grow_towards_the_edge_are_scored_by_the_border() -> None:
    """Phase-like: a smooth error field twice as large at the plane's edge as inside, the same spread everywhere."""
    rng = np.random.default_rng(3)
    size = 128
    near = 1 / (1 + edge_distance((size, size)) / 16)  # 1 at the edge, 0.2 at the centre
    raws, errs = [], []
    for _ in range(12):
        raws.append(0.02**2 * rng.chisquare(N - 1, (size, size)) / (N - 1))
        errs.append(rng.normal(size=(size, size)) * 0.03 * (0.5 + near) * error_std_factor(N))
    cal = fit_calibration(raws[:8], errs[:8], N, "gamma", 1.0, 10, smoothing_candidates=(0.0,))
    assert cal.score_feature == "border" and cal.feature_clip_px == 63
    sigma = np.stack([posterior_std(cal, r) * error_std_factor(N) for r in raws[8:]])
    err = np.stack(errs[8:])
    edge = edge_distance((size, size)) < 8
    for where in (edge, ~edge):
        assert 0.8 < np.mean(err[:, where] ** 2) / np.mean(sigma[:, where] ** 2) < 1.25


def test_when_the_images_level_and_the_pixels_pattern_scale_differently_the_detail_is_blended_in() -> None:
    """Phase-like: an image's error grows as its spread to the power 1.7 (a region-level property), a pixel's only
    in proportion to its own spread.  No single smoothing of the spread gives both; the coarse level blended with
    the fine spread does, and calibrates the pixels that spread least and most in each image."""
    rng = np.random.default_rng(5)
    size = 96
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    raws, errs, patterns = [], [], []
    for _ in range(14):
        level = rng.uniform(0.02, 0.2)
        pattern = np.exp(0.6 * np.sin(2 * np.pi * (xx * rng.uniform(0.05, 0.1) + yy * rng.uniform(0.05, 0.1))))
        raw_std = level * pattern
        raws.append(raw_std**2 * rng.chisquare(N - 1, raw_std.shape) / (N - 1))
        errs.append(rng.normal(size=raw_std.shape) * 3 * level**1.7 * pattern * error_std_factor(N))
        patterns.append(pattern)
    cal = fit_calibration(raws[:10], errs[:10], N, "gamma", 1.0, 10, smoothing_candidates=(0.0, 1.0, 32.0))
    assert cal.score_feature == "detail" and cal.smoothing_px == 32 and 0.25 <= cal.feature_weight <= 0.75
    for raw, err, pattern in zip(raws[10:], errs[10:], patterns[10:], strict=True):
        sigma = posterior_std(cal, raw) * error_std_factor(N)
        for where in (pattern < np.quantile(pattern, 1 / 3), pattern > np.quantile(pattern, 2 / 3)):
            assert 0.7 < np.mean(err[where] ** 2) / np.mean(sigma[where] ** 2) < 1.4


def test_a_blend_that_ranks_pixels_better_but_puts_the_images_levels_further_off_is_not_chosen() -> None:
    from napari_cvdm.sampling.calibration import _choose_score

    spread, blend = Score(1.0), Score(64.0, "detail", 0.5, 1.0)
    sizes = [1000, 1000]
    better_pixels = (-4.02, -4.01)  # out-of-half NLL per pixel on each half: a gain of 0.09 on both
    tried = [(spread, (-3.93, -3.92), 0.55), (Score(0.0), (-3.90, -3.90), 0.50)]
    assert _choose_score([*tried, (blend, better_pixels, 0.72)], sizes) == spread  # images' levels worse
    assert _choose_score([*tried, (blend, better_pixels, 0.40)], sizes) == blend  # and better: kept
    assert _choose_score([*tried, (blend, better_pixels, 0.555)], sizes) == blend  # level within noise
    assert _choose_score([*tried, (blend, (-4.02, -3.922), 0.40)], sizes) == spread  # one half does not confirm


def test_sr_calibrations_try_the_structure_and_the_border_but_not_the_phase_features() -> None:
    from napari_cvdm.sampling.calibration import FEATURE_CANDIDATES, feature_candidates_for

    assert feature_candidates_for("phase") == FEATURE_CANDIDATES
    sr = {f for f, _, _ in feature_candidates_for("super-resolution")}
    assert sr == {"structure", "border"}
