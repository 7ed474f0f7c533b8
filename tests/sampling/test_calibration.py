"""Calibration of the sample spread: known answers, monotone maps, conformal coverage, selection, errors, and
calibrations conditioned on the estimated noise ξ."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm.model.metadata import Calibration
from napari_cvdm.sampling.calibration import (
    CalibrationError,
    _pool_adjacent_violators,
    conformal_quantile,
    error_std_factor,
    fit_calibration,
    interval_multiplier,
    posterior_std,
)
from napari_cvdm.sampling.calibration_bins import fit_binned_calibrations, quantile_groups, select_calibration

N = 8


def synthetic(
    rng: np.random.Generator, n_images: int, factor: float, size: int = 128, noisy: bool = False, rough: bool = False
):
    """Images whose true posterior std is ``factor`` × a raw std field (smooth, or independent per pixel when
    ``rough``), and the errors of their N-sample means; ``noisy``: the raw variance is itself an N-sample estimate."""
    raws, errs = [], []
    for _ in range(n_images):
        yy, xx = np.mgrid[:size, :size] / size
        true_raw = 0.01 + 0.05 * (1 + np.sin(6 * xx + rng.uniform(0, 6))) * (1 + np.cos(5 * yy))
        if rough:
            true_raw = 0.01 + 0.2 * rng.random((size, size))
        raw_var = true_raw**2
        if noisy:  # an N-sample variance estimate: scaled χ² with N − 1 degrees of freedom
            raw_var = raw_var * rng.chisquare(N - 1, raw_var.shape) / (N - 1)
        errs.append(rng.normal(size=true_raw.shape) * factor * true_raw * error_std_factor(N))
        raws.append(raw_var)
    return raws, errs


def _fit(raws, errs, **kw) -> Calibration:
    kw.setdefault("feature_candidates", ())  # the map itself; the score's features are tested in their own file
    return fit_calibration(raws, errs, N, "gamma", 1.0, 10, data="synthetic", **kw)


def test_a_threefold_overconfident_spread_is_scaled_by_three_and_intervals_cover_their_level() -> None:
    rng = np.random.default_rng(0)
    cal = _fit(*synthetic(rng, 8, factor=3.0), smoothing_candidates=(0.0,))
    raws, errs = synthetic(np.random.default_rng(1), 8, factor=3.0)  # fresh images
    raw, err = np.concatenate([r.ravel() for r in raws]), np.concatenate([e.ravel() for e in errs])
    sigma = posterior_std(cal, raw)
    ratio = np.median(sigma / np.sqrt(raw))
    assert ratio == pytest.approx(3.0, rel=0.05)
    err_std = sigma * error_std_factor(N)
    assert np.mean(err**2) / np.mean(err_std**2) == pytest.approx(1.0, abs=0.08)
    for level in (0.5, 0.9, 0.95):
        covered = np.mean(np.abs(err) <= interval_multiplier(cal, level) * err_std)
        assert covered == pytest.approx(level, abs=0.02)


def test_smoothing_is_chosen_when_the_raw_variance_is_a_noisy_estimate_of_a_smooth_spread() -> None:
    rng = np.random.default_rng(2)
    noisy = _fit(*synthetic(rng, 6, factor=2.0, noisy=True))
    clean = _fit(*synthetic(rng, 6, factor=2.0, rough=True))
    assert noisy.smoothing_px > 0
    assert clean.smoothing_px == 0


def test_a_wide_smoothing_is_chosen_when_the_error_follows_each_image_s_spread_not_each_pixel_s() -> None:
    """Phase-like: each image has one true spread (log-uniform over 10×) that its pixels' 8-sample variances
    estimate noisily, and the error grows faster than it; averaging over tens of pixels estimates it best."""
    rng = np.random.default_rng(4)
    raws, errs = [], []
    for _ in range(8):
        level = 0.02 * 10 ** rng.uniform(0, 1)
        raws.append(level**2 * rng.chisquare(N - 1, (96, 96)) / (N - 1))
        errs.append(rng.normal(size=(96, 96)) * 3 * level * (level / 0.02) ** 0.7)
    cal = _fit(raws, errs)
    assert cal.smoothing_px >= 16
    sigma = posterior_std(cal, raws[0])
    assert np.std(sigma) / np.mean(sigma) < 0.05  # nearly one σ for the image


def test_the_map_is_monotone_and_extends_flat_below_and_proportional_above() -> None:
    cal = _fit(*synthetic(np.random.default_rng(3), 4, factor=2.0, noisy=True), smoothing_candidates=(0.0,))
    assert np.all(np.diff(cal.raw_std) > 0) and np.all(np.diff(cal.calibrated_std) >= 0)
    low, high = cal.raw_std[0], cal.raw_std[-1]
    below = posterior_std(cal, np.array([[(low / 10) ** 2, (low / 100) ** 2]]))
    assert below == pytest.approx(cal.calibrated_std[0])
    above = posterior_std(cal, np.array([[(2 * high) ** 2, (4 * high) ** 2]]))
    assert above[0, 1] == pytest.approx(2 * above[0, 0]) and above[0, 0] == pytest.approx(2 * cal.calibrated_std[-1])


def test_pool_adjacent_violators_gives_the_least_squares_monotone_fit() -> None:
    out = _pool_adjacent_violators(np.array([1.0, 3.0, 2.0, 4.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0, 3.0]))
    # (3, 2) pool to 2.5, (4, 0·3) to 1.0, then both to (3 + 2 + 4 + 0)/6 = 1.5; the first value stays
    np.testing.assert_allclose(out, [1.0, 1.5, 1.5, 1.5, 1.5])


def test_conformal_quantile_covers_at_least_its_level() -> None:
    rng = np.random.default_rng(4)
    hits = []
    for _ in range(200):
        scores = rng.exponential(size=50)
        hits.append(rng.exponential() <= conformal_quantile(scores, 0.9))
    assert np.mean(hits) >= 0.86  # ≥ 0.9 in expectation; 200 trials


def test_too_little_data_is_refused_with_the_reason() -> None:
    raws, errs = synthetic(np.random.default_rng(5), 1, 2.0)
    with pytest.raises(CalibrationError, match="at least 2 held-out images"):
        _fit(raws, errs)
    raws, errs = synthetic(np.random.default_rng(5), 2, 2.0, size=64)
    with pytest.raises(CalibrationError, match="pixels in each half"):
        _fit(raws, errs)
    with pytest.raises(CalibrationError, match="differ in shape"):
        _fit([np.ones((4, 4)), np.ones((4, 4))], [np.ones((4, 4)), np.ones((5, 4))])


def test_a_level_outside_the_calibrated_range_is_refused() -> None:
    cal = _fit(*synthetic(np.random.default_rng(6), 2, 2.0), smoothing_candidates=(0.0,))
    assert interval_multiplier(cal, 0.9) > interval_multiplier(cal, 0.5)
    with pytest.raises(ValueError, match="outside the calibrated levels"):
        interval_multiplier(cal, 0.999)


def test_selection_prefers_the_exact_setting_then_the_nearest_steps_and_says_so() -> None:
    base = _fit(*synthetic(np.random.default_rng(7), 2, 2.0), smoothing_candidates=(0.0,))
    cals = [base.model_copy(update={"steps": s}) for s in (10, 50)]
    chosen, note = select_calibration(cals, "gamma", 1.0, 10)
    assert chosen.steps == 10 and note.startswith("calibrated on")
    chosen, note = select_calibration(cals, "gamma", 1.0, 40)
    assert chosen.steps == 50 and "applied to 40 steps" in note and "--steps 40" in note
    chosen, note = select_calibration(cals, "ancestral", 1.0, 100)
    assert chosen is None and "napari-cvdm calibrate" in note


def test_the_header_refuses_a_map_that_is_not_monotone() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibration(
            method="gamma",
            eta=1.0,
            steps=10,
            n_samples=8,
            raw_std=[0.1, 0.2],
            calibrated_std=[0.3, 0.2],
            interval_z={"0.9": 1.7},
            n_images=2,
            n_pixels=20_000,
        )


def test_images_in_a_cycle_of_two_kinds_are_calibrated_together_not_one_kind_per_half() -> None:
    """Images alternate between two kinds (as the simulated calibration sets' structure families do); an even/odd
    split would fit the map on one kind and the intervals on the other."""
    rng = np.random.default_rng(8)
    raws, errs = [], []
    for k in range(12):
        r, e = synthetic(rng, 1, factor=1.5 if k % 2 == 0 else 4.0)
        raws += r
        errs += e
    cal = _fit(raws, errs, smoothing_candidates=(0.0,))
    fresh_raw, fresh_err = [], []
    for k in range(8):
        r, e = synthetic(rng, 1, factor=1.5 if k % 2 == 0 else 4.0)
        fresh_raw += r
        fresh_err += e
    raw, err = np.concatenate([r.ravel() for r in fresh_raw]), np.concatenate([e.ravel() for e in fresh_err])
    covered = np.mean(np.abs(err) <= interval_multiplier(cal, 0.9) * posterior_std(cal, raw) * error_std_factor(N))
    assert covered == pytest.approx(0.9, abs=0.02)


# --- calibration conditioned on the estimated noise ξ ---------------------------------------------------------


def _binned(ranges: list[tuple[float, float]], scale: float = 2.0) -> list[Calibration]:
    """A pooled calibration and one per ξ range, the k-th with posterior std (k + 2)× the raw std."""
    pooled = Calibration(
        method="gamma", eta=1.0, steps=10, n_samples=8, raw_std=[0.01, 1.0], calibrated_std=[scale * 0.01, scale],
        interval_z={"0.9": 1.7}, n_images=16, n_pixels=1_048_576, data="pairs",
    )  # fmt: skip
    same = {"n_images": 6, "n_pixels": 393_216}
    bins = [
        pooled.model_copy(update={"noise_xi": r, "calibrated_std": [(k + 2) * 0.01, float(k + 2)], **same})
        for k, r in enumerate(ranges)
    ]
    return [pooled, *bins]


def test_the_plane_s_estimated_noise_picks_its_bin_and_the_sentence_names_it() -> None:
    cals = _binned([(0.004, 0.02), (0.02, 0.07), (0.07, 0.21)])
    chosen, note = select_calibration(cals, "gamma", 1.0, 10, noise_xi=0.05)
    assert chosen.noise_xi == (0.02, 0.07)
    assert note == "calibrated for images with estimated noise ξ 0.02–0.07 on 6 held-out images (393,216 pixels): pairs"
    assert select_calibration(cals, "gamma", 1.0, 10, noise_xi=0.15)[0].noise_xi == (0.07, 0.21)
    chosen, note = select_calibration(cals, "gamma", 1.0, 10, noise_xi=0.0)  # a noise-free image: the lowest bin
    assert chosen.noise_xi == (0.004, 0.02) and "ξ 0 is below the calibrated 0.004–0.21: nearest" in note
    chosen, note = select_calibration(cals, "gamma", 1.0, 10, noise_xi=0.5)
    assert chosen.noise_xi == (0.07, 0.21) and "above" in note
    chosen, note = select_calibration(cals, "gamma", 1.0, 10)  # no estimate: the pooled one, said so
    assert chosen.noise_xi is None and note.startswith("calibrated on 16 held-out images")
    assert "pooled over every noise level" in note and "0.02–0.07" in note
    chosen, note = select_calibration(cals, "gamma", 1.0, 20, noise_xi=0.05)  # other steps: the bin, and said so
    assert chosen.noise_xi == (0.02, 0.07) and "applied to 20 steps" in note and "estimated noise ξ 0.02–0.07" in note
    chosen, note = select_calibration(cals[1:], "gamma", 1.0, 10)  # bins only, no estimate: the largest bin
    assert chosen.noise_xi is not None and "noise level is not known" in note


def test_a_version_1_header_without_a_condition_loads_and_is_used_for_every_noise_level() -> None:
    old = {
        "version": 1, "method": "gamma", "eta": 1.0, "steps": 10, "n_samples": 8, "smoothing_px": 1.0,
        "raw_std": [0.01, 0.1], "calibrated_std": [0.03, 0.3], "interval_z": {"0.9": 1.7}, "n_images": 16,
        "n_pixels": 1_048_576, "data": "pairs",
    }  # fmt: skip
    cal = Calibration.model_validate(old)
    assert cal.version == 1 and cal.noise_xi is None
    for xi in (None, 0.0, 0.1, 0.5):
        chosen, note = select_calibration([cal], "gamma", 1.0, 10, noise_xi=xi)
        assert chosen is cal and note == "calibrated on 16 held-out images (1,048,576 pixels): pairs"
    assert Calibration.model_validate(cal.model_dump()) == cal
    with pytest.raises(ValueError, match="noise_xi"):
        Calibration.model_validate({**old, "noise_xi": (0.2, 0.1)})


def test_quantile_groups_split_by_quantiles_into_touching_ranges_and_skip_images_without_an_estimate() -> None:
    groups = quantile_groups([0.1, 0.02, None, 0.3, 0.05, 0.2], 3)
    assert [idx for idx, _ in groups] == [[1, 4], [0, 5], [3]]
    ranges = [r for _, r in groups]
    assert ranges[0][0] == 0.02 and ranges[-1][1] == 0.3
    assert ranges[0][1] == ranges[1][0] == pytest.approx(0.075) and ranges[1][1] == ranges[2][0] == 0.25
    assert quantile_groups([0.1, None], 2) == []


def _fit_noise(raws, errs, xis, **kw) -> list[Calibration]:
    return fit_binned_calibrations(
        raws, errs, xis, "noise_xi", N, "gamma", 1.0, 10, smoothing_candidates=(0.0,), feature_candidates=(), **kw
    )


def _two_noise_levels(rng: np.random.Generator, n_images: int, size: int = 128):
    """Images alternating between a low noise level (ξ ≈ 0.02, posterior std 1.5× the raw std) and a high one
    (ξ ≈ 0.15, 4×), with their ξ estimates."""
    raws, errs, xis = [], [], []
    for k in range(n_images):
        low = k % 2 == 0
        r, e = synthetic(rng, 1, factor=1.5 if low else 4.0, size=size)
        raws += r
        errs += e
        xis.append((0.02 if low else 0.15) + rng.uniform(-0.01, 0.01))
    return raws, errs, xis


def test_two_noise_levels_that_need_two_maps_are_both_right_when_binned_and_not_when_pooled() -> None:
    raws, errs, xis = _two_noise_levels(np.random.default_rng(9), 12)
    cals = _fit_noise(raws, errs, xis, max_bins=2)
    pooled, low_bin, high_bin = cals
    assert pooled.noise_xi is None and 0.03 < low_bin.noise_xi[1] == high_bin.noise_xi[0] < 0.14
    assert (low_bin.n_images, high_bin.n_images, pooled.n_images) == (6, 6, 12)
    fresh_raw, fresh_err, fresh_xi = _two_noise_levels(np.random.default_rng(10), 8)
    for level in (0, 1):
        idx = [k for k in range(8) if k % 2 == level]
        raw = np.concatenate([fresh_raw[k].ravel() for k in idx])
        err = np.concatenate([fresh_err[k].ravel() for k in idx])
        binned, _ = select_calibration(cals, "gamma", 1.0, 10, noise_xi=fresh_xi[idx[0]])
        assert binned is (low_bin if level == 0 else high_bin)
        for cal, right in ((binned, True), (pooled, False)):
            std = posterior_std(cal, raw) * error_std_factor(N)
            ratio = np.mean(err**2) / np.mean(std**2)
            covered = np.mean(np.abs(err) <= interval_multiplier(cal, 0.9) * std)
            if right:
                assert ratio == pytest.approx(1.0, abs=0.1) and covered == pytest.approx(0.9, abs=0.02)
            else:  # the pooled map is too wide at low noise and too narrow at high noise
                assert not 0.8 <= ratio <= 1.3 and not 0.85 <= covered <= 0.95


def test_bins_too_small_for_the_calibration_rules_give_fewer_bins_or_pooled_only() -> None:
    raws, errs, xis = _two_noise_levels(np.random.default_rng(11), 16, size=96)  # 9216 pixels per image
    cals = _fit_noise(raws, errs, xis)
    # in a half of 8 images, 3 bins would hold 2–3 images (halves of 9216 < MIN_PIXELS pixels); 2 bins pass
    assert [c.n_images for c in cals] == [16, 8, 8]
    cals = _fit_noise(raws[:4], errs[:4], xis[:4])
    assert [c.noise_xi for c in cals] == [None]
    cals = _fit_noise(raws, errs, [None] * 16)
    assert [c.noise_xi for c in cals] == [None]
    with pytest.raises(CalibrationError, match="3 values of noise_xi for 16 images"):
        _fit_noise(raws, errs, xis[:3])


def test_the_number_of_bins_is_chosen_on_held_out_images_and_a_condition_that_changes_nothing_gets_none() -> None:
    rng = np.random.default_rng(12)
    raws, errs = synthetic(rng, 16, factor=2.0)
    xis = rng.uniform(0.0, 0.2, 16).tolist()  # unrelated to the errors
    report: list = []
    cals = _fit_noise(raws, errs, xis, report=report)
    assert [c.noise_xi for c in cals] == [None] and [count for count, _ in report] == [1, 2, 3]
    raws, errs, xis = _two_noise_levels(np.random.default_rng(13), 16)
    report = []
    assert len(_fit_noise(raws, errs, xis, report=report)) > 1  # the noise matters: binned
    assert report[1][1] < report[0][1] - 0.005


def test_an_sr_run_s_psf_width_picks_its_bin_and_a_plane_s_noise_does_not() -> None:
    pooled, *bins = _binned([(0.6, 0.85), (0.85, 1.1), (1.1, 1.6)])
    bins = [c.model_copy(update={"noise_xi": None, "psf_factor": c.noise_xi}) for c in bins]
    cals = [pooled, *bins]
    chosen, note = select_calibration(cals, "gamma", 1.0, 10, psf_factor=0.9)
    assert chosen.psf_factor == (0.85, 1.1)
    assert note.startswith("calibrated for images with PSF width 0.85–1.1× the model's on 6 held-out images")
    chosen, note = select_calibration(cals, "gamma", 1.0, 10, psf_factor=0.5)
    assert chosen.psf_factor == (0.6, 0.85) and "PSF width factor 0.5 is below the calibrated 0.6–1.6: nearest" in note
    chosen, note = select_calibration(cals, "gamma", 1.0, 10, noise_xi=0.05)  # no PSF width known: pooled
    assert chosen is pooled and "pooled over every PSF width" in note
    with pytest.raises(ValueError, match="at most"):
        Calibration.model_validate({**pooled.model_dump(), "noise_xi": (0.0, 0.1), "psf_factor": (0.6, 1.0)})


def test_a_resampled_phase_set_up_takes_the_set_up_calibration_and_a_run_at_the_model_s_own_the_noise_bins() -> None:
    nominal = _binned([(0.004, 0.095), (0.095, 0.29)])
    setup = nominal[0].model_copy(update={"fresnel_factor": (0.5, 0.9), "calibrated_std": [0.05, 5.0]})
    far = setup.model_copy(update={"fresnel_factor": (1.1, 2.0), "calibrated_std": [0.07, 7.0]})
    cals = [*nominal, setup, far]
    chosen, note = select_calibration(cals, "gamma", 1.0, 10, noise_xi=0.05, fresnel_factor=0.6)
    assert chosen is setup and note.startswith("calibrated for images with a set-up resampled from λ·d/p² 0.5–0.9×")
    assert select_calibration(cals, "gamma", 1.0, 10, noise_xi=0.05, fresnel_factor=1.8)[0] is far
    chosen, note = select_calibration(cals, "gamma", 1.0, 10, fresnel_factor=3.0)
    assert chosen is far and "λ·d/p² factor 3 is above the calibrated 0.5–2: nearest" in note
    assert select_calibration(cals, "gamma", 1.0, 10, noise_xi=0.05)[0] is nominal[1]  # own set-up: by noise
    chosen, note = select_calibration(cals, "gamma", 1.0, 10)  # own set-up, no estimate: pooled, not a set-up one
    assert chosen is nominal[0] and "set-up" not in note
    chosen, note = select_calibration([setup], "gamma", 1.0, 10, noise_xi=0.05)  # set-up ones only: said so
    assert chosen is setup and "this run is at the model's own set-up, where the model holds no calibration" in note
    chosen, note = select_calibration(cals, "gamma", 1.0, 20, fresnel_factor=0.6)
    assert chosen is setup and "applied to 20 steps" in note


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_the_bundled_phase_model_calibrates_resampled_set_ups_apart_from_its_own(steps) -> None:
    from napari_cvdm import load_model

    info = load_model("cvdm-phase-twoshot").info
    resampled, note = select_calibration(info.calibrations, "gamma", 1.0, steps, noise_xi=0.05, fresnel_factor=1.8)
    assert resampled.steps == steps and resampled.fresnel_factor[0] <= 0.6 and resampled.fresnel_factor[1] >= 1.8
    assert "a set-up resampled from λ·d/p²" in note
    own, _ = select_calibration(info.calibrations, "gamma", 1.0, steps, noise_xi=0.05)
    assert own.steps == steps and own.fresnel_factor is None and own.noise_xi is not None
