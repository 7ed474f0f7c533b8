"""TIE / US-TIE phase retrieval and the SR baselines."""

import numpy as np
import pytest

from napari_cvdm.evaluation.metrics import ms_ssim, psnr
from napari_cvdm.physics import (
    SRSimulation,
    bicubic_upsample,
    richardson_lucy,
    simulate_sr_pair,
    tie_fft,
    two_shot,
    us_tie,
)

LAM, PX, D = 0.521, 0.21, 2.0


def _bump(amp: float, sigma_um: float, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = (np.mgrid[0:n, 0:n] - n / 2) * PX
    phase = amp * np.exp(-(xx**2 + yy**2) / (2 * sigma_um**2))
    return two_shot(np.exp(1j * phase), D, LAM, PX), phase - phase.mean()


def test_tie_recovers_a_weak_smooth_phase():
    stack, truth = _bump(0.2, 1.5)
    est = tie_fft(stack, D, LAM, PX)
    assert est.mean() == pytest.approx(0.0, abs=1e-12)
    assert np.abs(est - truth).max() < 0.01 * 0.2  # < 1 % of the peak phase
    # the uniform-intensity shortcut is as good for a weak phase
    est_u = tie_fft(stack, D, LAM, PX, uniform_intensity=True)
    assert np.abs(est_u - truth).max() < 0.02 * 0.2


def test_tie_sign_follows_the_channel_order():
    stack, truth = _bump(0.2, 1.5)
    swapped = tie_fft(stack[::-1], D, LAM, PX)
    assert np.corrcoef(swapped.ravel(), truth.ravel())[0, 1] < -0.99


def test_us_tie_does_at_least_as_well_on_a_strong_phase():
    stack, truth = _bump(3.0, 1.0)
    tie = tie_fft(stack, D, LAM, PX)
    us, info = us_tie(stack, D, LAM, PX, return_info=True)
    rms = lambda e: float(np.sqrt(np.mean(e**2)))  # noqa: E731
    assert rms(us - truth) <= rms(tie - truth)
    assert rms(us - truth) < 0.01 * 3.0
    assert 1 <= info["iterations"] <= 50
    assert info["best_residual"] == min(info["residual"])


def test_phase_baselines_validate_the_stack():
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        tie_fft(np.ones((3, 8, 8)), D, LAM, PX)
    with pytest.raises(ValueError, match="must be > 0"):
        us_tie(np.ones((2, 8, 8)), 0.0, LAM, PX)


def test_bicubic_keeps_values_and_grid():
    wf = np.arange(16.0).reshape(4, 4)
    up = bicubic_upsample(wf, 2)
    assert up.shape == (8, 8)
    assert up.mean() == pytest.approx(wf.mean(), rel=0.02)
    np.testing.assert_allclose(bicubic_upsample(np.full((5, 5), 3.0), 3), 3.0)


def test_richardson_lucy_beats_bicubic_on_a_simulated_pair():
    s = SRSimulation(structure="microtubules", photons=(300, 300))
    wf, sim, _ = simulate_sr_pair(s, 96, np.random.default_rng(11))
    bc = bicubic_upsample(wf, 2)
    rl = richardson_lucy(wf, 2, s, iterations=20)
    assert rl.shape == sim.shape and rl.min() >= 0
    assert rl.mean() == pytest.approx(sim.mean(), rel=0.05)  # same units as the target
    assert psnr(rl, sim, normalize="minmax") > psnr(bc, sim, normalize="minmax") + 2.0
    assert ms_ssim(rl, sim, normalize="minmax") > ms_ssim(bc, sim, normalize="minmax")
