"""Camera noise from one image, against known answers: widefield images simulated with a known gain, offset and
read noise (physics.simulate_sr_pair), and defocus pairs with a known additive ξ (physics.simulate_phase_pair)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_cvdm.physics import PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair
from napari_cvdm.physics.noise import (
    NoiseEstimateError,
    estimate_camera_noise,
    estimate_phase_noise,
    sr_cutoff_cycles_per_px,
)

CUTOFF = sr_cutoff_cycles_per_px(1.3, 0.515, 0.0626)  # the nominal SR optics: 0.32 cycles per pixel


def _camera(photons: float, read_adu: float, gain: float, offset: float, seed: int = 40_100):
    """A simulated widefield image in raw ADU (9 frames summed, offset added) and the simulator's info."""
    settings = SRSimulation(photons=(photons, photons), read_noise_counts=read_adu, gain_photons_per_count=gain)
    wf, _, info = simulate_sr_pair(settings, 256, np.random.default_rng(seed))
    return wf / gain + offset, info


@pytest.mark.parametrize(
    ("photons", "read_adu", "gain", "offset"),
    [(20.0, 10.0, 0.6026, 900.0), (300.0, 2.0, 1.2, 500.0), (100.0, 5.0, 0.3, 0.0)],
)
def test_the_out_of_band_fit_recovers_gain_and_photons_within_a_quarter(photons, read_adu, gain, offset):
    counts, info = _camera(photons, read_adu, gain, offset)
    noise = estimate_camera_noise(counts, offset=offset, cutoff_cycles_per_px=CUTOFF)
    assert noise.gain_e_per_unit == pytest.approx(gain, rel=0.25)
    assert noise.foreground_photons == pytest.approx(info["wf_foreground_photons"], rel=0.25)
    summed_read = math.sqrt(9) * read_adu  # 9 frames of read noise in the summed image, ADU
    assert abs(noise.read_noise_units - summed_read) <= max(0.2 * summed_read, 3 * noise.read_noise_error)
    assert noise.offset_source == "given" and "out-of-band" in noise.note


@pytest.mark.parametrize("size", [128, 256])
def test_bright_images_are_not_read_as_dimmer(size):
    """At 3000 photons per frame the shot noise is small beside bright structure: structure that the FFT's edge
    handling leaks into the noise band must not pass for noise (it would read the image as dimmer)."""
    settings = SRSimulation(photons=(3000.0, 3000.0))
    found = []
    for seed in range(40_300, 40_308):
        image = simulate_sr_pair(settings, size, np.random.default_rng(seed))[0]
        noise = estimate_camera_noise(image, offset=0.0, cutoff_cycles_per_px=CUTOFF)
        found.append(noise.foreground_photons / (9 * 3000.0))
    assert np.median(found) == pytest.approx(1.0, abs=0.06)
    assert min(found) > 0.85 and max(found) < 1.25, found


def test_read_noise_is_measured_where_it_matters():
    counts, _ = _camera(20.0, 10.0, 0.6026, 900.0)  # dim: the read noise is half the noise variance
    noise = estimate_camera_noise(counts, offset=900.0, cutoff_cycles_per_px=CUTOFF)
    assert noise.read_noise_units == pytest.approx(30.0, rel=0.1) and noise.read_noise_error < 3.0


def test_an_unknown_offset_counts_photons_above_the_dark_level():
    counts, info = _camera(100.0, 5.0, 0.6026, 900.0)
    noise = estimate_camera_noise(counts, offset=None, cutoff_cycles_per_px=CUTOFF)
    assert noise.offset_source == "dark level" and 900 < noise.offset < 1100
    assert noise.foreground_photons == pytest.approx(info["wf_foreground_photons"], rel=0.3)
    assert math.isnan(noise.read_noise_units)  # not separable from the offset


def test_photons_do_not_depend_on_the_intensity_units():
    counts, _ = _camera(100.0, 5.0, 0.6026, 0.0)
    raw = estimate_camera_noise(counts, offset=0.0, cutoff_cycles_per_px=CUTOFF)
    scaled = estimate_camera_noise(counts / counts.max(), offset=0.0, cutoff_cycles_per_px=CUTOFF)  # floats in [0, 1]
    assert scaled.foreground_photons == pytest.approx(raw.foreground_photons, rel=1e-6)


def test_a_denoised_image_gives_no_estimate():
    counts, _ = _camera(100.0, 5.0, 0.6026, 0.0)
    with pytest.raises(NoiseEstimateError, match="raw camera image"):
        estimate_camera_noise(gaussian_filter(counts, 2.0), offset=0.0, cutoff_cycles_per_px=CUTOFF)


@pytest.mark.parametrize(
    ("image", "why"),
    [
        (np.full((128, 128), 7.0), "constant"),
        (np.random.default_rng(0).poisson(100, (16, 16)).astype(float), "at least 32"),
        (np.where(np.eye(64) > 0, np.nan, 1.0), "NaN"),
    ],
)
def test_odd_images_give_no_estimate(image, why):
    with pytest.raises(NoiseEstimateError, match=why):
        estimate_camera_noise(image, cutoff_cycles_per_px=CUTOFF)
    with pytest.raises(NoiseEstimateError, match=why):
        estimate_phase_noise(np.stack([image, image]))


def test_too_coarse_sampling_leaves_no_noise_band():
    counts, _ = _camera(100.0, 5.0, 0.6026, 0.0)
    with pytest.raises(NoiseEstimateError, match="too coarsely"):
        estimate_camera_noise(counts, cutoff_cycles_per_px=0.68)


@pytest.mark.parametrize("xi", [0.02, 0.1, 0.2, 0.4])
def test_phase_xi_is_recovered_in_any_intensity_units(xi):
    settings = PhaseSimulation(source="cells", noise_max=0.0)
    stack, _, _ = simulate_phase_pair(settings, 256, np.random.default_rng(40_200))
    noisy = stack + np.random.default_rng(40_201).normal(xi, xi, stack.shape)  # the simulator's N(ξ, ξ)
    for scale in (1.0, 1000.0):  # illumination units, or camera counts
        assert estimate_phase_noise(scale * noisy).xi == pytest.approx(xi, rel=0.1)


def test_phase_xi_is_an_upper_bound_on_dense_structure():
    settings = PhaseSimulation(source="photos", noise_max=0.0)
    stack, _, _ = simulate_phase_pair(settings, 256, np.random.default_rng(40_202))
    for xi in (0.0, 0.1):
        noisy = stack + np.random.default_rng(40_203).normal(xi, xi, stack.shape) if xi else stack
        estimate = estimate_phase_noise(noisy).xi
        assert 0.95 * xi <= estimate <= xi + 0.15
