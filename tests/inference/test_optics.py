"""Optics in: the model's stated range, runs inside it, exact resampling outside it where physics allows, refusals
with the mismatch, the range and the fixes before any work, and a record of what was assumed."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from pydantic import ValidationError

from napari_cvdm import reconstruct
from napari_cvdm.inference.optics import OpticsMismatch, plan_optics
from napari_cvdm.model.metadata import ModelMetadata, ValidOptics, parse_length_um
from napari_cvdm.physics.propagation import two_shot
from napari_cvdm.settings import ReconstructSettings
from tests.conftest import tiny_model

recon = importlib.import_module("napari_cvdm.inference.run")  # where each plane's condition is built
FAST = {"n_samples": 2, "steps": 2, "device": "cpu"}


@pytest.fixture
def sr():
    return tiny_model("sr", wavelength_um=0.515, numerical_aperture=1.3)


@pytest.fixture
def phase():
    return tiny_model("phase")


@pytest.fixture
def conditions(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = recon.plane_condition

    def counting(image, info):
        calls.append(1)
        return real(image, info)

    monkeypatch.setattr(recon, "plane_condition", counting)
    return calls


def wf(shape=(32, 32), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(50, 150, shape).astype(np.float32)


@pytest.mark.parametrize(
    ("text", "um"), [("62.6nm", 0.0626), ("0.0626um", 0.0626), ("0.0626", 0.0626), ("0.0626 µm", 0.0626), (0.1, 0.1)]
)
def test_lengths_parse_with_and_without_units(text, um):
    assert parse_length_um(text) == pytest.approx(um)
    assert ReconstructSettings(pixel_size_um=text).pixel_size_um == pytest.approx(um)


@pytest.mark.parametrize(("text", "clue"), [("108", "108nm"), ("1x", "not a length"), ("-1", "> 0")])
def test_bad_lengths_are_refused_with_the_fix(text, clue):
    with pytest.raises(ValidationError, match=clue):
        ReconstructSettings(pixel_size_um=text)


def test_old_headers_get_a_narrow_range_around_their_nominal_optics(sr, phase):
    covered = sr.info.covered_optics()
    assert covered.psf_width_factor == (0.9, 1.1) and "nominal" in covered.basis
    assert phase.info.covered_optics().fresnel_factor == (0.9, 1.1)
    assert ModelMetadata(task="generic").covered_optics() is None


def test_a_randomised_optics_training_record_sets_the_range(sr):
    drawn = {"model": "SROpticsRange", "psf_width_factor": [0.6, 1.6], "wf_pixel_um": [0.06, 0.11]}
    drawn |= {"wavelength_um": [0.45, 0.7], "na": [1.2, 1.49], "photons": [10, 1000], "read_noise_counts": [1, 15]}
    info = sr.info.model_copy(update={"training": {"optics_range": drawn}})
    assert info.covered_optics().psf_width_factor == pytest.approx((0.6, 1.6))
    plan = plan_optics(info, ReconstructSettings(pixel_size_um="90nm"))
    assert plan.action == "run"


def test_an_sr_models_own_psf_width_in_its_input_pixels(sr, phase):
    """0.514·λ/(NA·p): 0.514 · 0.515 µm / (1.3 · 0.0626 µm) = 3.25 px for the nominal optics."""
    info = sr.info.model_copy(update={"wavelength_um": 0.515, "numerical_aperture": 1.3, "input_pixel_um": 0.0626})
    assert info.input_psf_fwhm_px == pytest.approx(0.514 * 0.515 / (1.3 * 0.0626))
    assert info.model_copy(update={"numerical_aperture": None}).input_psf_fwhm_px is None
    assert phase.info.input_psf_fwhm_px is None


def test_a_stated_range_wins_and_round_trips(sr):
    info = sr.info.model_copy(update={"valid_optics": ValidOptics(basis="measured", psf_width_factor=(0.5, 2.0))})
    again = ModelMetadata.model_validate_json(info.model_dump_json())
    assert again.covered_optics().psf_width_factor == (0.5, 2.0)
    assert plan_optics(again, ReconstructSettings(pixel_size_um="108nm")).action == "run"


def test_the_bundled_sr_model_states_its_measured_range_and_names_the_fixes_just_outside_it():
    from napari_cvdm import load_model

    info = load_model("cvdm-sr-widefield").info
    covered = info.covered_optics()
    assert covered.psf_width_factor == (0.95, 1.05) and "optics_tolerance.py" in covered.basis
    assert plan_optics(info, ReconstructSettings(pixel_size_um=0.0626 / 1.04)).action == "run"
    assert plan_optics(info, ReconstructSettings(wavelength_um=0.515 * 0.96)).action == "run"
    wide = load_model("cvdm-sr-widefield-wide-optics").info
    outside = [  # (optics, coarser than the range: fewer pixels per PSF width)
        ({"pixel_size_um": 0.0626 / 0.94}, True),
        ({"wavelength_um": 0.515 * 0.93}, True),
        ({"pixel_size_um": 0.0626 / 1.06}, False),
        ({"wavelength_um": 0.515 * 1.07}, False),
    ]
    for stated, coarser in outside:
        settings = ReconstructSettings(**stated)
        with pytest.raises(OpticsMismatch) as err:
            plan_optics(info, settings)
        message = str(err.value)
        for clue in ("0.95–1.05×", "measured", "cvdm-sr-widefield-wide-optics", "napari-cvdm adapt"):
            assert clue in message
        assert plan_optics(wide, settings).action == "run"  # the model it names covers these optics
        # on the coarser side that model's error bars were measured too narrow: the message says so
        assert ("measured too narrow" in message) == coarser


def test_no_optics_stated_means_the_model_s_own_and_says_so(sr):
    result = reconstruct(sr, wf(), **FAST)
    assert result.optics["action"] == "run" and result.pixel_um == pytest.approx(0.0313)
    assert "caller vouches" in result.optics["used"]["pixel_size_um"]["source"]
    assert "not stated" in result.optics["used"]["numerical_aperture"]["source"]


def test_stated_optics_inside_the_range_run_and_record_their_source(sr):
    plan = plan_optics(sr.info, ReconstructSettings(pixel_size_um="65nm"), {"pixel_size_um": "OME-TIFF metadata"})
    assert plan.action == "run" and plan.output_pixel_um == pytest.approx(0.0325)
    assert plan.record["used"]["pixel_size_um"] == {"value": 0.065, "source": "OME-TIFF metadata"}


def test_sr_undersampled_is_refused_before_any_work(sr, conditions):
    with pytest.raises(OpticsMismatch) as err:
        reconstruct(sr, wf(), pixel_size_um="108nm", numerical_aperture=1.45, **FAST)
    message = str(err.value)
    for clue in ("0.52×", "0.90–1.10×", "108.0 nm", "NA 1.45", "napari-cvdm adapt", "resample='approximate'"):
        assert clue in message
    assert conditions == []


def test_sr_far_red_dye_widens_the_psf_out_of_range(sr):
    with pytest.raises(OpticsMismatch, match="1.30×"):
        plan_optics(sr.info, ReconstructSettings(wavelength_um="670nm"))


def test_sr_oversampled_is_binned_exactly(sr):
    image = wf((32, 34))
    result = reconstruct(sr, image, pixel_size_um="31.3nm", keep_samples=True, **FAST)
    assert result.optics["action"] == "bin" and result.optics["bin"] == 2
    assert result.mean.shape == (32, 34) and result.pixel_um == pytest.approx(0.0313)
    binned = image.reshape(16, 2, 17, 2).mean(axis=(1, 3))
    direct = reconstruct(sr, binned, pixel_size_um="62.6nm", keep_samples=True, **FAST)
    np.testing.assert_allclose(result.mean, direct.mean, rtol=1e-5, atol=1e-4)


def test_sr_approximate_interpolation_only_on_request(sr):
    result = reconstruct(sr, wf(), pixel_size_um="108nm", resample="approximate", **FAST)
    assert result.optics["action"] == "interpolate" and "own risk" in result.optics["note"]
    assert result.mean.shape == (110, 110) and result.pixel_um == pytest.approx(0.0626 / 2, rel=1e-6)


def test_never_refuses_even_what_could_be_binned(sr):
    with pytest.raises(OpticsMismatch, match="switched off"):
        plan_optics(sr.info, ReconstructSettings(pixel_size_um="31.3nm", resample="never"))


def _smooth_phase(n: int, pixel: float) -> np.ndarray:
    y, x = (np.mgrid[:n, :n] + 0.5) * pixel
    side = n * pixel
    phi = np.zeros((n, n))
    for cy, cx, s, a in ((0.3, 0.4, 1.2, 1.0), (0.7, 0.6, 1.6, 0.8), (0.5, 0.2, 1.0, -0.6)):
        phi += a * np.exp(-((y - cy * side) ** 2 + (x - cx * side) ** 2) / (2 * s**2))
    return phi


def test_phase_resampling_to_the_model_s_fresnel_number_is_exact(phase):
    # the same object imaged at 4× the model's λ·d/p² (pixels half as large): resampled to the model's pixel it
    # is the pair the model's own camera records
    p0, lam, d = 0.21, 0.521, 2.0
    fine, coarse = _smooth_phase(128, p0 / 2), _smooth_phase(64, p0)
    pair_fine = two_shot(np.exp(1j * fine), d, lam, p0 / 2)
    pair_coarse = two_shot(np.exp(1j * coarse), d, lam, p0)
    plan = plan_optics(phase.info, ReconstructSettings(pixel_size_um=p0 / 2))
    assert plan.action == "resample" and plan.zoom == pytest.approx(0.5)
    assert plan.condition["input_pixel_um"] == pytest.approx(p0)
    on_grid = plan.to_network(pair_fine)
    inner = (slice(None), slice(4, -4), slice(4, -4))
    contrast = np.abs(pair_coarse - 1).max()
    assert np.abs(on_grid - pair_coarse)[inner].max() < 0.05 * contrast
    back = plan.to_input(coarse.astype(np.float32), (128, 128))
    assert np.abs(back - fine)[4:-4, 4:-4].max() < 0.01 * np.abs(fine).max()


def test_phase_out_of_range_runs_resampled_and_outputs_stay_on_the_input_grid(phase, conditions):
    pair = np.random.default_rng(0).uniform(0.8, 1.2, (2, 32, 32)).astype(np.float32)
    result = reconstruct(phase, pair, pixel_size_um=0.21 / np.sqrt(3), keep_samples=True, **FAST)
    assert result.optics["action"] == "resample" and result.optics["check"]["value"] == pytest.approx(3.0)
    assert result.mean.shape == (32, 32) and result.samples.shape == (2, 32, 32)
    assert result.pixel_um == pytest.approx(0.21 / np.sqrt(3)) and result.units == "rad"
    assert (result.variance >= 0).all() and len(conditions) == 1


def test_phase_resample_never_is_refused_with_the_numbers(phase, conditions):
    pair = np.random.default_rng(0).uniform(0.8, 1.2, (2, 32, 32)).astype(np.float32)
    with pytest.raises(OpticsMismatch) as err:
        reconstruct(phase, pair, defocus_um=3.6, resample="never", **FAST)
    assert "1.80×" in str(err.value) and "0.90–1.10×" in str(err.value) and conditions == []


def test_phase_plane_order_plus_minus_swaps(phase):
    pair = np.random.default_rng(0).uniform(0.8, 1.2, (2, 32, 32)).astype(np.float32)
    a = reconstruct(phase, pair, plane_order="plus-minus", **FAST)
    b = reconstruct(phase, pair[::-1].copy(), **FAST)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-5)
    assert a.optics["plane_order"] == "plus-minus"


def test_in_range_phase_conditions_on_the_user_s_optics(phase):
    info = phase.info.model_copy(update={"condition_on_tie": True})
    plan = plan_optics(info, ReconstructSettings(defocus_um=2.1, wavelength_um="500nm"))
    assert plan.action == "run" and plan.condition == {"wavelength_um": 0.5, "defocus_um": 2.1, "input_pixel_um": 0.21}


def test_the_psf_width_the_network_sees_picks_an_sr_calibration_calibrated_per_psf_width(sr):
    from napari_cvdm.inference.optics import network_psf_factor
    from napari_cvdm.model.metadata import Calibration

    base = dict(
        method="gamma", eta=1.0, steps=2, n_samples=2, raw_std=[0.01, 1.0], interval_z={"0.9": 1.7}, n_images=4,
        n_pixels=40_000, data="pairs",
    )  # fmt: skip
    pooled = Calibration(**base, calibrated_std=[0.02, 2.0])
    narrow = Calibration(**base, calibrated_std=[0.04, 4.0], psf_factor=(0.5, 0.95))
    wide = Calibration(**base, calibrated_std=[0.03, 3.0], psf_factor=(0.95, 2.0))
    info = sr.info.model_copy(
        update={"valid_optics": ValidOptics(basis="measured", psf_width_factor=(0.5, 2.0)),
                "calibrations": [pooled, narrow, wide]}
    )  # fmt: skip
    model = type(sr)(sr.network, info, sr.source)
    coarse = reconstruct(model, wf(), pixel_size_um=0.0626 / 0.8, method="gamma", eta=1.0, **FAST)  # PSF 0.8×
    assert network_psf_factor(coarse.optics) == pytest.approx(0.8)
    assert "PSF width 0.5–0.95× the model's" in coarse.calibration
    nominal = reconstruct(model, wf(), pixel_size_um=0.0626, method="gamma", eta=1.0, **FAST)
    assert network_psf_factor(nominal.optics) == pytest.approx(1.0) and "PSF width 0.95–2×" in nominal.calibration
    unknown = reconstruct(model, wf(), method="gamma", eta=1.0, **FAST)  # no optics stated: not a fact, pooled
    assert network_psf_factor(unknown.optics) is None and "pooled over every PSF width" in unknown.calibration
    ratio = coarse.calibrated_std / np.maximum(nominal.calibrated_std, 1e-12)
    assert ratio.mean() > 1.0  # the narrow-PSF bin's map is the wider one here
    binned = plan_optics(info, ReconstructSettings(pixel_size_um="20.9nm"))  # PSF 3×: binned 3×3 → 1×
    assert binned.action == "bin" and binned.bin == 3
    assert network_psf_factor(binned.record) == pytest.approx(binned.record["check"]["value"] / 3)
    assert network_psf_factor(plan_optics(tiny_model("phase").info, ReconstructSettings()).record) is None
