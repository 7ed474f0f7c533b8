"""The reconstruction widget warns (one warning notification, the run still done) when the noise estimated from
the image lies outside the model's training range, and stays quiet inside it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm.physics import SRSimulation, simulate_sr_pair
from tests.widgets.conftest import run_on_nominal_widefield

pytestmark = pytest.mark.gui


def _widefield(photons: float) -> np.ndarray:
    settings = SRSimulation(photons=(photons, photons), read_noise_counts=1.0)
    return simulate_sr_pair(settings, 128, np.random.default_rng(40_320))[0]


@pytest.mark.parametrize(("photons", "warned"), [(5000.0, True), (100.0, False)])
def test_noise_outside_the_training_range_is_a_warning(make_widget, model_files, notes, qtbot, photons, warned):
    job = run_on_nominal_widefield(make_widget, qtbot, _widefield(photons))
    assert job.outcome == "done" and notes["error"] == []
    found = [n for n in notes["warning"] if "noise outside the model's training range" in n]
    assert len(found) == (1 if warned else 0), notes["warning"]
