"""A model trained on the user's own pairs states their optics: the header, its range, the TIE condition, offset."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_cvdm.inference.optics import OpticsMismatch, plan_optics
from napari_cvdm.io.pairs import read_folders
from napari_cvdm.model.files import save_model
from napari_cvdm.model.metadata import Calibration, psf_fwhm_px
from napari_cvdm.settings import ReconstructSettings, TrainJob
from napari_cvdm.tasks import tie_estimate
from napari_cvdm.training.data import RawPairs
from napari_cvdm.training.jobs import prepare_job
from napari_cvdm.training.optics import with_data_optics
from tests.conftest import tiny_model

SR_OPTICS = {"wavelength_um": 0.515, "numerical_aperture": 1.3}  # with the tiny model's 62.6 nm pixels: a PSF


def _write(folder, name, image, pixel_nm=None):
    folder.mkdir(exist_ok=True)
    meta = {} if pixel_nm is None else {"PhysicalSizeX": pixel_nm, "PhysicalSizeXUnit": "nm",
                                         "PhysicalSizeY": pixel_nm, "PhysicalSizeYUnit": "nm"}  # fmt: skip
    tifffile.imwrite(folder / f"{name}.tif", np.asarray(image, np.float32), ome=True, metadata=meta)


def _sr_job(tmp_path, pixel_nm=108, **job):
    base = tiny_model("sr", name="base", **SR_OPTICS)
    path = save_model(tmp_path / "base.cvdm", base.network, base.info)
    rng = np.random.default_rng(1)
    for k in range(2):
        _write(tmp_path / "in", f"p{k}", rng.uniform(100, 300, (32, 32)), pixel_nm)
        _write(tmp_path / "gt", f"p{k}", rng.uniform(0, 1, (64, 64)), None if pixel_nm is None else pixel_nm / 2)
    spec = TrainJob(task="sr", output=str(tmp_path / "ft.cvdm"), base_model=str(path),
                    input_dir=str(tmp_path / "in"), target_dir=str(tmp_path / "gt"), **job)  # fmt: skip
    return spec, read_folders(spec.input_dir, spec.target_dir)


def test_a_model_fine_tuned_on_108_nm_pairs_states_108_nm_and_runs_on_them(tmp_path):
    """The base (62.6 nm) refuses 108 nm images; the model fine-tuned on 108 nm pairs states their optics, covers
    them (±5 % of their PSF width) and refuses the base's pixels instead."""
    job, pairs = _sr_job(tmp_path)
    _, info, data = prepare_job(job, pairs)
    assert (info.input_pixel_um, info.wavelength_um, info.numerical_aperture) == (pytest.approx(0.108), 0.515, 1.3)
    assert data.input_pixel_um == pytest.approx(0.108)
    assert info.covered_optics().psf_width_factor == (0.95, 1.05)
    assert info.training["data_optics"]["header_before"]["input_pixel_um"] == 0.0626
    assert "trained on 2 pairs from" in info.valid_optics.basis
    at_108 = ReconstructSettings(pixel_size_um="108nm")
    assert plan_optics(info, at_108).action == "run"
    with pytest.raises(OpticsMismatch):
        plan_optics(tiny_model("sr", **SR_OPTICS).info, at_108)
    with pytest.raises(OpticsMismatch):
        plan_optics(info, ReconstructSettings(pixel_size_um=0.0626))


def test_stated_optics_override_the_files_and_the_base(tmp_path):
    job, pairs = _sr_job(tmp_path, optics={"numerical_aperture": 1.45, "wavelength_um": "600nm"})
    _, info, _ = prepare_job(job, pairs)
    assert (info.input_pixel_um, info.wavelength_um, info.numerical_aperture) == (pytest.approx(0.108), 0.6, 1.45)
    assert info.input_psf_fwhm_px == pytest.approx(psf_fwhm_px(0.6, 1.45, 0.108))


@pytest.mark.parametrize("pixel_nm", [62.6, None])
def test_pairs_at_the_base_optics_or_stating_none_leave_the_header_as_it_was(tmp_path, pixel_nm):
    job, pairs = _sr_job(tmp_path, pixel_nm=pixel_nm)
    _, info, _ = prepare_job(job, pairs)
    assert info.input_pixel_um == 0.0626 and "data_optics" not in info.training
    assert info.valid_optics is None  # the range derived from the header, as the base's


def test_the_camera_offset_is_subtracted_from_every_input_before_normalising(tmp_path):
    """Pairs with a dark level of 90 counts and camera_offset 90 give bit for bit the data of the same pairs
    without it (phase: mean normalisation, where an offset would shrink the phase)."""
    base = tiny_model("phase", name="base")
    path = save_model(tmp_path / "base.cvdm", base.network, base.info)
    rng = np.random.default_rng(2)
    stacks = [rng.uniform(500, 700, (2, 32, 32)) for _ in range(2)]
    for folder, offset in (("dark", 90.0), ("clean", 0.0)):
        for k, stack in enumerate(stacks):
            _write(tmp_path / folder, f"p{k}", stack + offset, 210)
            _write(tmp_path / f"{folder}-gt", f"p{k}", rng.normal(size=(32, 32)), 210)
    data = {}
    for folder, offset in (("dark", 90.0), ("clean", 0.0)):
        job = TrainJob(task="phase", output=str(tmp_path / f"{folder}.cvdm"), base_model=str(path),
                       input_dir=str(tmp_path / folder), target_dir=str(tmp_path / f"{folder}-gt"),
                       optics={"camera_offset": offset})  # fmt: skip
        data[folder] = prepare_job(job, read_folders(job.input_dir, job.target_dir))[2]
    for dark, clean in zip(data["dark"].pairs, data["clean"].pairs, strict=True):
        np.testing.assert_allclose(dark.condition, clean.condition, rtol=1e-5, atol=1e-6)
    assert "camera offset 90 subtracted" in data["dark"].description
    job = TrainJob(task="phase", output=str(tmp_path / "x.cvdm"), base_model=str(path), optics={"camera_offset": 5000},
                   input_dir=str(tmp_path / "clean"), target_dir=str(tmp_path / "clean-gt"))  # fmt: skip
    with pytest.raises(ValueError, match="pair p0: the camera offset 5000 is not below the image's mean"):
        prepare_job(job, read_folders(job.input_dir, job.target_dir))


def test_a_phase_model_fine_tuned_at_another_defocus_gets_its_tie_condition_from_that_set_up(tmp_path):
    base = tiny_model("phase", name="base", condition_on_tie=True, tie_method="us-tie")
    path = save_model(tmp_path / "base.cvdm", base.network, base.info)
    rng = np.random.default_rng(3)
    stack = rng.uniform(500, 700, (2, 32, 32))
    _write(tmp_path / "in", "p0", stack, 150)
    _write(tmp_path / "gt", "p0", rng.normal(size=(32, 32)), 150)
    job = TrainJob(task="phase", output=str(tmp_path / "ft.cvdm"), base_model=str(path), optics={"defocus_um": "3um"},
                   input_dir=str(tmp_path / "in"), target_dir=str(tmp_path / "gt"))  # fmt: skip
    _, info, data = prepare_job(job, read_folders(job.input_dir, job.target_dir))
    assert (info.defocus_um, info.input_pixel_um, info.wavelength_um) == (3.0, pytest.approx(0.15), 0.521)
    assert info.covered_optics().fresnel_factor == (0.9, 1.1)
    np.testing.assert_allclose(data.pairs[0].condition[2], tie_estimate(stack, info), rtol=1e-4, atol=1e-7)
    assert not np.allclose(data.pairs[0].condition[2], tie_estimate(stack, base.info), atol=1e-3)


def test_psf_width_bins_of_a_kept_calibration_follow_the_new_optics():
    """A bin 0.8–1.0× the old PSF width holds the same images after the header's width changes: its factors are
    re-expressed in the new width (62.6 → 108 nm: the new width is 0.58× the old, so the factors grow 1.725×)."""
    common = dict(method="gamma", eta=1.0, steps=2, n_samples=2, raw_std=[0.01, 1.0], calibrated_std=[0.02, 2.0],
                  interval_z={"0.9": 1.7}, n_images=4, n_pixels=40_000, data="pairs")  # fmt: skip
    info = tiny_model("sr", **SR_OPTICS).info
    info = info.model_copy(
        update={"calibrations": [Calibration(**common), Calibration(**common, psf_factor=(0.8, 1.0))]}
    )
    new = with_data_optics(info, {"pixel_size_um": 0.108}, "2 pairs")
    assert new.calibrations[0].psf_factor is None
    assert new.calibrations[1].psf_factor == pytest.approx((0.8 * 0.108 / 0.0626, 0.108 / 0.0626))
    assert info.calibrations[1].psf_factor == (0.8, 1.0)  # the base's metadata untouched


def test_a_folder_job_without_its_pairs_read_says_how_to_read_them(tmp_path):
    job, _ = _sr_job(tmp_path)
    with pytest.raises(ValueError, match=r"read_folders\(input_dir, target_dir, plus_dir\)"):
        prepare_job(job)
    assert RawPairs([], [], [], "none").file_pixels == {}
