"""A model trained on the user's pairs states their noise: the noise check of its later images compares them with
what it was trained on (the header's range widened by the pairs' estimated noise), not with the base's alone."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm.inference.noise_check import check_noise
from napari_cvdm.training.optics import noise_change, with_data_noise
from tests.conftest import tiny_model
from tests.inference.test_noise_check import SR_OPTICS, _pair, _widefield


def test_bright_pairs_widen_the_photon_range_so_their_images_check_inside():
    base = tiny_model("sr", **SR_OPTICS).info  # 15–600 photons per frame
    tuned = with_data_noise(base, [_widefield(3000.0, 128, seed=41_000 + k) for k in range(3)], offset_known=False)
    low, high = tuned.covered_optics().photons_per_frame
    assert low == 15.0 and high == pytest.approx(3000.0, rel=0.3)
    image = _widefield(3000.0, seed=41_100)
    assert check_noise(base, image)["verdict"] == "outside"
    assert check_noise(tuned, image)["verdict"] == "inside"
    assert tuned.training["data_noise"]["estimated_on"] == 3
    assert "your pairs' noise, estimated from 3 inputs: photons per frame" in noise_change(tuned)
    assert noise_change(base) is None and base.covered_optics().photons_per_frame == (15.0, 600.0)  # untouched


def test_the_read_noise_is_stated_only_with_a_known_camera_offset():
    base = tiny_model("sr", **SR_OPTICS).info  # read noise 10 ADU
    inputs = [_widefield(200.0, 128, read_adu=25.0, seed=41_200 + k) for k in range(2)]
    known = with_data_noise(base, inputs, offset_known=True).covered_optics().read_noise_counts
    assert known[0] == 10.0 and known[1] == pytest.approx(25.0, rel=0.25)
    assert with_data_noise(base, inputs, offset_known=False).covered_optics().read_noise_counts == (10.0, 10.0)


def test_noisier_phase_pairs_widen_the_xi_range():
    base = tiny_model("phase").info
    high_before = base.covered_optics().noise_xi[1]
    tuned = with_data_noise(base, [_pair(0.4, seed=41_300 + k) for k in range(2)], offset_known=False)
    high = tuned.covered_optics().noise_xi[1]
    assert high == pytest.approx(0.4, rel=0.2) and high > high_before
    assert check_noise(tuned, _pair(0.4, seed=41_400))["verdict"] == "inside"
    assert check_noise(base, _pair(0.4, seed=41_400))["verdict"] == "outside"


def test_processed_images_give_no_estimate_and_keep_the_header_s_range():
    base = tiny_model("sr", **SR_OPTICS).info
    processed = [np.random.default_rng(k).uniform(0, 1, (128, 128)).astype(np.float32) for k in range(2)]
    assert with_data_noise(base, processed, offset_known=False) is base
