"""Angular-spectrum propagation: identities, energy, reversibility and the sign convention."""

import numpy as np
import pytest

from napari_cvdm.physics.propagation import angular_spectrum, transfer_function, two_shot

LAM, PX = 0.521, 0.21


def _band_limited_field(n: int, seed: int, frac: float = 0.8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    fy, fx = np.meshgrid(np.fft.fftfreq(n, PX), np.fft.fftfreq(n, PX), indexing="ij")
    keep = np.hypot(fy, fx) < frac / LAM
    return np.fft.ifft2(np.fft.fft2(f) * keep)


def test_zero_distance_is_identity():
    u = _band_limited_field(64, 0) + 0.3  # not band limited after the offset? DC is inside
    rng = np.random.default_rng(1)
    v = rng.standard_normal((64, 64)) * np.exp(1j * rng.uniform(0, 6, (64, 64)))  # full band
    for field in (u, v):
        np.testing.assert_array_equal(angular_spectrum(field, 0.0, LAM, PX), field)


def test_transfer_function_has_unit_modulus_and_cuts_evanescent_waves():
    H = transfer_function((64, 64), 3.0, LAM, PX)
    fy, fx = np.meshgrid(np.fft.fftfreq(64, PX), np.fft.fftfreq(64, PX), indexing="ij")
    prop = np.hypot(fy, fx) < 1 / LAM
    np.testing.assert_allclose(np.abs(H[prop]), 1.0, rtol=1e-12)
    assert np.all(H[~prop] == 0)


def test_energy_is_conserved_for_a_band_limited_field():
    u = _band_limited_field(64, 2)
    out = angular_spectrum(u, 5.0, LAM, PX, pad=False)
    assert np.sum(np.abs(out) ** 2) == pytest.approx(np.sum(np.abs(u) ** 2), rel=1e-10)


def test_forward_then_backward_returns_the_field():
    u = _band_limited_field(64, 3)
    back = angular_spectrum(angular_spectrum(u, 2.0, LAM, PX, pad=False), -2.0, LAM, PX, pad=False)
    np.testing.assert_allclose(back, u, atol=1e-10 * np.abs(u).max())
    # with reflect padding: a smooth field returns closely away from the borders
    yy, xx = np.mgrid[0:96, 0:96] * PX
    smooth = np.exp(1j * 0.5 * np.sin(2 * np.pi * yy / 8.0) * np.cos(2 * np.pi * xx / 10.0))
    back = angular_spectrum(angular_spectrum(smooth, 2.0, LAM, PX), -2.0, LAM, PX)
    np.testing.assert_allclose(back[16:-16, 16:-16], smooth[16:-16, 16:-16], atol=2e-2)


def test_converging_lens_focuses_downstream():
    """Goodman: φ = −k r²/(2f), f > 0, is a converging lens; +d is downstream → brighter centre."""
    n, f = 128, 20.0
    k = 2 * np.pi / LAM
    yy, xx = (np.mgrid[0:n, 0:n] - n / 2) * PX
    lens = np.exp(-1j * k * (xx**2 + yy**2) / (2 * f))
    minus, plus = two_shot(lens, 2.0, LAM, PX)
    c = slice(n // 2 - 8, n // 2 + 8)
    centre_minus, centre_plus = minus[c, c].mean(), plus[c, c].mean()
    assert centre_plus > centre_minus
    # geometric optics: I(z) = (f / (f − z))²
    assert centre_plus == pytest.approx((f / (f - 2.0)) ** 2, rel=0.1)
    assert centre_minus == pytest.approx((f / (f + 2.0)) ** 2, rel=0.1)


def test_two_shot_order_and_weak_phase_tie_sign():
    """[I(−d), I(+d)] and −k ∂I/∂z = ∇·(I∇φ) ≈ ∇²φ for a weak phase with unit intensity."""
    n, d = 128, 1.0
    k = 2 * np.pi / LAM
    yy, xx = (np.mgrid[0:n, 0:n] - n / 2) * PX
    sigma = 2.0
    phi = 0.05 * np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    field = np.exp(1j * phi)
    stack = two_shot(field, d, LAM, PX)
    np.testing.assert_allclose(stack[0], np.abs(angular_spectrum(field, -d, LAM, PX)) ** 2, atol=1e-12)
    np.testing.assert_allclose(stack[1], np.abs(angular_spectrum(field, d, LAM, PX)) ** 2, atol=1e-12)
    didz = (stack[1] - stack[0]) / (2 * d)
    r2 = (xx**2 + yy**2) / sigma**2
    lap_phi = phi * (r2 - 2) / sigma**2
    np.testing.assert_allclose(-k * didz, lap_phi, atol=0.03 * np.abs(lap_phi).max())


def test_invalid_arguments():
    with pytest.raises(ValueError, match="2-D"):
        angular_spectrum(np.ones((2, 4, 4)), 1.0, LAM, PX)
    with pytest.raises(ValueError, match="must be > 0"):
        two_shot(np.ones((8, 8)), -1.0, LAM, PX)
