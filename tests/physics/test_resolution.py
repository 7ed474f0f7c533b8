"""The blind cutoff fit against known answers: widefield images simulated at known optics (physics.simulate_sr_pair),
whose incoherent cutoff is 2·NA·p/λ cycles per pixel."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm.evaluation.quality import sr_microscope
from napari_cvdm.physics import SRSimulation, simulate_sr_pair
from napari_cvdm.physics.noise import sr_cutoff_cycles_per_px
from napari_cvdm.physics.resolution import ResolutionEstimateError, estimate_cutoff


def _image(settings: SRSimulation, seed: int, size: int = 128) -> np.ndarray:
    return simulate_sr_pair(settings, size, np.random.default_rng(seed))[0]


@pytest.mark.parametrize(
    "optics",
    [{}, {"wf_pixel_um": 0.108}, {"wavelength_um": 0.67, "na": 1.4}, {"wavelength_um": 0.46, "na": 1.45}],
    ids=["nominal", "108 nm pixels", "far red, NA 1.4", "blue, NA 1.45"],
)
@pytest.mark.parametrize("structure", ["microtubules", "ccps"])
def test_the_fitted_cutoff_is_the_optics_cutoff(optics, structure):
    settings = sr_microscope(**optics).model_copy(update={"structure": structure, "photons": (50.0, 50.0)})
    true = sr_cutoff_cycles_per_px(settings.na, settings.wavelength_um, settings.wf_pixel_um)
    found = estimate_cutoff(_image(settings, 40_500))
    assert 0.88 * true <= found.cutoff_cycles_per_px <= 1.06 * true, (true, found)
    assert not found.at_least


def test_the_cutoff_does_not_depend_on_the_intensity_units():
    image = _image(SRSimulation(), 40_501)
    assert estimate_cutoff(image).cutoff_cycles_per_px == estimate_cutoff(image / image.max()).cutoff_cycles_per_px
    assert estimate_cutoff(1000 + image).cutoff_cycles_per_px == estimate_cutoff(image).cutoff_cycles_per_px


def test_white_noise_gives_no_estimate():
    noise = np.random.default_rng(0).poisson(100.0, (128, 128)).astype(np.float32)
    with pytest.raises(ResolutionEstimateError):
        estimate_cutoff(noise)


def test_an_image_sampled_far_coarser_than_nyquist_reads_as_at_least_the_grid():
    """At 160 nm pixels the nominal objective's cutoff lies at 0.81 cycles per pixel, beyond the spectrum's corner."""
    settings = sr_microscope(wf_pixel_um=0.16).model_copy(update={"structure": "microtubules"})
    found = estimate_cutoff(_image(settings, 40_502))
    assert found.at_least and found.cutoff_cycles_per_px >= 0.65 and "≥" in found.note


@pytest.mark.parametrize(
    ("image", "why"),
    [(np.ones((64, 64)), "constant"), (np.ones((16, 16)), "at least 32"), (np.ones((2, 64, 64)), "2-D")],
)
def test_odd_images_are_refused_with_the_reason(image, why):
    with pytest.raises(ResolutionEstimateError, match=why):
        estimate_cutoff(image)


def test_the_defocused_otf_is_the_in_focus_one_at_zero_defocus_with_the_same_cutoff():
    from napari_cvdm.physics.optics import defocused_incoherent_otf, incoherent_otf

    shape, pixel, cutoff = (512, 512), 0.01565, 2 * 1.3 / 0.515  # the SR simulator's fine grid
    focused = defocused_incoherent_otf(shape, pixel, cutoff, 0.0)
    assert np.abs(focused - incoherent_otf(shape, pixel, cutoff)).max() < 0.01
    half_wave = defocused_incoherent_otf(shape, pixel, cutoff, 0.5)
    rho = np.hypot(*np.meshgrid(np.fft.fftfreq(512, pixel), np.fft.fftfreq(512, pixel), indexing="ij"))
    assert np.abs(half_wave[rho > 1.01 * cutoff]).max() < 1e-9 and half_wave.min() < 0  # contrast reversal


@pytest.mark.parametrize(("waves", "reads"), [(0.25, "the cutoff"), (0.5, "no estimate")])
def test_defocus_within_a_quarter_wave_keeps_the_cutoff_and_half_a_wave_gives_no_estimate(monkeypatch, waves, reads):
    """A quarter wave (Rayleigh's limit) still reads the objective's cutoff; at half a wave the OTF reverses
    contrast: no estimate, rather than a wrong one (the benchmark's 0.5-wave rows read too fine without it)."""
    import napari_cvdm.physics.simulate as simulate
    from napari_cvdm.physics.optics import defocused_incoherent_otf

    plain = simulate.incoherent_otf

    def otf(shape, px, cutoff, real=False):  # the widefield OTF (5.0 µm⁻¹) defocused, the SIM target's (≈ 9) not
        return (
            defocused_incoherent_otf(shape, px, cutoff, waves, real) if cutoff < 7 else plain(shape, px, cutoff, real)
        )

    monkeypatch.setattr(simulate, "incoherent_otf", otf)
    settings = SRSimulation(structure="microtubules")
    true = sr_cutoff_cycles_per_px(settings.na, settings.wavelength_um, settings.wf_pixel_um)
    image = _image(settings, 40_506, size=256)
    if reads == "the cutoff":
        assert 0.95 * true <= estimate_cutoff(image).cutoff_cycles_per_px <= 1.1 * true
    else:
        with pytest.raises(ResolutionEstimateError, match="does not fit an in-focus widefield image"):
            estimate_cutoff(image)  # (without the misfit rule this image reads 0.46 cycles per pixel: too fine)
