"""The noise check at reconstruction time: the photons / read noise (SR) or ξ (phase) estimated from the image and
compared with the header's training range, as a verdict in ``result.optics["noise"]`` that never refuses, never
raises, and that ``predict`` prints as a warning when outside."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_cvdm import reconstruct
from napari_cvdm.inference.noise_check import check_noise
from napari_cvdm.inference.optics import OpticsPlan
from napari_cvdm.physics import PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair
from tests.conftest import save_tiny_models, tiny_model

SR_OPTICS = {"wavelength_um": 0.515, "numerical_aperture": 1.3}  # the tiny SR model at the nominal optics


def _widefield(photons: float, size: int = 256, read_adu: float = 10.0, seed: int = 40_300) -> np.ndarray:
    """Offset-subtracted photo-electrons, 9 frames summed, as the bundled model's training inputs."""
    settings = SRSimulation(photons=(photons, photons), read_noise_counts=read_adu)
    return simulate_sr_pair(settings, size, np.random.default_rng(seed))[0]


def _pair(xi: float, size: int = 128, seed: int = 40_310) -> np.ndarray:
    stack = simulate_phase_pair(PhaseSimulation(source="cells", noise_max=0.0), size, np.random.default_rng(seed))[0]
    return stack + np.random.default_rng(seed + 1).normal(xi, xi, stack.shape)


def test_sr_inside_the_header_s_photon_range():
    info = tiny_model("sr", **SR_OPTICS).info  # header range: 15–600 photons per frame, read noise 10 ADU
    verdict = check_noise(info, _widefield(100.0))
    assert verdict["verdict"] == "inside", verdict["note"]
    assert verdict["estimate"]["photons_per_frame"] == pytest.approx(100.0, rel=0.3)
    assert verdict["range"]["photons_per_frame"] == [15.0, 600.0] and "15–600" in verdict["note"]
    assert "read noise not compared" in verdict["note"]  # the camera offset is not known to a reconstruction


@pytest.mark.parametrize(("photons", "side"), [(5000.0, "above"), (3.0, "below")])
def test_sr_outside_the_header_s_photon_range(photons, side):
    info = tiny_model("sr", **SR_OPTICS).info
    verdict = check_noise(info, _widefield(photons, read_adu=1.0))
    assert verdict["verdict"] == "outside", verdict["note"]
    assert f"photons {side} the model's 15–600" in verdict["note"] and "not validated" in verdict["note"]


def test_sr_read_noise_is_compared_when_the_offset_is_known():
    info = tiny_model("sr", **SR_OPTICS).info
    inside = check_noise(info, _widefield(50.0), offset=0.0)
    assert inside["verdict"] == "inside" and inside["estimate"]["read_noise_counts"] == pytest.approx(10.0, rel=0.2)
    loud = check_noise(info, _widefield(200.0, read_adu=20.0), offset=0.0)
    assert loud["verdict"] == "outside" and "read noise above" in loud["note"]


def test_binning_counts_the_photons_of_the_binned_pixels():
    info = tiny_model("sr", **SR_OPTICS).info
    image = _widefield(100.0)
    used = {"used": {"pixel_size_um": {"value": 0.0626}}}
    plain = check_noise(info, image, OpticsPlan("run", record=used))
    binned = check_noise(info, image, OpticsPlan("bin", zoom=0.5, bin=2, record=used))
    assert binned["estimate"]["photons_per_frame"] == pytest.approx(4 * plain["estimate"]["photons_per_frame"])


@pytest.mark.parametrize(("xi", "verdict"), [(0.1, "inside"), (0.5, "outside")])
def test_phase_xi_against_the_header_s_range(xi, verdict):
    info = tiny_model("phase").info  # header range ξ 0–0.2
    result = check_noise(info, 1000.0 * _pair(xi))  # camera counts: ξ is a ratio
    assert result["verdict"] == verdict, result["note"]
    assert result["estimate"]["noise_xi"] == pytest.approx(xi, rel=0.1)
    assert result["range"] == {"noise_xi": [0.0, 0.2]}


@pytest.mark.parametrize(
    "image",
    [
        np.full((128, 128), 3.0),  # constant
        np.ones((8, 8)),  # tiny
        np.where(np.eye(64) > 0, np.nan, 1.0),
        np.zeros((0, 5)),
        np.array(["a", "b"]),
        None,
    ],
)
def test_odd_images_give_could_not_estimate_and_never_raise(image):
    for model in (tiny_model("sr", **SR_OPTICS), tiny_model("phase")):
        verdict = check_noise(model.info, image)
        assert verdict["verdict"] == "unknown" and verdict["note"].startswith("noise not estimated")


def test_floats_in_0_1_without_a_variance_mean_relation():
    image = np.random.default_rng(0).uniform(0, 1, (128, 128))
    assert check_noise(tiny_model("sr", **SR_OPTICS).info, image)["verdict"] == "unknown"  # no signal-dependence
    assert check_noise(tiny_model("phase").info, np.stack([image, image]))["verdict"] == "outside"  # ξ ≈ 1.4


def test_sr_without_lambda_and_na_is_not_estimated():
    verdict = check_noise(tiny_model("sr").info, _widefield(100.0))  # no λ, NA: the noise-only band is unknown
    assert verdict["verdict"] == "unknown" and "λ and NA" in verdict["note"]


def test_a_model_without_a_noise_range_is_not_checked():
    info = tiny_model("sr", input_pixel_um=None).info
    assert check_noise(info, _widefield(100.0))["verdict"] == "unchecked"


def test_the_verdict_lands_in_result_optics():
    sr = tiny_model("sr", **SR_OPTICS)
    result = reconstruct(sr, _widefield(5000.0, size=128, read_adu=1.0), n_samples=2, steps=2, device="cpu")
    assert result.optics["noise"]["verdict"] == "outside"
    json.dumps(result.optics)  # written into the OME-TIFF description and layer metadata
    for odd in (np.random.default_rng(1).uniform(0, 1, (20, 20)), np.random.default_rng(1).uniform(0, 1, (64, 64))):
        result = reconstruct(sr, odd.astype(np.float32), n_samples=2, steps=2, device="cpu")
        assert result.optics["noise"]["verdict"] == "unknown"
    phase = reconstruct(tiny_model("phase"), _pair(0.5, 64).astype(np.float32), n_samples=2, steps=2, device="cpu")
    assert phase.optics["noise"]["verdict"] == "outside" and "ξ above" in phase.optics["noise"]["note"]


def test_predict_warns_when_outside(tmp_path, capsys):
    from napari_cvdm.cli import main

    model = save_tiny_models(tmp_path / "models", **SR_OPTICS)["tiny-sr"]
    args = ["--model", str(model), "--pixel-size", "62.6nm", "--n-samples", "2", "--steps", "2", "--device", "cpu"]
    for photons, warned in ((5000.0, True), (100.0, False)):
        src = tmp_path / f"wf{photons:g}.tif"
        tifffile.imwrite(src, _widefield(photons, size=128, read_adu=1.0))
        assert main(["predict", str(src), "-o", str(tmp_path / f"out{photons:g}.tif"), *args, "-q"]) == 0
        err = capsys.readouterr().err
        assert ("warning: noise outside the model's training range" in err) is warned, err


@pytest.mark.parametrize("suffix", [".zarr", ".ome.tif"])
def test_a_plane_by_plane_job_records_the_verdict_and_predict_warns(tmp_path, capsys, suffix):
    from napari_cvdm.cli import main
    from napari_cvdm.io.ometiff import read_info
    from napari_cvdm.io.omezarr import PlaneStore

    model = save_tiny_models(tmp_path / "models", **SR_OPTICS)["tiny-sr"]
    args = ["--model", str(model), "--pixel-size", "62.6nm", "--n-samples", "2", "--steps", "1", "--device", "cpu"]
    src = tmp_path / "wf.tif"
    tifffile.imwrite(src, np.stack([_widefield(5000.0, size=128, read_adu=1.0)] * 2))  # a 2-plane stack
    out = tmp_path / f"out{suffix}"
    assert main(["predict", str(src), "-o", str(out), *args, "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning: wf.tif: noise outside the model's training range" in err, err
    info = PlaneStore.open(out).info if suffix == ".zarr" else read_info(out)
    assert info["optics"]["noise"]["verdict"] == "outside"


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_a_clipped_image_is_warned_about_and_an_unclipped_one_is_not(dtype):
    image = np.round(_widefield(100.0))
    info = tiny_model("sr", **SR_OPTICS).info
    unclipped = check_noise(info, image.astype(dtype))
    assert unclipped["verdict"] == "inside" and "saturated" not in unclipped
    ceiling = np.percentile(image, 98)  # a camera saturating on the brightest 2 % of the pixels
    verdict = check_noise(info, np.minimum(image, ceiling).astype(dtype))
    assert verdict["verdict"] == "outside" and verdict["saturated"]
    assert "sit at the image's maximum" in verdict["note"] and "saturated or clipped" in verdict["note"]


def test_a_stated_camera_offset_lets_a_reconstruction_compare_the_read_noise():
    sr = tiny_model("sr", **SR_OPTICS)
    raw = _widefield(50.0, size=128) + 100.0  # a camera that adds 100 counts
    unknown = reconstruct(sr, raw, n_samples=2, steps=2, device="cpu").optics["noise"]
    assert "read noise not compared" in unknown["note"]
    stated = reconstruct(sr, raw, n_samples=2, steps=2, device="cpu", camera_offset=100.0).optics["noise"]
    assert stated["verdict"] == "inside" and stated["estimate"]["read_noise_counts"] == pytest.approx(10.0, rel=0.2)


@pytest.mark.parametrize("photons", [0.5, 3.0, 50.0, 1000.0])
def test_natural_images_are_not_called_saturated_and_clipped_bright_ones_are(photons):
    from napari_cvdm.inference.noise_check import saturation_note
    from napari_cvdm.sample_data import load_sample

    counts = np.random.default_rng(0).poisson(photons, (256, 256))
    for image in (counts, counts.astype(np.uint16), counts.astype(np.float32)):
        assert saturation_note(image) is None
    clipped = np.minimum(counts, np.percentile(counts, 99))
    assert (saturation_note(clipped) is not None) == (photons >= 50)  # dim images have no tail to spike above
    for name in ("widefield", "defocus-pair"):
        assert saturation_note(load_sample(name)[0]) is None
    from skimage import data  # real 8-bit photographs that reach 252–255

    assert all(saturation_note(getattr(data, name)()) is None for name in ("camera", "moon", "coins"))


def test_a_clipped_later_plane_of_a_stack_is_named():
    """The noise is estimated on the first plane, but a bright time point may saturate: every plane is checked."""
    image = np.round(_widefield(100.0))
    clipped = np.minimum(image, np.percentile(image, 98))
    sr = tiny_model("sr", **SR_OPTICS)
    noise = reconstruct(sr, np.stack([image, image, clipped]), n_samples=2, steps=1, device="cpu").optics["noise"]
    assert noise["verdict"] == "outside" and noise["saturated_planes"] == [3]
    assert noise["note"].startswith("plane 3 (1 of 3, counting from 1) looks saturated or clipped")
    clean = reconstruct(sr, np.stack([image, image]), n_samples=2, steps=1, device="cpu").optics["noise"]
    assert "saturated" not in clean
