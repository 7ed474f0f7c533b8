"""The user's own pairs from the CLI: fine-tune at their optics and then reconstruct their images; calibrate on them
with their optics and camera offset."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_cvdm import load_model
from napari_cvdm.cli import main
from napari_cvdm.model.files import save_model
from tests.conftest import tiny_model

FAST = ["--n-samples", "2", "--steps", "2", "--device", "cpu", "-q"]  # predict and calibrate


def _ome(path, image, pixel_nm=None):
    meta = {} if pixel_nm is None else {"PhysicalSizeX": pixel_nm, "PhysicalSizeXUnit": "nm",
                                         "PhysicalSizeY": pixel_nm, "PhysicalSizeYUnit": "nm"}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(image, np.float32), ome=True, metadata=meta)


@pytest.fixture
def base(tmp_path):
    model = tiny_model("sr", name="base", wavelength_um=0.515, numerical_aperture=1.3)
    return save_model(tmp_path / "base.cvdm", model.network, model.info)


def _pairs(folder, offset=0.0, pixel_nm=108, n=2, side=64):
    rng = np.random.default_rng(7)
    for k in range(n):
        _ome(folder / "in" / f"p{k}.tif", rng.uniform(100, 300, (side, side)) + offset, pixel_nm)
        _ome(folder / "gt" / f"p{k}.tif", rng.uniform(0, 1, (2 * side, 2 * side)), None)
    return folder / "in", folder / "gt"


def test_a_model_fine_tuned_on_108_nm_files_reconstructs_108_nm_files(tmp_path, base, capsys):
    """The base refuses the user's 108 nm image as other optics; fine-tuned on 108 nm pairs it runs on it."""
    inputs, targets = _pairs(tmp_path)
    image = str(inputs / "p0.tif")
    assert main(["predict", image, "--model", str(base), "-o", str(tmp_path / "a.tif"), *FAST]) == 2
    assert "does not cover these optics" in capsys.readouterr().err
    tuned = tmp_path / "tuned.cvdm"
    job = ["train", "--task", "sr", "--base-model", str(base), "--input-dir", str(inputs), "--target-dir",
           str(targets), "--steps", "1", "--batch-size", "2", "--patch-size", "32", "--device", "cpu"]  # fmt: skip
    assert main([*job, "-q", "-o", str(tuned)]) == 0
    out = capsys.readouterr().out
    assert "the header states your pairs' pixel 108 nm, λ 515 nm, NA 1.3 (the base's: pixel 62.6 nm" in out
    assert "; λ and NA not stated, so the base's: state them if yours differ" in out
    assert load_model(tuned).info.input_pixel_um == pytest.approx(0.108)
    assert main(["predict", image, "--model", str(tuned), "-o", str(tmp_path / "b.tif"), *FAST]) == 0
    assert "in the model's range (PSF width 1.00× its own" in capsys.readouterr().out


def test_train_optics_flags_are_checked_by_name_and_refused_for_simulated_pairs(tmp_path, capsys):
    job = ["train", "--task", "sr", "--simulate-n", "2", "-o", str(tmp_path / "m.cvdm")]
    assert main([*job, "--pixel-size", "108nm"]) == 2
    assert "invalid setting: --pixel-size: for your own pairs (input_dir) only" in capsys.readouterr().err
    assert main(["train", "--task", "sr", "--input-dir", "a", "--target-dir", "b", "--na", "13", "-o", "m.cvdm"]) == 2
    assert "invalid setting: --na: Input should be less than or equal to 1.7" in capsys.readouterr().err


def test_calibrating_with_the_camera_offset_equals_calibrating_offset_free_pairs(tmp_path, base):
    """Pairs recorded 100 counts above zero, calibrated with --camera-offset 100, give the calibration of the same
    pairs without the offset: the dark level is subtracted before the reconstruction and the error's units."""
    fitted = {}
    for name, offset in (("dark", 100.0), ("clean", 0.0)):
        inputs, targets = _pairs(tmp_path / name, offset, pixel_nm=62.6)
        out = tmp_path / f"{name}.cvdm"
        flags = ["--camera-offset", str(offset)] if offset else []
        args = ["calibrate", "--model", str(base), "--inputs", str(inputs), "--targets", str(targets), "-o", str(out)]
        assert main([*args, *flags, "--no-bins", *FAST]) == 0
        fitted[name] = load_model(out).info.calibrations[0]
    assert fitted["dark"].calibrated_std == pytest.approx(fitted["clean"].calibrated_std, rel=1e-5)
    assert fitted["dark"].raw_std == pytest.approx(fitted["clean"].raw_std, rel=1e-5)


def test_calibrate_takes_the_pairs_pixel_size_and_refuses_pairs_that_state_none(tmp_path, base, capsys):
    inputs, targets = _pairs(tmp_path, pixel_nm=None)
    args = ["calibrate", "--model", str(base), "--inputs", str(inputs), "--targets", str(targets)]
    assert main([*args, "-o", str(tmp_path / "c.cvdm"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "the input folder" in err and "states no pixel size" in err and "--pixel-size" in err
    assert main([*args, "--pixel-size", "108nm", "-o", str(tmp_path / "c.cvdm"), *FAST]) == 2  # other optics
    err = capsys.readouterr().err
    assert "does not cover these optics" in err and "Fix, any of:" in err
    assert "approximate" not in err  # an interpolated output would not lie on the targets' grid
    assert main([*args, "--pixel-size", "62.6nm", "-o", str(tmp_path / "c.cvdm"), *FAST]) == 0
    assert main(["calibrate", "--model", str(base), "--pixel-size", "0.1", "-o", str(tmp_path / "d.cvdm")]) == 2
    assert "--pixel-size: for your own pairs (--inputs / --targets) only" in capsys.readouterr().err


def test_calibrating_phase_pairs_at_another_defocus_reconstructs_them_at_it(tmp_path, capsys):
    """Pairs at d = 3 µm (λ·d/p² 1.5× the tiny model's) are reconstructed as predict would: resampled exactly to
    the model's λ·d/p², the phase back on the input grid, so the targets fit and the calibration is stored."""
    model = tiny_model("phase", name="phase")
    path = save_model(tmp_path / "phase.cvdm", model.network, model.info)
    rng = np.random.default_rng(8)
    for k in range(2):
        _ome(tmp_path / "in" / f"p{k}.tif", rng.uniform(500, 700, (2, 128, 128)), 210)
        _ome(tmp_path / "gt" / f"p{k}.tif", rng.normal(size=(128, 128)), 210)
    args = ["calibrate", "--model", str(path), "--inputs", str(tmp_path / "in"), "--targets", str(tmp_path / "gt")]
    out = tmp_path / "cal.cvdm"
    assert main([*args, "--defocus", "3um", "--no-bins", "-o", str(out), *FAST]) == 0, capsys.readouterr().err
    assert load_model(out).info.calibrations[0].n_images == 2
    assert main([*args, "--defocus", "2000", "-o", str(out), "--overwrite", *FAST]) == 2
    assert "invalid setting: --defocus: --defocus '2000' = 2000 µm is implausibly large" in capsys.readouterr().err


def test_a_model_fine_tuned_on_bright_pairs_checks_their_noise_against_them(tmp_path, base, capsys):
    """The base warns that 3000 photons per frame lie outside its 15–600; fine-tuned on such pairs, the model
    states their noise and reconstructs another such image without the warning."""
    from napari_cvdm.physics import SRSimulation, simulate_sr_pair

    settings = SRSimulation(photons=(3000.0, 3000.0))
    for k in range(3):
        wf, sim, _ = simulate_sr_pair(settings, 128, np.random.default_rng(41_500 + k))
        _ome(tmp_path / "in" / f"p{k}.tif", wf, 62.6)
        _ome(tmp_path / "gt" / f"p{k}.tif", sim, None)
    image = str(tmp_path / "in" / "p2.tif")
    assert main(["predict", image, "--model", str(base), "-o", str(tmp_path / "a.tif"), *FAST]) == 0
    assert "photons above the model's 15–600" in capsys.readouterr().err
    tuned = tmp_path / "tuned.cvdm"
    folders = ["--input-dir", str(tmp_path / "in"), "--target-dir", str(tmp_path / "gt")]
    job = ["train", "--task", "sr", "--base-model", str(base), *folders,
           "--steps", "1", "--batch-size", "2", "--patch-size", "32", "--device", "cpu"]  # fmt: skip
    assert main([*job, "-q", "-o", str(tuned)]) == 0
    assert "noise: your pairs' noise, estimated from 3 inputs: photons per frame" in capsys.readouterr().out
    assert main(["predict", image, "--model", str(tuned), "-o", str(tmp_path / "b.tif"), *FAST]) == 0
    assert "photons" not in capsys.readouterr().err


def test_phase_pairs_with_their_defocus_planes_in_two_folders(tmp_path, base, capsys):
    """I(−d) and I(+d) as separate files (--plus / --plus-dir) calibrate exactly as the same pairs stacked in one
    file, and train; the folder is refused for an SR model and without the I(−d) folder."""
    model = tiny_model("phase", name="phase")
    path = str(save_model(tmp_path / "phase.cvdm", model.network, model.info))
    rng = np.random.default_rng(9)
    for k in range(2):
        stack = rng.uniform(500, 700, (2, 128, 128))
        _ome(tmp_path / "stacked" / f"p{k}.tif", stack, 210)
        _ome(tmp_path / "minus" / f"p{k}.tif", stack[0], 210)
        _ome(tmp_path / "plus" / f"p{k}.tif", stack[1], 210)
        _ome(tmp_path / "gt" / f"p{k}.tif", rng.normal(size=(128, 128)), 210)
    fitted = {}
    split = ["--inputs", str(tmp_path / "minus"), "--plus", str(tmp_path / "plus")]
    for name, folders in (("stacked", ["--inputs", str(tmp_path / "stacked")]), ("split", split)):
        out = tmp_path / f"{name}.cvdm"
        args = ["calibrate", "--model", path, *folders, "--targets", str(tmp_path / "gt"), "-o", str(out)]
        assert main([*args, "--no-bins", *FAST]) == 0, capsys.readouterr().err
        fitted[name] = load_model(out).info.calibrations[0]
    assert fitted["split"].calibrated_std == pytest.approx(fitted["stacked"].calibrated_std, rel=1e-6)
    assert fitted["split"].n_images == 2
    job = ["train", "--base-model", path, "--input-dir", str(tmp_path / "minus"), "--target-dir", str(tmp_path / "gt"),
           "--plus-dir", str(tmp_path / "plus"), "--steps", "1", "--batch-size", "2", "--patch-size", "32",
           "--val-fraction", "0", "--device", "cpu", "-q"]  # fmt: skip
    assert main([*job, "--task", "phase", "-o", str(tmp_path / "tuned.cvdm")]) == 0, capsys.readouterr().err
    assert load_model(tmp_path / "tuned.cvdm").info.task == "phase"
    assert main([*job, "--task", "sr", "-o", str(tmp_path / "sr.cvdm")]) == 2
    assert "plus_dir (the I(+d) files) is for phase pairs from folders" in capsys.readouterr().err
    args = ["calibrate", "--model", str(base), "--plus", str(tmp_path / "plus"), "-o", str(tmp_path / "c.cvdm")]
    assert main(args) == 2
    assert "--plus (a folder of I(+d) TIFFs) goes with --inputs" in capsys.readouterr().err


def test_training_on_pairs_whose_resolution_is_not_the_header_s_says_so(tmp_path, base, capsys):
    """Far-red pairs (λ 0.67 µm, NA 1.4) fine-tuned without stating λ and NA: train warns that the inputs show less
    detail than the base's optics pass; the model then checks later images against what its training inputs showed,
    so a far-red image raises no resolution warning.  Stated, the header agrees with the inputs."""
    from napari_cvdm.evaluation.quality import sr_microscope
    from napari_cvdm.physics import simulate_sr_pair

    settings = sr_microscope(wavelength_um=0.67, na=1.4).model_copy(update={"photons": (200.0, 200.0)})
    for k in range(3):
        wf, sim, _ = simulate_sr_pair(settings, 128, np.random.default_rng(41_600 + k))
        _ome(tmp_path / "in" / f"p{k}.tif", wf, 62.6)
        _ome(tmp_path / "gt" / f"p{k}.tif", sim, None)
    folders = ["--input-dir", str(tmp_path / "in"), "--target-dir", str(tmp_path / "gt")]
    job = ["train", "--task", "sr", "--base-model", str(base), *folders,
           "--steps", "1", "--batch-size", "2", "--patch-size", "32", "--device", "cpu", "-q"]  # fmt: skip
    assert main([*job, "-o", str(tmp_path / "assumed.cvdm")]) == 0
    err = capsys.readouterr().err
    assert "warning: your inputs show detail up to 0.2" in err and "(pixel 62.6 nm, λ 515 nm, NA 1.3) pass 0.32" in err
    record = load_model(tmp_path / "assumed.cvdm").info.training["data_resolution"]
    assert not record["agrees"] and record["estimated_on"] == 3
    image = str(tmp_path / "in" / "p2.tif")
    assert main(["predict", image, "--model", str(base), "-o", str(tmp_path / "a.tif"), *FAST]) == 0
    assert "warning: the image's resolution does not match" in capsys.readouterr().err
    assert (
        main(["predict", image, "--model", str(tmp_path / "assumed.cvdm"), "-o", str(tmp_path / "b.tif"), *FAST]) == 0
    )
    assert "resolution does not match" not in capsys.readouterr().err
    assert main([*job, "--wavelength", "670nm", "--na", "1.4", "-o", str(tmp_path / "stated.cvdm")]) == 0
    assert "your inputs show detail" not in capsys.readouterr().err
    assert load_model(tmp_path / "stated.cvdm").info.training["data_resolution"]["agrees"]
