"""Known answers for the incoherent optics, binning and camera noise."""

import numpy as np
import pytest

from napari_cvdm.physics.optics import (
    apply_otf,
    camera_noise,
    foreground_mean,
    frequency_radius,
    incoherent_otf,
    otf_to_psf,
    sim_cutoff,
    sum_bin,
    widefield_cutoff,
)

PX = 0.01565  # µm, the simulator's fine grid


def test_cutoffs_match_biosr_numbers():
    assert widefield_cutoff(0.515, 1.3) == pytest.approx(5.049, abs=1e-3)
    # 2NA/λ + 1/Λ ≈ 10.8 µm⁻¹, about 2.1× the widefield support
    assert sim_cutoff(0.515, 1.3, 0.173) == pytest.approx(5.049 + 5.780, abs=1e-3)


@pytest.mark.parametrize("real", [False, True])
def test_otf_is_one_at_zero_and_zero_beyond_cutoff(real):
    cutoff = widefield_cutoff(0.515, 1.3)
    otf = incoherent_otf((128, 96), PX, cutoff, real=real)
    rho = frequency_radius((128, 96), PX, real=real)
    assert otf[0, 0] == 1.0
    assert np.all(otf[rho >= cutoff] == 0)
    assert np.all(otf >= 0) and np.all(otf <= 1)
    assert np.all(otf[(rho > 0) & (rho < 0.95 * cutoff)] > 0)
    # monotone decreasing with |f|
    order = np.argsort(rho.ravel())
    assert np.all(np.diff(otf.ravel()[order]) <= 1e-12)


def test_psf_sums_to_one_nonnegative_and_has_airy_fwhm():
    n = 256
    psf = otf_to_psf(incoherent_otf((n, n), PX, widefield_cutoff(0.515, 1.3)))
    assert psf.sum() == pytest.approx(1.0, abs=1e-10)
    assert psf.min() > -1e-6 * psf.max()
    assert np.unravel_index(np.argmax(psf), psf.shape) == (n // 2, n // 2)
    # FWHM of the Airy disk ≈ 0.514 λ/NA = 203.6 nm; measure on the central row
    row = psf[n // 2] / psf.max()
    x = (np.arange(n) - n // 2) * PX
    above = x[row >= 0.5]
    fwhm = above.max() - above.min() + PX  # pixel-quantised estimate
    assert fwhm == pytest.approx(0.514 * 0.515 / 1.3, rel=0.1)


def test_apply_otf_conserves_flux():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64))
    out = apply_otf(img, incoherent_otf(img.shape, PX, 5.0, real=True))
    assert out.sum() == pytest.approx(img.sum(), rel=1e-12)


def test_sum_bin():
    img = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(sum_bin(img, 2), [[10, 18], [42, 50]])
    with pytest.raises(ValueError, match="divisible"):
        sum_bin(np.zeros((5, 4)), 2)


def test_camera_noise_has_poisson_gaussian_statistics():
    rng = np.random.default_rng(1)
    lam = np.full((400, 500), 50.0)
    gain, read, frames = 0.6026, 10.0, 9
    out = camera_noise(lam, rng, read_noise_counts=read, gain_photons_per_count=gain, n_frames=frames)
    expected_var = 50.0 + frames * (read * gain) ** 2 + gain**2 / 12
    assert out.mean() == pytest.approx(50.0, abs=4 * np.sqrt(expected_var / out.size))
    assert out.var() == pytest.approx(expected_var, rel=0.02)
    # pure Poisson when read noise is off and quantisation is off
    pure = camera_noise(lam, rng, read_noise_counts=0.0, quantize=False)
    assert pure.var() == pytest.approx(50.0, rel=0.02)
    np.testing.assert_allclose(pure, np.round(pure))  # integer photo-electrons


def test_foreground_mean_ignores_background():
    img = np.zeros((64, 64))
    img[16:48, 16:48] = 10.0
    # the σ = 5 px blur widens the mask a little (SSR-SIM recipe), so the value is below 10
    assert 2 * img.mean() < foreground_mean(img) <= 10.0
