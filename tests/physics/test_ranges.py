"""Ranges of optics and noise: validation, per-pair draws, and pairs that carry the drawn optics."""

import numpy as np
import pytest
from pydantic import ValidationError

from napari_cvdm.physics import (
    PhaseOpticsRange,
    PhaseSimulation,
    SROpticsRange,
    SRSimulation,
    draw_phase_settings,
    draw_sr_settings,
    simulate_phase_pair,
    simulate_phase_pair_random,
    simulate_sr_pair,
    simulate_sr_pair_random,
)
from napari_cvdm.physics.ranges import fresnel_factor, psf_width_factor, sr_psf_fwhm_px


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"na": (1.4, 1.2)}, "reversed"),
        ({"na": (1.2, 1.6)}, "NA < n"),
        ({"wavelength_um": (450.0, 700.0)}, "nanometres"),
        ({"photons": (0.0, 100.0)}, "must be > 0"),
        ({"background": (0.0, 1.5)}, "within"),
        ({"psf_width_factor": (3.0, 4.0)}, "widen the ranges"),
        ({"wf_pixel_um": (0.06, 0.30)}, "lower wf_pixel_um"),
    ],
)
def test_sr_range_refuses_bad_values_with_a_clear_message(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        SROpticsRange(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"defocus_um": (4.0, 1.0)}, "reversed"),
        ({"wavelength_um": (450.0, 650.0)}, "nanometres"),
        ({"fresnel_factor": (5.0, 9.0)}, "widen the ranges"),
        ({"noise_xi": (-0.1, 0.2)}, "within"),
        ({"nonsense": 1}, "Extra inputs"),
    ],
)
def test_phase_range_refuses_bad_values_with_a_clear_message(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        PhaseOpticsRange(**kwargs)


def test_sr_defaults_are_the_issue_ranges_and_draws_stay_inside():
    r = SROpticsRange()
    assert r.na == (1.2, 1.49) and r.wavelength_um == (0.45, 0.70) and r.wf_pixel_um == (0.060, 0.110)
    assert r.photons == (10.0, 1000.0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = draw_sr_settings(r, rng)
        assert 1.2 <= s.na <= 1.49 and 0.45 <= s.wavelength_um <= 0.70 and 0.06 <= s.wf_pixel_um <= 0.11
        assert 0.6 <= psf_width_factor(s.na, s.wavelength_um, s.wf_pixel_um) <= 1.6
        assert 10 <= s.photons[0] == s.photons[1] <= 1000 and 1.0 <= s.read_noise_counts <= 15.0
        assert s.sim_pixel_um == s.wf_pixel_um / 2  # the SIM grid follows the camera
        cutoff = 2 * s.na / s.wavelength_um + 1 / s.pattern_spacing_um
        assert cutoff <= 1 / s.wf_pixel_um  # the SIM target is sampled by its own grid
        assert cutoff > 1.3 * 2 * s.na / s.wavelength_um  # and resolves beyond the widefield


def test_nominal_optics_give_the_nominal_sim_pattern():
    n = SRSimulation()
    r = SROpticsRange(na=(n.na, n.na), wavelength_um=(n.wavelength_um,) * 2, wf_pixel_um=(n.wf_pixel_um,) * 2)
    s = draw_sr_settings(r, np.random.default_rng(0))
    assert s.pattern_spacing_um == pytest.approx(n.pattern_spacing_um, rel=1e-9)
    assert s.excitation_wavelength_um == pytest.approx(n.excitation_wavelength_um)
    assert psf_width_factor(n.na, n.wavelength_um, n.wf_pixel_um) == pytest.approx(1.0)


def _radial_power(image: np.ndarray, lo: float, hi: float) -> float:
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))  # no leakage from the edges
    spec = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(image.shape[0]), np.fft.fftfreq(image.shape[1]), indexing="ij"))
    return float(spec[(f >= lo) & (f < hi)].mean())


def test_random_pair_has_the_drawn_optics_psf_width():
    quiet = dict(photons=(1e5, 1e5), background=(0.0, 0.0), read_noise_counts=(0.0, 0.0))
    wide = SROpticsRange(na=(1.2, 1.2), wavelength_um=(0.7, 0.7), wf_pixel_um=(0.06, 0.06), **quiet)
    narrow = SROpticsRange(na=(1.45, 1.45), wavelength_um=(0.5, 0.5), wf_pixel_um=(0.07, 0.07), **quiet)
    base = SRSimulation(structure="microtubules")
    out = {}
    for name, r in (("wide", wide), ("narrow", narrow)):
        wf, sim, info = simulate_sr_pair_random(r, 64, np.random.default_rng(3), base)
        assert wf.shape == (64, 64) and sim.shape == (128, 128)
        assert info["psf_fwhm_px"] == pytest.approx(
            sr_psf_fwhm_px(info["na"], info["wavelength_um"], 0.06 + 0.01 * (name == "narrow"))
        )
        fc = 2 * info["na"] * info["wf_pixel_um"] / info["wavelength_um"]  # cycles per WF pixel
        inside, outside = _radial_power(wf, 0.6 * fc, 0.85 * fc), _radial_power(wf, 1.1 * fc, 1.25 * fc)
        assert inside > 30 * outside  # the spectrum ends at the drawn optics' own cutoff
        out[name] = (fc, wf)
    assert out["wide"][0] < 0.25 < out["narrow"][0]
    fc_wide = out["wide"][0]
    # between the two cutoffs only the narrow PSF passes signal
    band = (1.1 * fc_wide, 1.25 * fc_wide)
    assert _radial_power(out["narrow"][1], *band) > 30 * _radial_power(out["wide"][1], *band)


def test_random_pair_is_the_ordinary_simulator_run_with_the_drawn_settings():
    r = SROpticsRange()
    wf, sim, info = simulate_sr_pair_random(r, 32, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    settings = draw_sr_settings(r, rng)
    wf2, sim2, _ = simulate_sr_pair(settings, 32, rng)
    np.testing.assert_array_equal(wf, wf2)
    np.testing.assert_array_equal(sim, sim2)
    assert info["na"] == settings.na and info["wf_pixel_um"] == settings.wf_pixel_um


def test_phase_draws_spread_the_defocus_contrast_and_stay_inside():
    r = PhaseOpticsRange()
    rng = np.random.default_rng(0)
    factors = []
    for _ in range(200):
        s, xi = draw_phase_settings(r, rng)
        f = fresnel_factor(s.defocus_um, s.wavelength_um, s.pixel_um)
        assert 0.5 <= f <= 2.0 and 0 <= xi <= 0.2 and 0 <= s.absorption <= 0.1 and s.noise_max == 0
        factors.append(f)
    assert min(factors) < 0.6 and max(factors) > 1.8  # the range is used, not only its centre
    n = PhaseSimulation()
    assert fresnel_factor(n.defocus_um, n.wavelength_um, n.pixel_um) == pytest.approx(1.0)


def test_random_phase_pair_uses_the_drawn_setup():
    r = PhaseOpticsRange(noise_xi=(0.0, 0.0))
    stack, phase, info = simulate_phase_pair_random(r, 32, np.random.default_rng(4))
    assert stack.shape == (2, 32, 32) and phase.shape == (32, 32) and info["noise_xi"] == 0
    rng = np.random.default_rng(4)
    settings, _ = draw_phase_settings(r, rng)
    stack2, phase2, _ = simulate_phase_pair(settings, 32, rng)
    np.testing.assert_array_equal(stack, stack2)
    np.testing.assert_array_equal(phase, phase2)
    assert info["defocus_um"] == settings.defocus_um and info["lambda_d_over_p2"] == pytest.approx(
        settings.wavelength_um * settings.defocus_um / settings.pixel_um**2
    )
