"""Adapt to my microscope: the camera noise from one raw image, pairs simulated with the user's optics, a short
fine-tune of a tiny model saved as a user model whose header states those optics and is run on them."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm import load_model, reconstruct
from napari_cvdm._runtime import drive
from napari_cvdm.inference.optics import OpticsMismatch
from napari_cvdm.settings import TrainSettings
from napari_cvdm.training.adapt import Microscope, estimate_camera_noise, iter_adapt
from napari_cvdm.training.data import DataError
from tests.conftest import tiny_model

TINY_TRAIN = TrainSettings(steps=2, batch_size=2, patch_size=32, val_fraction=0.25, device="cpu", checkpoint_every=1)


def _camera(gain=0.5, read=10.0, offset=100.0, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:256, :256]
    photons = 5 + 495 * (x / 255) * (0.6 + 0.4 * np.cos(y / 40.0) ** 2)  # smooth: flat at the block scale
    return offset + rng.poisson(photons) / gain + rng.normal(0, read, photons.shape)


def test_variance_mean_fit_recovers_gain_and_read_noise():
    noise = estimate_camera_noise(_camera(), offset=100.0)
    assert noise.gain_e_per_unit == pytest.approx(0.5, rel=0.1)
    assert noise.read_noise_units == pytest.approx(10.0, rel=0.3)
    assert noise.r2 > 0.95 and "variance–mean fit" in noise.note


def test_a_processed_image_is_refused():
    with pytest.raises(DataError, match="raw camera image"):
        rng = np.random.default_rng(0)  # noise that falls as the signal rises: no camera does that
        estimate_camera_noise(
            np.tile(np.linspace(1, 2, 64), (64, 1)) + 0.01 * rng.normal(size=(64, 64)) * np.linspace(1, 0, 64)
        )


def test_adapt_writes_a_user_model_that_runs_on_the_user_s_optics(tmp_path):
    base = tiny_model("sr", wavelength_um=0.515, numerical_aperture=1.3, name="tiny-sr")
    scope = Microscope(pixel_um=0.108, wavelength_um=0.515, numerical_aperture=1.45)
    image = np.random.default_rng(0).poisson(200, (64, 64)).astype(np.float32)
    with pytest.raises(OpticsMismatch):
        reconstruct(base, image, n_samples=2, steps=2, device="cpu", pixel_size_um=0.108, numerical_aperture=1.45)
    out = tmp_path / "my-scope.cvdm"
    job = iter_adapt(base, image, scope, out, n_pairs=4, size=32, train=TINY_TRAIN)
    stages = []
    adapted = drive(job, lambda e: stages.append(getattr(e, "stage", "train")))
    assert out.exists() and any("simulating pair 4/4" in s for s in stages)
    model = load_model(out)
    info = model.info
    assert (info.input_pixel_um, info.numerical_aperture) == (0.108, 1.45) and info.name == "my-scope"
    assert info.valid_optics.psf_width_factor == (0.9, 1.1) and "adapted" in info.valid_optics.basis
    assert info.training["adapted"]["noise"]["gain_e_per_unit"] > 0
    assert info.training["fine_tuned_from"] == "tiny-sr" and adapted.info.name == "my-scope"
    result = reconstruct(
        model, image, n_samples=2, steps=2, device="cpu", pixel_size_um="108nm", numerical_aperture=1.45
    )
    assert result.optics["action"] == "run" and result.pixel_um == pytest.approx(0.054)


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
    assert main([*args, "--pixel-size", "108nm"]) == 0
    assert "saved" in capsys.readouterr().out
    assert (tmp_path / "user" / "scope.cvdm").exists()
    assert main([*args, "--pixel-size", "108nm"]) == 2 and "exists" in capsys.readouterr().err


def test_phase_noise_is_measured_as_additive_relative_to_the_mean():
    rng = np.random.default_rng(0)
    plane = 1.0 + 0.3 * np.tile(np.linspace(0, 1, 128), (128, 1)) + rng.normal(0.1, 0.1, (128, 128))
    noise = estimate_camera_noise(plane, additive=True)
    assert noise.relative_noise == pytest.approx(0.1 / plane.mean(), rel=0.2)
