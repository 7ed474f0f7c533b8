"""The reconstruction widget warns (one warning notification, the run still done) when the image's own resolution
disagrees with the optics the run uses, and stays quiet when they agree."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm.evaluation.quality import sr_microscope
from napari_cvdm.physics import simulate_sr_pair
from tests.widgets.conftest import run_and_wait, run_on_nominal_widefield

pytestmark = pytest.mark.gui


@pytest.mark.parametrize(("camera_pixel_um", "warned"), [(0.108, True), (0.0626, False)])
def test_a_resolution_the_optics_cannot_pass_is_a_warning(
    make_widget, model_files, notes, qtbot, camera_pixel_um, warned
):
    """The layer says 62.6 nm pixels; an image recorded at 108 nm shows detail a 62.6 nm image at NA 1.3 cannot."""
    settings = sr_microscope(wf_pixel_um=camera_pixel_um).model_copy(
        update={"structure": "f-actin", "photons": (200, 200)}
    )
    image = simulate_sr_pair(settings, 128, np.random.default_rng(40_700))[0]
    job = run_on_nominal_widefield(make_widget, qtbot, image)
    assert job.outcome == "done" and notes["error"] == []
    found = [n for n in notes["warning"] if "the image's resolution does not match" in n]
    assert len(found) == (1 if warned else 0), notes["warning"]


def test_the_optics_line_says_before_the_run_whether_the_layer_s_resolution_agrees(make_widget, model_files):
    """The line under the optics fields checks the picked layer against the optics typed, as they are typed."""
    settings = sr_microscope(wavelength_um=0.67, na=1.4).model_copy(
        update={"structure": "f-actin", "photons": (200, 200)}
    )
    viewer, widget = make_widget()
    viewer.add_image(simulate_sr_pair(settings, 128, np.random.default_rng(40_701))[0], name="wf",
                     scale=(0.0626, 0.0626), units=("µm", "µm"))  # fmt: skip
    widget.optics.wavelength.value = "0.515"
    widget.optics.numerical_aperture.value = "1.3"
    assert "image: ⚠ the image's resolution does not match" in widget.optics.info.value, widget.optics.info.value
    widget.optics.wavelength.value = "0.67"  # the dye's true λ and the objective's NA
    widget.optics.numerical_aperture.value = "1.4"
    assert "image: resolution agrees with these optics" in widget.optics.info.value, widget.optics.info.value


def test_a_plane_by_plane_run_warns_too(make_widget, model_files, notes, qtbot, tmp_path):
    """A lazy stack goes plane by plane into a store; its first plane's checks are warnings when the run ends."""
    import dask.array as da

    from tests.widgets.test_lazy_layers import add_stack, start

    settings = sr_microscope(wf_pixel_um=0.108).model_copy(update={"structure": "f-actin", "photons": (200, 200)})
    plane = simulate_sr_pair(settings, 64, np.random.default_rng(40_702))[0]
    viewer, widget = make_widget()
    add_stack(viewer, da.from_array(np.stack([plane, plane]), chunks=(1, 64, 64)))
    widget.optics.wavelength.value = "0.515"
    widget.optics.numerical_aperture.value = "1.3"
    job = run_and_wait(qtbot, start(widget, tmp_path / "out.zarr"), state_pixel=False)
    assert job.outcome == "done" and notes["error"] == [], notes["error"]
    assert [n for n in notes["warning"] if "the image's resolution does not match" in n], notes["warning"]
