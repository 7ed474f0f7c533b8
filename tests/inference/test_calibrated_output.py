"""reconstruct() with a calibrated model: calibrated std in physical units, interval bounds, notes, channels."""

from __future__ import annotations

import numpy as np
import pytest

import napari_cvdm as nc
from napari_cvdm.model.metadata import Calibration
from napari_cvdm.sampling.calibration import error_std_factor
from napari_cvdm.tasks import input_scale
from tests.conftest import tiny_model

SCALE = 3.0  # the calibration's posterior std is 3 × the raw std at the knots 0.001 and 10⁴


def calibration(steps: int = 2, method: str = "gamma", eta: float = 1.0) -> Calibration:
    return Calibration(
        method=method,
        eta=eta,
        steps=steps,
        n_samples=4,
        raw_std=[0.001, 1e4],
        calibrated_std=[SCALE * 0.001, SCALE * 1e4],
        interval_z={"0.5": 0.7, "0.9": 1.7, "0.95": 2.0},
        n_images=4,
        n_pixels=40_000,
        data="test pairs",
    )


@pytest.fixture
def widefield() -> np.ndarray:
    return (np.random.default_rng(0).poisson(50, (16, 16)) + 100).astype(np.uint16)


def _log_linear(raw_std: np.ndarray) -> np.ndarray:
    """The map between the two knots: linear in log raw std (so not exactly 3× in between)."""
    t = (np.log(raw_std) - np.log(0.001)) / (np.log(1e4) - np.log(0.001))
    return SCALE * (0.001 + t * (1e4 - 0.001))


def test_calibrated_std_and_interval_in_the_outputs_units(widefield):
    model = tiny_model("sr", calibrations=[calibration()])
    result = nc.reconstruct(model, widefield, n_samples=4, steps=2, seed=1)
    scale = input_scale(widefield, model.info).scale  # SR: network units → input intensity units
    expected = scale * error_std_factor(4) * _log_linear(np.sqrt(result.variance) / scale)
    np.testing.assert_allclose(result.calibrated_std, expected, rtol=1e-4)
    np.testing.assert_allclose(result.upper - result.mean, 1.7 * result.calibrated_std, rtol=1e-5)
    np.testing.assert_allclose(result.mean - result.lower, 1.7 * result.calibrated_std, rtol=1e-5)
    assert result.interval_level == 0.9 and result.calibration.startswith("calibrated on 4 held-out images")
    names = [name for name, _, _ in result.channels()]
    assert names == [
        "mean",
        "calibrated std",
        "90 % interval lower bound",
        "90 % interval upper bound",
        "sample variance",
        "beta map",
    ]
    units = dict((name, unit) for name, _, unit in result.channels())
    assert units["calibrated std"] == "input intensity units" and units["sample variance"].endswith("²")


def test_the_interval_level_is_the_users_and_interpolates_between_stored_levels(widefield):
    model = tiny_model("sr", calibrations=[calibration()])
    result = nc.reconstruct(model, widefield, n_samples=4, steps=2, interval_level=0.7)
    z = 0.7 + (0.7 - 0.5) / (0.9 - 0.5) * (1.7 - 0.7)
    np.testing.assert_allclose(result.upper - result.mean, z * result.calibrated_std, rtol=1e-5)
    assert [n for n, _, _ in result.channels()][2] == "70 % interval lower bound"
    with pytest.raises(ValueError, match="interval_level"):
        nc.reconstruct(model, widefield, n_samples=4, steps=2, interval_level=0.999)


def test_phase_calibration_uses_the_target_scale_in_radians():
    model = tiny_model("phase", calibrations=[calibration()])
    stack = np.random.default_rng(1).uniform(0.8, 1.2, (2, 16, 16))
    result = nc.reconstruct(model, stack, n_samples=4, steps=2)
    scale = model.info.normalization.target_scale
    expected = scale * error_std_factor(4) * _log_linear(np.sqrt(result.variance) / scale)
    np.testing.assert_allclose(result.calibrated_std, expected, rtol=1e-4)


def test_stacks_get_a_calibrated_std_per_plane(widefield):
    model = tiny_model("sr", calibrations=[calibration()])
    stack = np.stack([widefield, 3 * widefield])
    result = nc.reconstruct(model, stack, n_samples=3, steps=2)
    assert result.calibrated_std.shape == result.mean.shape == (2, 32, 32)


def test_a_model_without_calibration_says_so_and_keeps_the_raw_spread(tiny_sr_model, widefield):
    result = nc.reconstruct(tiny_sr_model, widefield, n_samples=3, steps=2)
    assert result.calibrated_std is None and result.lower is None and result.upper is None
    assert "not calibrated" in result.calibration and "napari-cvdm calibrate" in result.calibration
    assert [n for n, _, _ in result.channels()] == ["mean", "sample variance", "beta map"]


def test_other_steps_use_the_nearest_calibration_and_say_it_was_not_measured(widefield):
    model = tiny_model("sr", calibrations=[calibration(steps=2)])
    result = nc.reconstruct(model, widefield, n_samples=3, steps=3)
    assert result.calibrated_std is not None
    assert "applied to 3 steps" in result.calibration


def test_one_sample_gives_no_calibrated_std(widefield):
    model = tiny_model("sr", calibrations=[calibration()])
    result = nc.reconstruct(model, widefield, n_samples=1, steps=2)
    assert result.calibrated_std is None and "one sample has no spread" in result.calibration


def test_calibrations_survive_the_model_file(tmp_path):
    from napari_cvdm.model.files import load_model_file, save_model

    model = tiny_model("sr", calibrations=[calibration(), calibration(steps=5)])
    path = save_model(tmp_path / "m.cvdm", model.network, model.info)
    loaded = load_model_file(path)
    assert loaded.info.calibrations == model.info.calibrations


def _noise_binned() -> list[Calibration]:
    """Pooled (3× the raw std) and two bins of the estimated noise ξ: 0–0.05 (2×) and 0.05–0.3 (5×)."""
    pooled = calibration()
    low = pooled.model_copy(update={"noise_xi": (0.0, 0.05), "calibrated_std": [0.002, 2e4], "n_images": 2})
    high = pooled.model_copy(update={"noise_xi": (0.05, 0.3), "calibrated_std": [0.005, 5e4], "n_images": 2})
    return [pooled, low, high]


def _defocus_pair(sigma: float, size: int = 64, seed: int = 0) -> np.ndarray:
    """A flat two-shot pair at intensity 1 with additive white noise σ (its estimated ξ ≈ σ / (1 − σ))."""
    return 1.0 + sigma * np.random.default_rng(seed).normal(size=(2, size, size))


def _expected(model, result, cal: Calibration, plane=...) -> np.ndarray:
    from napari_cvdm.sampling.calibration import posterior_std

    scale = model.info.normalization.target_scale
    return scale * error_std_factor(4) * posterior_std(cal, result.variance[plane] / scale**2)


def test_a_phase_plane_is_calibrated_with_the_bin_of_its_estimated_noise():
    cals = _noise_binned()
    model = tiny_model("phase", calibrations=cals)
    quiet = nc.reconstruct(model, _defocus_pair(0.01), n_samples=4, steps=2)
    np.testing.assert_allclose(quiet.calibrated_std, _expected(model, quiet, cals[1]), rtol=1e-4)
    assert quiet.calibration.startswith("calibrated for images with estimated noise ξ 0–0.05 on 2 held-out")
    noisy = nc.reconstruct(model, _defocus_pair(0.15), n_samples=4, steps=2)
    np.testing.assert_allclose(noisy.calibrated_std, _expected(model, noisy, cals[2]), rtol=1e-4)
    assert "estimated noise ξ 0.05–0.3" in noisy.calibration


def test_a_plane_whose_noise_cannot_be_estimated_gets_the_pooled_calibration_and_says_why():
    cals = _noise_binned()
    model = tiny_model("phase", calibrations=cals)
    small = _defocus_pair(0.15, size=16)  # below the estimator's 32 px
    result = nc.reconstruct(model, small, n_samples=4, steps=2)
    np.testing.assert_allclose(result.calibrated_std, _expected(model, result, cals[0]), rtol=1e-4)
    assert result.calibration.startswith("this plane's noise could not be estimated: calibrated on 4 held-out")


def test_planes_of_a_stack_pick_their_own_bin_and_the_sentence_counts_them():
    cals = _noise_binned()
    model = tiny_model("phase", calibrations=cals)
    stack = np.stack([_defocus_pair(0.01), _defocus_pair(0.15, seed=1)])
    result = nc.reconstruct(model, stack, n_samples=4, steps=2)
    np.testing.assert_allclose(result.calibrated_std[0], _expected(model, result, cals[1], 0), rtol=1e-4)
    np.testing.assert_allclose(result.calibrated_std[1], _expected(model, result, cals[2], 1), rtol=1e-4)
    assert result.calibration.startswith("by each plane's estimated noise: 1 of 2 planes calibrated for images")
    assert "ξ 0–0.05" in result.calibration and "ξ 0.05–0.3" in result.calibration


def test_a_model_with_a_pooled_calibration_only_is_calibrated_as_before():
    model = tiny_model("phase", calibrations=[calibration()])
    result = nc.reconstruct(model, _defocus_pair(0.15), n_samples=4, steps=2)
    np.testing.assert_allclose(result.calibrated_std, _expected(model, result, calibration()), rtol=1e-4)
    assert result.calibration == "calibrated on 4 held-out images (40,000 pixels): test pairs"
