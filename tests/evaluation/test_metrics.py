"""Known answers for the image-quality metrics."""

import itertools
import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from napari_cvdm.evaluation.metrics import (
    calibration_ratio,
    decorrelation_analysis,
    decorrelation_resolution,
    expected_normalized_calibration_error,
    frc_resolution,
    interval_coverage,
    mae,
    ms_ssim,
    normalize_image,
    psnr,
    reliability,
    ssim,
)


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return gaussian_filter(rng.random((128, 128)), 2.0)


def test_mae_and_psnr_known_values(image):
    assert mae(image + 0.1, image) == pytest.approx(0.1)
    assert psnr(image + 0.01, image, data_range=1.0) == pytest.approx(40.0)
    assert psnr(image, image) == math.inf


def test_minmax_normalisation_makes_metrics_scale_free(image):
    other = image + 0.05 * np.random.default_rng(1).standard_normal(image.shape)
    for metric in (mae, psnr, ssim, ms_ssim):
        assert metric(3.0 * other + 7.0, image, normalize="minmax") == pytest.approx(
            metric(other, image, normalize="minmax")
        )
    n = normalize_image(other, "minmax")
    assert n.min() == 0 and n.max() == 1
    p = normalize_image(other, "percentile")
    assert p.min() < 0.05 and p.max() > 0.95


def test_ssim_matches_skimage_gaussian_settings(image):
    noisy = image + 0.02 * np.random.default_rng(2).standard_normal(image.shape)
    ref = structural_similarity(
        image, noisy, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(noisy, image, data_range=1.0) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("size", [128, 256, 64])
def test_ms_ssim_is_one_for_identical_images_and_decreases_with_noise(size):
    rng = np.random.default_rng(3)
    x = gaussian_filter(rng.random((size, size)), 1.5)
    x = (x - x.min()) / (x.max() - x.min())
    assert ms_ssim(x, x, data_range=1.0) == pytest.approx(1.0, abs=1e-12)
    values = [ms_ssim(x + s * rng.standard_normal(x.shape), x, data_range=1.0) for s in (0.02, 0.05, 0.1, 0.3)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert 0 <= values[-1] < values[0] < 1


def test_ms_ssim_rejects_tiny_images():
    with pytest.raises(ValueError, match="too small"):
        ms_ssim(np.zeros((32, 32)), np.ones((32, 32)), data_range=1.0)
    with pytest.raises(ValueError, match="same shape"):
        ms_ssim(np.zeros((64, 64)), np.zeros((64, 32)))


def _band_limited_noise(n: int, kc: float, seed: int) -> np.ndarray:
    """White noise with its spectrum cut at kc (1 = Nyquist)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(n) * 2
    mask = np.hypot(f[:, None], f[None, :]) < kc
    return np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * mask))


@pytest.mark.parametrize("kc", [0.3, 0.5, 0.8])
def test_decorrelation_finds_a_known_cutoff(kc):
    img = _band_limited_noise(256, kc, seed=int(kc * 10))
    pixel_nm = 30.0
    truth = 2 * pixel_nm / kc
    assert decorrelation_resolution(img, pixel_nm) == pytest.approx(truth, rel=0.10)
    assert decorrelation_analysis(img)["A0"] > 0.5


def test_decorrelation_resolution_improves_as_blur_decreases():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((256, 256))
    res = [
        decorrelation_resolution(gaussian_filter(x, s) + 1e-3 * rng.standard_normal(x.shape), 50.0)
        for s in (4.0, 2.0, 1.0)
    ]
    assert res[0] > res[1] > res[2]


def test_decorrelation_of_a_flat_image_is_nan():
    assert math.isnan(decorrelation_resolution(np.ones((64, 64)), 30.0))


@pytest.mark.parametrize("kc", [0.3, 0.5, 0.8])
def test_frc_resolution_finds_the_cutoff_of_a_low_passed_truth(kc):
    """pred = truth low-passed at kc (Nyquist units): correct below kc, nothing above → resolution 2·px/kc."""
    rng = np.random.default_rng(int(kc * 10))
    truth = rng.standard_normal((256, 256))
    f = np.fft.fftfreq(256) * 2
    pred = np.real(np.fft.ifft2(np.fft.fft2(truth) * (np.hypot(f[:, None], f[None, :]) < kc)))
    assert frc_resolution(pred, truth, 30.0) == pytest.approx(2 * 30.0 / kc, rel=0.10)


def test_frc_resolution_is_not_improved_by_amplified_noise():
    """The failure of single-image decorrelation analysis on noisy deconvolutions: high-frequency noise looks like
    resolution to it, but it does not correlate with the truth."""
    rng = np.random.default_rng(7)
    truth = gaussian_filter(rng.standard_normal((256, 256)), 1.0)
    blurred = gaussian_filter(truth, 2.0)
    noisy = blurred + 0.5 * blurred.std() * rng.standard_normal(truth.shape)
    assert frc_resolution(noisy, truth, 30.0) >= 0.95 * frc_resolution(blurred, truth, 30.0)
    assert frc_resolution(blurred, truth, 30.0) > 1.3 * frc_resolution(
        truth + 0.01 * rng.standard_normal(truth.shape), truth, 30.0
    )
    assert frc_resolution(truth, truth, 30.0) == pytest.approx(60.0)  # perfect up to Nyquist


@pytest.mark.parametrize("n_samples", [2, 8])
def test_calibration_ratio_of_calibrated_samples_is_one_plus_one_over_n(n_samples):
    """Samples from the true posterior: the N-sample mean's error² over the sample variance is 1 + 1/N."""
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.1, 2.0, (128, 128))  # a posterior std that varies per pixel
    truth = rng.normal(0, sigma)  # what the image really is, drawn from the same posterior as the samples
    samples = rng.normal(0, sigma, (n_samples, 128, 128))
    ratio = calibration_ratio(samples.mean(0) - truth, samples.var(0, ddof=1))
    assert ratio == pytest.approx(1 + 1 / n_samples, rel=0.05)
    overconfident = calibration_ratio(samples.mean(0) - truth, samples.var(0, ddof=1) / 4)
    assert overconfident == pytest.approx(4 * ratio)


def _posterior_draws(n_samples: int, side: int = 256, seed: int = 1):
    """N samples and the truth, all drawn from one per-pixel Gaussian law whose std varies over the image."""
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.1, 2.0, (side, side))
    return rng.normal(0, sigma, (n_samples, side, side)), rng.normal(0, sigma)


@pytest.mark.parametrize("n_samples", [4, 8, 32])
def test_central_intervals_of_calibrated_samples_cover_their_level(n_samples):
    """Student-t intervals of the N-sample mean cover exactly their level for draws of the true law."""
    samples, truth = _posterior_draws(n_samples)
    coverage = interval_coverage(samples.mean(0) - truth, samples.var(0, ddof=1), n_samples)
    for level, covered in coverage.items():
        assert covered == pytest.approx(level, abs=0.01), (level, covered)
    shrunk = interval_coverage(samples.mean(0) - truth, samples.var(0, ddof=1) / 4, n_samples)
    assert shrunk[0.9] < 0.7  # samples half as wide as the truth's law: the 90 % interval covers far less


def test_reliability_and_ence_know_calibrated_from_overconfident():
    samples, truth = _posterior_draws(64)
    error, variance = samples.mean(0) - truth, samples.var(0, ddof=1)
    rows = reliability(error, variance, 64, bins=10)
    assert len(rows) == 10 and sum(r[3] for r in rows) == truth.size
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(rows))  # bins ordered by predicted spread
    for rmv, rmse, mean_abs, _ in rows:
        assert rmse == pytest.approx(rmv, rel=0.1)
        assert mean_abs == pytest.approx(math.sqrt(2 / math.pi) * rmse, rel=0.05)  # Gaussian errors
    assert expected_normalized_calibration_error(error, variance, 64) < 0.05
    # errors 2× the predicted spread in every bin: |RMV − 2·RMV| / RMV = 1
    assert expected_normalized_calibration_error(error, variance / 4, 64) == pytest.approx(1.0, abs=0.1)


def test_ence_of_few_calibrated_samples_has_a_floor():
    """Bins of a *sample* variance regress to the mean: with 8 calibrated samples the low bins show RMSE > RMV,
    so ENCE is ≈ 0.2, not 0 (what a calibration fitted on these bins corrects; docs say so)."""
    samples, truth = _posterior_draws(8)
    ence = expected_normalized_calibration_error(samples.mean(0) - truth, samples.var(0, ddof=1), 8)
    assert 0.12 < ence < 0.32, ence


def test_interval_coverage_needs_a_variance():
    with pytest.raises(ValueError, match="at least 2 samples"):
        interval_coverage(np.zeros(4), np.ones(4), 1)
