"""Adapt to my microscope: the camera noise from one raw image (or stated where the image cannot show it), pairs
simulated with the user's optics and that noise, a short fine-tune of a tiny model saved as a user model whose
header states those optics and is run on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_cvdm import load_model, reconstruct
from napari_cvdm._runtime import drive
from napari_cvdm.inference.optics import OpticsMismatch
from napari_cvdm.physics import PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair
from napari_cvdm.physics.optics import foreground_mean
from napari_cvdm.physics.ranges import sr_pattern_spacing
from napari_cvdm.settings import TrainSettings
from napari_cvdm.training.adapt import Microscope, estimate_noise, iter_adapt, simulate_adaptation_pairs
from napari_cvdm.training.data import DataError
from tests.conftest import tiny_model

TINY_TRAIN = TrainSettings(steps=2, batch_size=2, patch_size=32, val_fraction=0.25, device="cpu", checkpoint_every=1)
SR = "super-resolution"
SAMPLED = Microscope(pixel_um=0.0626, wavelength_um=0.515, numerical_aperture=1.3)  # cutoff 0.32 cycles/px
COARSE = Microscope(pixel_um=0.108, wavelength_um=0.515, numerical_aperture=1.45)  # cutoff 0.61: above Nyquist


def _widefield(scope: Microscope, photons: float, offset: float = 100.0, size: int = 256, seed: int = 50_100):
    """A structured widefield image in raw ADU (9 frames summed, 10 ADU read noise per frame at 0.6026 e⁻/ADU,
    ``offset`` added) simulated with ``scope``, and its true foreground photo-electrons."""
    settings = SRSimulation(
        wavelength_um=scope.wavelength_um, na=scope.numerical_aperture, wf_pixel_um=scope.pixel_um,
        pattern_spacing_um=sr_pattern_spacing(scope.numerical_aperture, scope.wavelength_um, scope.pixel_um),
        photons=(photons, photons),
    )  # fmt: skip
    wf, _, info = simulate_sr_pair(settings, size, np.random.default_rng(seed))
    return wf / settings.gain_photons_per_count + offset, info["wf_foreground_photons"]


@pytest.mark.parametrize("photons", [30.0, 300.0])
def test_the_photons_of_a_structured_widefield_image_are_found_and_the_pairs_follow_them(photons):
    counts, truth = _widefield(SAMPLED, photons)
    noise = estimate_noise(SR, counts, SAMPLED, offset=100.0)
    assert noise.foreground_photons == pytest.approx(truth, rel=0.25) and "out-of-band" in noise.note
    assert noise.gain_e_per_unit == pytest.approx(0.6026, rel=0.25)
    inputs, _, simulation = simulate_adaptation_pairs(SR, SAMPLED, noise, 4, 128, seed=1)
    frames = simulation["n_raw_frames"]
    low, high = (frames * p for p in simulation["photons"])  # the simulated inputs sum `frames` raw frames
    assert (low, high) == pytest.approx((noise.foreground_photons / 2, 2 * noise.foreground_photons))
    read_e = math.sqrt(frames) * simulation["read_noise_counts"] * simulation["gain_photons_per_count"]
    assert read_e == pytest.approx(noise.read_noise_units * noise.gain_e_per_unit)  # the same read noise in e⁻
    for x in inputs:  # photo-electrons: their foreground lies in the drawn 0.5–2× range of the estimate
        assert 0.9 * low <= foreground_mean(x) <= 1.1 * high


def test_a_coarsely_sampled_image_asks_for_the_photons_and_takes_them():
    counts, truth = _widefield(COARSE, 100.0, size=128)
    with pytest.raises(DataError, match=r"Nyquist.*--photons"):
        estimate_noise(SR, counts, COARSE, offset=100.0)
    noise = estimate_noise(SR, counts, COARSE, offset=100.0, photons=truth)
    assert noise.foreground_photons == pytest.approx(truth) and "stated" in noise.note
    assert noise.gain_e_per_unit == pytest.approx(0.6026, rel=0.05)  # the truth: the image is in ADU
    assert "assumed" in noise.note and noise.read_noise_units * noise.gain_e_per_unit == pytest.approx(6.026)
    by_gain = estimate_noise(SR, counts, COARSE, offset=100.0, gain_e_per_unit=0.6026, read_noise_e=18.0)
    assert by_gain.foreground_photons == pytest.approx(truth, rel=0.05)
    assert by_gain.read_noise_units == pytest.approx(18.0 / 0.6026)
    with pytest.raises(DataError, match="not both"):
        estimate_noise(SR, counts, COARSE, photons=truth, gain_e_per_unit=0.6)


def test_a_processed_image_is_refused_with_what_to_state():
    counts, _ = _widefield(SAMPLED, 100.0, offset=0.0)
    with pytest.raises(DataError, match=r"processed.*--photons"):
        estimate_noise(SR, gaussian_filter(counts, 2.0), SAMPLED)


def test_phase_noise_is_the_pair_s_xi():
    settings = PhaseSimulation(source="cells", noise_max=0.0)  # flat regions: ξ is exact
    stack, _, _ = simulate_phase_pair(settings, 256, np.random.default_rng(50_200))
    noisy = stack + np.random.default_rng(50_201).normal(0.1, 0.1, stack.shape)  # the simulator's N(ξ, ξ), ξ = 0.1
    scope = Microscope(0.21, 0.521, None, 2.0)
    noise = estimate_noise("phase", noisy, scope)
    assert noise.xi == pytest.approx(0.1, rel=0.15)
    _, _, simulation = simulate_adaptation_pairs("phase", scope, noise, 1, 32)
    assert simulation["noise_max"] == pytest.approx(2 * noise.xi)
    with pytest.raises(DataError, match="super-resolution"):
        estimate_noise("phase", noisy, scope, photons=100.0)


def test_adapt_writes_a_user_model_that_runs_on_the_user_s_optics(tmp_path):
    base = tiny_model("sr", wavelength_um=0.515, numerical_aperture=1.3, name="tiny-sr")
    image = np.random.default_rng(0).poisson(200, (64, 64)).astype(np.float32)
    with pytest.raises(OpticsMismatch):
        reconstruct(base, image, n_samples=2, steps=2, device="cpu", pixel_size_um=0.108, numerical_aperture=1.45)
    out = tmp_path / "my-scope.cvdm"
    with pytest.raises(DataError, match="--photons"):  # 108 nm at NA 1.45 is undersampled: no noise-only band
        drive(iter_adapt(base, image, COARSE, out, n_pairs=4, size=32, train=TINY_TRAIN))
    job = iter_adapt(base, image, COARSE, out, n_pairs=4, size=32, train=TINY_TRAIN, photons=200.0)
    stages = []
    adapted = drive(job, lambda e: stages.append(getattr(e, "stage", "train")))
    assert out.exists() and any("simulating pair 4/4" in s for s in stages)
    model = load_model(out)
    info = model.info
    assert (info.input_pixel_um, info.numerical_aperture) == (0.108, 1.45) and info.name == "my-scope"
    assert info.valid_optics.psf_width_factor == (0.95, 1.05) and "adapted" in info.valid_optics.basis
    low, high = info.valid_optics.photons_per_frame  # per raw frame of the headers' 9-frame sum
    assert (9 * low, 9 * high) == pytest.approx((100.0, 400.0))
    assert info.training["adapted"]["noise"]["gain_e_per_unit"] == pytest.approx(1.0, rel=0.05)
    assert info.training["fine_tuned_from"] == "tiny-sr" and adapted.info.name == "my-scope"
    result = reconstruct(
        model, image, n_samples=2, steps=2, device="cpu", pixel_size_um="108nm", numerical_aperture=1.45
    )
    assert result.optics["action"] == "run" and result.pixel_um == pytest.approx(0.054)


def test_an_adapted_model_s_noise_check_finds_the_user_s_image_inside(tmp_path):
    scope = Microscope(pixel_um=0.0626, wavelength_um=0.515, numerical_aperture=1.0)  # the tiny model's PSF × 1.3
    counts, _ = _widefield(scope, 60.0, offset=0.0, size=128)
    base = tiny_model("sr", wavelength_um=0.515, numerical_aperture=1.3, name="tiny-sr")
    model = drive(iter_adapt(base, counts, scope, tmp_path / "a.cvdm", n_pairs=4, size=32, train=TINY_TRAIN))
    result = reconstruct(
        model, counts, n_samples=2, steps=2, device="cpu", pixel_size_um=0.0626, numerical_aperture=1.0
    )
    assert result.optics["action"] == "run" and result.optics["noise"]["verdict"] == "inside"


def test_adapt_needs_the_optics_the_task_depends_on(tmp_path):
    base = tiny_model("sr")
    with pytest.raises(DataError, match="NA"):
        next(iter_adapt(base, np.ones((64, 64)), Microscope(0.1, 0.5), tmp_path / "x.cvdm"))


def test_the_adapt_command_saves_a_user_model(tmp_path, monkeypatch, capsys):
    import tifffile

    from napari_cvdm.cli import main
    from tests.conftest import save_tiny_models

    monkeypatch.setenv("NAPARI_CVDM_MODELS", str(tmp_path / "user"))
    base = save_tiny_models(tmp_path / "models", wavelength_um=0.515, numerical_aperture=1.3)["tiny-sr"]
    src = tmp_path / "mine.tif"
    tifffile.imwrite(src, np.random.default_rng(0).poisson(200, (64, 64)).astype(np.float32))
    args = ["adapt", str(src), "--model", str(base), "--na", "1.45", "--name", "scope", "--n-pairs", "4"]
    args += ["--size", "32", "--steps", "2", "--batch-size", "2", "--patch-size", "32", "--device", "cpu", "-q"]
    assert main(args) == 2 and "states no pixel size" in capsys.readouterr().err
    assert main([*args, "--pixel-size", "108nm"]) == 2 and "--photons" in capsys.readouterr().err
    args += ["--pixel-size", "108nm", "--photons", "200"]
    assert main(args) == 0
    assert "saved" in capsys.readouterr().out
    assert (tmp_path / "user" / "scope.cvdm").exists()
    assert main(args) == 2 and "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("optics", "match"),
    [
        (dict(pixel_um=0.1, wavelength_um=0.5, numerical_aperture=13.0), r"the NA of the objective 13.0 is no"),
        (dict(pixel_um=-0.1, wavelength_um=0.5, numerical_aperture=1.3), r"the pixel size -0.1 µm is no"),
        (dict(pixel_um=0.2, wavelength_um=0.0, defocus_um=2.0), r"the wavelength 0.0 µm is no"),
    ],
)
def test_impossible_optics_are_refused_when_stated(optics, match):
    with pytest.raises(DataError, match=match):
        Microscope(**optics)


def test_an_image_whose_resolution_the_stated_optics_cannot_explain_is_named(tmp_path):
    """The pairs are simulated at the stated optics: an image recorded at 108 nm but stated as 62.6 nm shows detail
    those optics cannot pass, and the adapted model's record says so (adapt and the dock print it as a warning)."""
    from napari_cvdm.training.adapt import image_resolution, resolution_warning

    image, _ = _widefield(Microscope(pixel_um=0.108, wavelength_um=0.515, numerical_aperture=1.3), 200.0)
    wrong = image_resolution(image, SAMPLED)
    assert not wrong["agrees"] and wrong["cutoff_cycles_per_px"] > 0.45
    assert "pass 0.32: the pairs were simulated at the stated optics" in resolution_warning(wrong)
    right, _ = _widefield(SAMPLED, 200.0)
    assert image_resolution(right, SAMPLED)["agrees"] and resolution_warning(image_resolution(right, SAMPLED)) is None
    base = tiny_model("sr", wavelength_um=0.515, numerical_aperture=1.3)
    model = drive(iter_adapt(base, right, SAMPLED, tmp_path / "a.cvdm", n_pairs=4, size=32, train=TINY_TRAIN))
    assert model.info.training["adapted"]["resolution"]["agrees"]
