"""Row bands: a plane's outputs made a band at a time equal the whole plane's, so huge planes can stream out.

The condition up-sampled band by band, the owners of a band's rows, the calibration applied band by band (with
its variance smoothing reaching across bands), and the seeds of a stack's planes whether it runs whole or plane
by plane.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import napari_cvdm as nc
from napari_cvdm._runtime import drive
from napari_cvdm.inference.bands import Band, BandCalibrator
from napari_cvdm.inference.tiling import TileLayout, tile_owners
from napari_cvdm.model.metadata import Calibration
from napari_cvdm.sampling.calibration import error_std_factor, posterior_std
from napari_cvdm.settings import ReconstructSettings
from napari_cvdm.tasks import input_scale, plane_condition
from tests.conftest import tiny_model


def calibration(smoothing_px: float, feature: str = "spread", weight: float = 0.0, px: float = 0.0) -> Calibration:
    return Calibration(
        method="gamma", eta=1.0, steps=2, n_samples=2, smoothing_px=smoothing_px,
        score_feature=feature, feature_weight=weight, feature_px=px, feature_clip_px=20.0 if feature == "border" else 0,
        raw_std=[0.01, 0.1, 1.0], calibrated_std=[0.02, 0.15, 1.2], interval_z={"0.5": 0.7, "0.9": 1.7, "0.99": 2.6},
        n_images=4, n_pixels=40_000,
    )  # fmt: skip


def test_super_resolution_condition_band_is_bit_identical_to_the_whole_planes_rows():
    info = tiny_model("sr").info
    image = np.random.default_rng(0).poisson(80, (53, 41)).astype(np.float32)
    condition, _ = plane_condition(image, info)
    whole = F.interpolate(condition.data, scale_factor=2, mode="bicubic", align_corners=False)
    assert condition.shape == (106, 82)
    for first, end in [(0, 106), (0, 5), (7, 40), (33, 34), (90, 106), (1, 105)]:
        assert torch.equal(condition.rows(first, end), whole[..., first:end, :]), (first, end)


def test_a_bands_owners_are_the_whole_planes_owners_of_those_rows():
    layout = TileLayout.plan(100, 70, 32, 8)
    whole = tile_owners(layout.rows, layout.cols, layout.weight, layout.shape)
    for first, end in [(0, 100), (0, 32), (24, 56), (99, 100)]:
        np.testing.assert_array_equal(layout.owner(first, end), whole[first:end])
    bands = [layout.band(i) for i in range(len(layout.rows))]
    assert bands[0][0] == 0 and bands[-1][1] == 100
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))  # consecutive, no gaps


@pytest.mark.parametrize(
    ("smoothing_px", "feature", "weight", "px"),
    [
        (0.0, "spread", 0.0, 0.0), (1.0, "spread", 0.0, 0.0), (2.5, "spread", 0.0, 0.0),
        (0.0, "structure", 0.5, 0.0), (1.0, "structure", 0.75, 3.0), (2.5, "structure", 1.0, 1.0),
        (0.0, "border", 0.5, 8.0), (2.5, "border", 0.25, 32.0),
        (2.5, "coarse", 0.25, 2.0), (8.0, "detail", 0.5, 1.0),
        (64.0, "spread", 0.0, 0.0),  # a smoothing that reaches past the whole plane (256 rows)
    ],
)  # fmt: skip
def test_calibrating_band_by_band_equals_calibrating_the_whole_plane(smoothing_px, feature, weight, px):
    _bands_equal_the_plane(calibration(smoothing_px, feature, weight, px), 61, [0, 3, 4, 20, 21, 40, 61])


def test_a_wide_smoothing_band_by_band_equals_the_whole_plane_when_the_plane_is_taller_than_its_reach():
    """σ = 16 px reaches 64 rows: bands of 10–150 rows with their context, on a plane of 300."""
    _bands_equal_the_plane(calibration(16.0), 300, [0, 10, 30, 180, 190, 300])
    # the coarse structure's band reaches 4·8·4 + 4·4 = 144 rows
    _bands_equal_the_plane(calibration(16.0, "coarse", 0.25, 4.0), 300, [0, 10, 30, 180, 190, 300])


def _bands_equal_the_plane(cal: Calibration, height: int, cuts: list[int]) -> None:
    rng = np.random.default_rng(1)
    width, scale, n = 23, 37.0, 4
    variance = (scale * rng.uniform(0.005, 0.8, (height, width))) ** 2
    mean = rng.normal(0, 1, (height, width))
    calibrator = BandCalibrator(cal, scale, n, z=1.7, plane_rows=height)
    # bands shorter and longer than the score's reach (13 px at structure σ 3)
    out: list[Band] = []
    for first, end in itertools.pairwise(cuts):
        band = Band(0, first, end, mean[first:end], variance[first:end], np.ones((end - first, width)))
        out += calibrator.push(band, last=end == height)
    joined = Band.join(out)
    assert (joined.first, joined.end) == (0, height)
    expected = scale * error_std_factor(n) * posterior_std(cal, variance / scale**2, mean / scale)
    np.testing.assert_allclose(joined.calibrated_std, expected, rtol=1e-6)
    np.testing.assert_allclose(joined.upper - joined.lower, 2 * 1.7 * joined.calibrated_std, rtol=1e-6)
    np.testing.assert_array_equal(joined.mean, mean)


@pytest.mark.parametrize(
    ("feature", "weight"),
    [("spread", 0.0), ("structure", 0.5), ("border", 0.5), ("coarse", 0.25), ("detail", 0.5)],
)
def test_a_tiled_calibrated_plane_is_calibrated_as_a_whole(feature, weight):
    model = tiny_model("sr")
    model.info.calibrations.append(calibration(2.0, feature, weight, 2.0))
    image = np.random.default_rng(2).poisson(60, (40, 36)).astype(np.float32) + 100
    settings = ReconstructSettings(n_samples=2, steps=2, method="gamma", eta=1.0, tile_size=32, tile_overlap=8)
    result = drive(nc.iter_reconstruct(model, image, settings))
    assert result.settings["tile_size"] == 32 and result.calibrated_std is not None
    scale = input_scale(image, model.info).scale
    offset = input_scale(image, model.info).offset
    net_mean = (result.mean - offset) / scale
    sigma = posterior_std(model.info.calibrations[0], result.variance / scale**2, net_mean)
    expected = scale * error_std_factor(2) * sigma
    np.testing.assert_allclose(result.calibrated_std, expected, rtol=1e-5)


def test_a_stacks_planes_are_the_same_whole_or_one_by_one():
    model = tiny_model("sr")
    stack = np.random.default_rng(3).poisson(60, (3, 20, 18)).astype(np.float32)
    settings = ReconstructSettings(n_samples=2, steps=2, seed=11, tile_size=24, tile_overlap=8, keep_samples=True)
    whole = drive(nc.iter_reconstruct(model, stack, settings))
    for k in range(3):
        alone = drive(nc.iter_reconstruct(model, stack[k], settings, first_plane=k))
        np.testing.assert_array_equal(alone.mean, whole.mean[k])
        np.testing.assert_array_equal(alone.samples, whole.samples[:, k])
    other = drive(nc.iter_reconstruct(model, stack[1], settings, first_plane=0))
    assert not np.array_equal(other.mean, whole.mean[1])  # the plane's number seeds it
