"""reconstruct(): shapes and units per task, stacks, tiles, progress, cancel, and every bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import napari_cvdm as nc
from napari_cvdm.inference.tiling import tile_starts
from napari_cvdm.model import ModelMetadata, TrainedModel


@pytest.fixture
def widefield() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.poisson(50, (24, 20)) + 100).astype(np.uint16)


def test_super_resolution_output_is_on_the_twice_finer_grid(tiny_sr_model, widefield):
    result = nc.reconstruct(tiny_sr_model, widefield, n_samples=3, steps=2, keep_samples=True)
    assert result.mean.shape == result.variance.shape == result.beta_map.shape == (48, 40)
    assert result.samples.shape == (3, 48, 40)
    assert result.mean.dtype == np.float32
    assert result.pixel_um == pytest.approx(0.0313)
    assert result.units == "input intensity units"
    assert (result.variance >= 0).all() and (result.beta_map > 0).all()
    np.testing.assert_allclose(result.mean, result.samples.mean(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(result.variance, result.samples.var(0, ddof=1), rtol=1e-3, atol=1e-3)
    assert result.settings["steps"] == 2 and result.nfe_per_sample == 2


def test_phase_output_is_in_radians_on_the_input_grid(tiny_phase_model):
    stack = np.random.default_rng(1).uniform(0.8, 1.2, (2, 16, 16))
    result = nc.reconstruct(tiny_phase_model, stack, n_samples=2, steps=2)
    assert result.mean.shape == (16, 16)
    assert result.units == "rad"


def test_stacks_keep_their_leading_axes(tiny_sr_model, tiny_phase_model):
    frames = np.random.default_rng(2).uniform(0, 1, (2, 3, 16, 16))
    result = nc.reconstruct(tiny_sr_model, frames, n_samples=2, steps=1, keep_samples=True)
    assert result.mean.shape == (2, 3, 32, 32)
    assert result.samples.shape == (2, 2, 3, 32, 32)
    pairs = np.random.default_rng(3).uniform(0.5, 1.5, (4, 2, 16, 16))
    assert nc.reconstruct(tiny_phase_model, pairs, n_samples=1, steps=1).mean.shape == (4, 16, 16)


def test_same_seed_same_result_other_seed_other_result(tiny_sr_model, widefield):
    a = nc.reconstruct(tiny_sr_model, widefield, n_samples=2, steps=2, seed=5)
    b = nc.reconstruct(tiny_sr_model, widefield, n_samples=2, steps=2, seed=5)
    c = nc.reconstruct(tiny_sr_model, widefield, n_samples=2, steps=2, seed=6)
    np.testing.assert_array_equal(a.mean, b.mean)
    assert not np.array_equal(a.mean, c.mean)


def test_progress_reports_every_evaluation_up_to_the_total(tiny_sr_model, widefield):
    calls = []
    nc.reconstruct(tiny_sr_model, widefield, n_samples=3, steps=4, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (12, 12)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_cancel_stops_within_one_evaluation(tiny_sr_model, widefield):
    token = nc.CancelToken()
    calls = []

    def progress(done, total):
        calls.append(done)
        if done >= 2:
            token.cancel()

    with pytest.raises(nc.Cancelled, match="cancelled"):
        nc.reconstruct(tiny_sr_model, widefield, n_samples=1, steps=50, progress=progress, cancel=token)
    assert calls == [0, 1, 2]  # the plane's condition event, then one per network evaluation


def test_tile_starts_cover_the_image_with_the_overlap():
    assert tile_starts(100, 128, 16) == [0]
    starts = tile_starts(300, 128, 32)
    assert starts[0] == 0 and starts[-1] == 300 - 128
    assert all(b - a <= 128 - 32 for a, b in itertools.pairwise(starts))


def test_tiled_reconstruction_matches_whole_image(toy_network):
    """Known answer (the toy law): mean 0 and variance x² per pixel, tiled or not; no seams; and every kept
    sample of a tiled run is one draw — also in the overlaps, where blending two tiles' draws would shrink it."""
    info = ModelMetadata(task="generic", normalization={"low_percentile": 0.0, "high_percentile": 100.0})
    model = TrainedModel(network=toy_network, info=info)
    rng = np.random.default_rng(0)
    image = rng.uniform(0.45, 1.5, (40, 40)).astype(np.float32)
    image[0, 0], image[0, 1] = 0.0, 1.5  # min-max normalisation x/1.5 keeps the toy range; outputs scale back
    n = 64
    whole = nc.reconstruct(model, image, n_samples=n, steps=20, seed=1)
    tiled = nc.reconstruct(model, image, n_samples=n, steps=20, seed=1, tile_size=16, tile_overlap=6, keep_samples=True)
    x2 = image[2:, 2:] ** 2
    for result in (whole, tiled):
        assert 0.75 < float(np.mean(result.variance[2:, 2:] / x2)) < 1.25
    # no seams: the variance/x² ratio along tile borders is like elsewhere
    ratio = tiled.variance[2:, 2:] / x2
    seam_cols = [c - 2 for c in (10, 11, 20, 21, 30, 31)]
    assert abs(ratio[:, seam_cols].mean() - ratio.mean()) < 0.15
    # the same mean: both estimate 0, and differ by no more than two independent n-sample means do
    z2 = (tiled.mean - whole.mean)[2:, 2:] ** 2 / (2 * x2 / n)
    assert float(z2.mean()) < 1.5
    # kept samples: in the overlaps (pixels two or more tiles cover) each sample has the single-draw variance
    cover = np.zeros((40, 40))
    for r, c in itertools.product(tile_starts(40, 16, 6), repeat=2):
        cover[r : r + 16, c : c + 16] += 1
    overlap = cover[2:, 2:] > 1
    assert overlap.mean() > 0.3
    spread = tiled.samples.var(0, ddof=1)[2:, 2:]
    assert 0.8 < float(np.mean((spread / tiled.variance[2:, 2:])[overlap])) < 1.2
    assert 0.75 < float(np.mean((spread / x2)[overlap])) < 1.25


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 5)), "empty"),
        (np.ones((4, 3, 2, 16, 16)), "at most 2 leading axes"),
        (np.ones(16), "super-resolution expects one 2-D widefield image"),
        (np.ones((64, 64, 3)), "looks like an RGB image"),
        (np.full((16, 16), np.nan), "NaN or infinite"),
        (np.where(np.eye(16) > 0, np.inf, 1.0), "NaN or infinite"),
        (np.full((16, 16), 7.0), "constant"),
        (np.ones((2, 2)) * np.arange(2), "needs at least"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
        (np.ones((16, 16), dtype=complex), "complex"),
    ],
)
def test_bad_super_resolution_inputs_are_explained(tiny_sr_model, image, message):
    with pytest.raises(nc.InputError, match=message):
        nc.reconstruct(tiny_sr_model, image, n_samples=1, steps=1)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.ones((16, 16)), r"two defocus planes stacked as \(2, H, W\)"),
        (np.ones((3, 16, 16)), r"two defocus planes"),
        (np.ones((16, 16, 3)), "RGB"),
        (np.stack([np.full((16, 16), -1.0), np.ones((16, 16))]), "non-negative"),
    ],
)
def test_bad_phase_inputs_are_explained(tiny_phase_model, image, message):
    with pytest.raises(nc.InputError, match=message):
        nc.reconstruct(tiny_phase_model, image, n_samples=1, steps=1)


def test_bad_settings_are_explained(tiny_sr_model, widefield):
    with pytest.raises(ValueError, match="unknown device"):
        nc.reconstruct(tiny_sr_model, widefield, device="tpu")
    with pytest.raises(ValueError, match="n_samples"):
        nc.reconstruct(tiny_sr_model, widefield, n_samples=0)
    with pytest.raises(ValueError, match="no CUDA GPU|cuda"):
        nc.reconstruct(tiny_sr_model, widefield, device="cuda:7", n_samples=1, steps=1)


def test_the_input_is_never_modified(tiny_sr_model, widefield):
    before = widefield.copy()
    nc.reconstruct(tiny_sr_model, widefield, n_samples=1, steps=1)
    np.testing.assert_array_equal(widefield, before)


def test_a_camera_offset_is_subtracted_before_anything_else(tiny_phase_model, capsys, monkeypatch):
    """A pair recorded with a dark level b and reconstructed with camera_offset=b gives the network exactly the
    offset-free pair (integer counts, so the subtraction is exact in float32), and so the same result."""
    import napari_cvdm.inference.run as run
    from napari_cvdm.cli import main
    from napari_cvdm.physics import PhaseSimulation, simulate_phase_pair
    from napari_cvdm.tasks import InputError

    seen = []
    real = run.plane_condition
    monkeypatch.setattr(run, "plane_condition", lambda plane, info: seen.append(np.array(plane)) or real(plane, info))
    stack = simulate_phase_pair(PhaseSimulation(source="cells"), 32, np.random.default_rng(5))[0]
    counts = np.round(stack * 500).astype(np.float32)
    plain = nc.reconstruct(tiny_phase_model, counts, n_samples=2, steps=2)
    dark = nc.reconstruct(tiny_phase_model, counts + 100, n_samples=2, steps=2, camera_offset=100)
    np.testing.assert_array_equal(seen[1], seen[0])
    np.testing.assert_array_equal(dark.mean, plain.mean)
    assert dark.settings["camera_offset"] == 100
    with pytest.raises(InputError, match="the camera offset 5000 is not below the image's mean intensity"):
        nc.reconstruct(tiny_phase_model, counts, n_samples=2, steps=2, camera_offset=5000)
    with pytest.raises(SystemExit):  # the CLI flag comes from the same field
        main(["predict", "--help"])
    assert "--camera-offset" in capsys.readouterr().out


def test_a_camera_offset_left_in_makes_the_classical_phase_smaller_by_the_intensity_ratio():
    """Why the offset matters: the TIE divides the axial derivative (offset-free) by the intensity (offset
    included), so an offset b under a mean intensity I scales the recovered phase by about I / (I + b)."""
    from napari_cvdm.physics import PhaseSimulation, simulate_phase_pair
    from napari_cvdm.physics.baselines import tie_fft

    stack = simulate_phase_pair(PhaseSimulation(source="cells", noise_max=0.0), 128, np.random.default_rng(6))[0]
    stack = stack * (1000 / stack.mean())
    optics = dict(defocus_um=2.0, wavelength_um=0.521, pixel_um=0.21)
    clean, biased = tie_fft(stack, **optics), tie_fft(stack + 100, **optics)
    ratio = np.sum(biased * clean) / np.sum(clean * clean)  # least-squares slope of biased on clean
    assert ratio == pytest.approx(1000 / 1100, rel=0.03)
