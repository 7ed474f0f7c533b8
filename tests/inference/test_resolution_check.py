"""The resolution check at reconstruction time: the cutoff the image shows against the one the run's optics (stated,
else the model's) predict, as a verdict in ``result.optics["resolution"]`` that warns, never refuses, never raises."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from napari_cvdm import reconstruct
from napari_cvdm.evaluation.quality import sr_microscope
from napari_cvdm.inference.optics import OpticsPlan
from napari_cvdm.inference.resolution_check import check_resolution
from napari_cvdm.physics import SRSimulation, simulate_sr_pair
from tests.conftest import save_tiny_models, tiny_model

SR_OPTICS = {"wavelength_um": 0.515, "numerical_aperture": 1.3}  # the tiny SR model at the nominal optics


def _widefield(seed: int = 40_600, size: int = 128, **optics: float) -> np.ndarray:
    settings = sr_microscope(**optics) if optics else SRSimulation()
    return simulate_sr_pair(settings.model_copy(update={"structure": "f-actin"}), size, np.random.default_rng(seed))[0]


def _stated(pixel_um: float, wavelength_um: float = 0.515, na: float = 1.3) -> OpticsPlan:
    used = {"pixel_size_um": {"value": pixel_um, "source": "stated in the settings"},
            "wavelength_um": {"value": wavelength_um, "source": "stated in the settings"},
            "numerical_aperture": {"value": na, "source": "stated in the settings"}}  # fmt: skip
    return OpticsPlan("run", record={"used": used})


def test_an_image_at_the_model_s_optics_matches():
    verdict = check_resolution(tiny_model("sr", **SR_OPTICS).info, _widefield())
    assert verdict["verdict"] == "match", verdict["note"]
    assert "the model's optics, assumed as none were stated" in verdict["note"]


def test_another_microscope_told_nothing_is_a_mismatch_that_says_what_to_state():
    info = tiny_model("sr", **SR_OPTICS).info
    coarse = check_resolution(info, _widefield(wf_pixel_um=0.108))  # 108 nm pixels: detail up to 0.55 cycles/px
    assert coarse["verdict"] == "mismatch" and "finer detail than they pass" in coarse["note"]
    assert coarse["psf_width_factor"] < 0.7 and "state your pixel size, emission λ and NA" in coarse["note"]
    red = check_resolution(info, _widefield(wavelength_um=0.67, na=1.4))  # PSF 1.21× as wide
    assert red["verdict"] == "mismatch" and "less detail than they pass" in red["note"]
    assert 1.1 < red["psf_width_factor"] < 1.35


def test_the_optics_stated_for_the_image_are_what_it_is_checked_against():
    info = tiny_model("sr", **SR_OPTICS).info
    image = _widefield(wf_pixel_um=0.108)
    stated = check_resolution(info, image, _stated(0.108))  # 2·NA·p/λ = 0.55: beyond Nyquist, as the image
    assert stated["verdict"] == "match" and "undersampled, as the optics predict" in stated["note"]
    red = _widefield(wavelength_um=0.67, na=1.4)
    assert check_resolution(info, red, _stated(0.0626, 0.67, 1.4))["verdict"] == "match"
    wrong = check_resolution(info, _widefield(), _stated(0.108))  # a 62.6 nm image said to be at 108 nm
    assert (
        wrong["verdict"] == "mismatch" and "the optics used (pixel 108.0 nm, λ 515 nm, NA 1.3 stated)" in wrong["note"]
    )


def test_what_cannot_be_checked_says_why():
    assert check_resolution(tiny_model("phase").info, np.ones((2, 64, 64)))["verdict"] == "unchecked"
    assert check_resolution(tiny_model("sr").info, _widefield())["verdict"] == "unchecked"  # no λ, NA in the header
    flat = np.random.default_rng(0).poisson(50.0, (64, 64)).astype(np.float32)
    unknown = check_resolution(tiny_model("sr", **SR_OPTICS).info, flat)
    assert unknown["verdict"] == "unknown" and "too little structure" in unknown["note"]


def test_the_verdict_lands_in_result_optics_and_predict_warns(tmp_path, capsys):
    from napari_cvdm.cli import main

    sr = tiny_model("sr", **SR_OPTICS)
    result = reconstruct(sr, _widefield(wf_pixel_um=0.108), n_samples=2, steps=2, device="cpu")
    assert result.optics["resolution"]["verdict"] == "mismatch"
    # detail above the assumed optics' cutoff is not taken for noise: the noise check's band starts above what the
    # image shows (here beyond Nyquist, so there is none) instead of reading the structure as a dim image
    assert result.optics["noise"]["verdict"] == "unknown" and "too coarsely" in result.optics["noise"]["note"]
    json.dumps(result.optics)  # written into the OME-TIFF description and layer metadata
    model = save_tiny_models(tmp_path / "models", **SR_OPTICS)["tiny-sr"]
    args = [
        "--model",
        str(model),
        "--n-samples",
        "2",
        "--steps",
        "2",
        "--device",
        "cpu",
        "-q",
        "--pixel-size",
        "62.6nm",
    ]
    red = _widefield(wavelength_um=0.67, na=1.4)  # said to be at the model's pixel, λ and NA left to the model's
    for name, image, warned in (("red", red, True), ("own", _widefield(), False)):
        tifffile.imwrite(tmp_path / f"{name}.tif", image)
        assert main(["predict", str(tmp_path / f"{name}.tif"), "-o", str(tmp_path / f"{name}_out.tif"), *args]) == 0
        err = capsys.readouterr().err
        mismatch = "warning: the image's resolution does not match the optics used (pixel 62.6 nm stated; λ 515 nm, NA"
        assert (mismatch in err) is warned, err


def test_a_mismatch_voids_the_calibration_sentence_of_a_calibrated_run():
    from tests.inference.test_calibrated_output import calibration

    model = tiny_model("sr", calibrations=[calibration()], **SR_OPTICS)
    own = reconstruct(model, _widefield(), n_samples=4, steps=2, device="cpu")
    assert own.calibration.startswith("calibrated on 4 held-out images") and "not valid" not in own.calibration
    other = reconstruct(model, _widefield(wf_pixel_um=0.108), n_samples=4, steps=2, device="cpu")
    assert other.calibrated_std is not None  # still there, with what it is worth said
    assert "; not valid for this image: its resolution does not match the optics used" in other.calibration
