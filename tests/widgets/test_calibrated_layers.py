"""The reconstruction widget with a calibrated model: the calibrated std layer, interval bounds, stale layers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm.model.files import save_model
from napari_cvdm.model.metadata import Calibration
from tests.conftest import tiny_model
from tests.widgets.conftest import FAST, noisy, run_and_wait

pytestmark = pytest.mark.gui

CALIBRATION = Calibration(
    method="gamma",
    eta=1.0,
    steps=2,
    n_samples=4,
    raw_std=[0.001, 1e4],
    calibrated_std=[0.003, 3e4],
    interval_z={"0.5": 0.7, "0.9": 1.7, "0.95": 2.0},
    n_images=4,
    n_pixels=40_000,
    data="test pairs",
)


@pytest.fixture
def calibrated_model(model_files):
    folder = model_files["tiny-sr"].parent
    model = tiny_model("sr", name="tiny-sr-calibrated", sampler=FAST, calibrations=[CALIBRATION])
    return save_model(folder / "tiny-sr-calibrated.cvdm", model.network, model.info)


def test_a_calibrated_model_shows_the_calibrated_std_and_hides_the_raw_variance(
    make_widget, calibrated_model, notes, qtbot
):
    viewer, widget = make_widget()
    widget.model.value = "tiny-sr-calibrated"
    assert "uncertainty calibrated at 2 steps" in widget.model_info.value
    viewer.add_image(noisy((32, 32)), name="wf")
    widget.n_samples.value = 2
    job = run_and_wait(qtbot, widget)
    assert job.outcome == "done" and notes["error"] == []
    names = [layer.name for layer in viewer.layers]
    assert names == ["wf", "wf CVDM mean", "wf CVDM ± calibrated std", "wf CVDM variance", "wf CVDM β map"]
    std = viewer.layers["wf CVDM ± calibrated std"]
    assert std.visible and not viewer.layers["wf CVDM variance"].visible
    meta = std.metadata["napari_cvdm"]
    assert meta["meaning"].startswith("± calibrated std: the expected RMS error of the mean")
    assert meta["interval_level"] == 0.9 and meta["calibration"].startswith("calibrated on 4 held-out images")
    assert "uncertainty calibrated on" in widget.status.value
    assert (std.data > 0).all()


def test_interval_bounds_on_request_at_the_users_level(make_widget, calibrated_model, notes, qtbot):
    viewer, widget = make_widget()
    widget.model.value = "tiny-sr-calibrated"
    viewer.add_image(noisy((32, 32)), name="wf")
    widget.n_samples.value = 2
    widget.interval_level.value = 0.5
    widget.interval_layers.value = True
    run_and_wait(qtbot, widget)
    mean, std = viewer.layers["wf CVDM mean"].data, viewer.layers["wf CVDM ± calibrated std"].data
    np.testing.assert_allclose(viewer.layers["wf CVDM interval lower bound"].data, mean - 0.7 * std, rtol=1e-5)
    np.testing.assert_allclose(viewer.layers["wf CVDM interval upper bound"].data, mean + 0.7 * std, rtol=1e-5)


def test_an_uncalibrated_rerun_removes_the_earlier_calibrated_layers(make_widget, calibrated_model, notes, qtbot):
    viewer, widget = make_widget()
    widget.model.value = "tiny-sr-calibrated"
    viewer.add_image(noisy((32, 32)), name="wf")
    widget.n_samples.value = 2
    widget.interval_layers.value = True
    run_and_wait(qtbot, widget)
    assert "wf CVDM interval upper bound" in [layer.name for layer in viewer.layers]
    widget.model.value = "tiny-sr"
    assert "uncertainty not calibrated" in widget.model_info.value
    run_and_wait(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert names == ["wf", "wf CVDM mean", "wf CVDM variance", "wf CVDM β map"]
    assert viewer.layers["wf CVDM variance"].visible
