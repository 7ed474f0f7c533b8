"""The widget's "your microscope" fields: the pixel size read from the layer or its file (never guessed), the
optics remembered per layer, refusals as one notification with the viewer untouched, outputs in physical units."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from tests.widgets.conftest import noisy, run_and_wait

pytestmark = pytest.mark.gui


def _snapshot(viewer) -> list[tuple]:
    return [(layer.name, id(layer.data), tuple(layer.scale), dict(layer.metadata)) for layer in viewer.layers]


def test_layer_in_micrometres_states_its_pixel_and_outputs_carry_units(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    layer = viewer.add_image(noisy((32, 32)), name="wf", scale=(0.0626, 0.0626), units=("µm", "µm"))
    assert widget.pixel_size.value == "0.0626"
    assert "model: 62.6 nm px" in widget.optics.info.value and "in the model's range" in widget.optics.info.value
    widget.n_samples.value = 2
    job = run_and_wait(qtbot, widget, state_pixel=False)
    assert job.outcome == "done" and notes["error"] == []
    mean = viewer.layers["wf CVDM mean"]
    np.testing.assert_allclose(mean.scale, (0.0313, 0.0313))
    assert [str(u) for u in mean.units] == ["micrometer", "micrometer"]
    meta = mean.metadata["napari_cvdm"]
    assert meta["pixel_um"] == pytest.approx(0.0313)
    assert meta["optics"]["used"]["pixel_size_um"]["source"].startswith("layer scale")
    assert viewer.layers["wf CVDM variance"].metadata["napari_cvdm"]["units"] == "(input intensity units)²"
    assert layer.metadata["napari_cvdm_optics"]["pixel_size_um"] == pytest.approx(0.0626)  # remembered
    assert "optics:" in widget.status.value


def test_a_layer_without_pixel_size_is_asked_for_and_nothing_changes(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    viewer.add_image(noisy((32, 32)), name="wf", scale=(0.1, 0.2))
    assert widget.pixel_size.value == ""
    assert "no pixel size" in widget.optics.info.value
    before = _snapshot(viewer)
    assert widget.reconstruct() is None
    assert len(notes["error"]) == 1 and "has no pixel size" in notes["error"][0]
    assert "Pixel size (µm)" in notes["error"][0] and "62.6 nm" in notes["error"][0]
    assert _snapshot(viewer) == before


def test_optics_outside_the_model_are_refused_with_the_range(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    viewer.add_image(noisy((32, 32)), name="wf", scale=(0.108, 0.108), units=("µm", "µm"))
    before = _snapshot(viewer)
    assert widget.reconstruct() is None
    assert len(notes["error"]) == 1
    for clue in ("0.58×", "0.90–1.10×", "napari-cvdm adapt", "approximate"):
        assert clue in notes["error"][0]
    assert _snapshot(viewer) == before
    assert "✗" in widget.optics.info.value


def test_an_oversampled_image_is_binned_and_the_outputs_overlay_it(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    viewer.add_image(noisy((32, 32)), name="wf", scale=(0.0313, 0.0313), units=("µm", "µm"))
    widget.n_samples.value = 2
    job = run_and_wait(qtbot, widget, state_pixel=False)
    assert job.outcome == "done"
    mean = viewer.layers["wf CVDM mean"]
    assert mean.data.shape == (32, 32)
    np.testing.assert_allclose(mean.scale, (0.0313, 0.0313))
    np.testing.assert_allclose(mean.translate, (0.0, 0.0), atol=1e-9)
    assert "binned 2×2" in widget.status.value


def test_pixel_size_from_imagej_and_ome_tiff_files(make_widget, model_files, notes, qtbot, tmp_path):
    viewer, widget = make_widget()
    imagej, ome = tmp_path / "wf.tif", tmp_path / "wf.ome.tif"
    data = noisy((32, 32))
    tifffile.imwrite(imagej, data, imagej=True, resolution=(1 / 0.0626, 1 / 0.0626), metadata={"unit": "um"})
    tifffile.imwrite(ome, data, ome=True, metadata={"PhysicalSizeX": 0.065, "PhysicalSizeY": 0.065})
    for path, value, kind in ((imagej, "0.0626", "ImageJ"), (ome, "0.065", "OME-TIFF")):
        [layer] = viewer.open(str(path), plugin="napari")
        widget.image.value = layer
        assert widget.pixel_size.value == value
        assert widget.optics.sources()["pixel_size_um"].startswith(kind)


def test_typed_optics_are_remembered_per_layer(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    first = viewer.add_image(noisy((32, 32)), name="a")
    widget.n_samples.value = 2
    widget.pixel_size.value = "62.6nm"
    widget.optics.wavelength.value = "0.52"
    assert widget.optics.sources()["pixel_size_um"] == "typed in the widget"
    run_and_wait(qtbot, widget, state_pixel=False)
    viewer.add_image(noisy((32, 32)), name="b")
    assert widget.image.value.name == "b" and widget.pixel_size.value == ""
    widget.image.value = first
    assert widget.pixel_size.value == "0.0626" and widget.optics.wavelength.value == "0.52"


def test_phase_far_from_the_model_is_resampled_and_stays_on_the_input_grid(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    widget.task.value = "phase"
    pixel = 0.21 / np.sqrt(3)  # λ·d/p² 3× the model's
    viewer.add_image(noisy((2, 32, 32), low=0.8, high=1.2), name="pair", scale=(1, pixel, pixel), units="µm")
    assert not widget.optics.plane_order.native.isHidden() and widget.optics.numerical_aperture.native.isHidden()
    widget.n_samples.value = 2
    job = run_and_wait(qtbot, widget, state_pixel=False)
    assert job.outcome == "done" and notes["error"] == []
    mean = viewer.layers["pair CVDM mean"]
    assert mean.data.shape == (32, 32)
    np.testing.assert_allclose(mean.scale, (pixel, pixel))
    assert mean.metadata["napari_cvdm"]["units"] == "rad"
    assert viewer.layers["pair CVDM variance"].metadata["napari_cvdm"]["units"] == "(rad)²"
    assert "resampled" in widget.status.value


def test_adapt_to_my_microscope_saves_a_model_that_appears_in_the_picker(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    raw = np.random.default_rng(0).poisson(np.linspace(20, 400, 64)[None].repeat(64, 0)).astype(np.float32)
    viewer.add_image(raw, name="mine", scale=(0.108, 0.108), units=("µm", "µm"))  # a raw camera image
    widget.optics.numerical_aperture.value, widget.optics.wavelength.value = "1.45", "515nm"
    panel = widget.open_adapt()
    panel.model_name.value, panel.n_pairs.value, panel.steps.value = "scope", 4, 2
    panel.photons.value = 200.0  # 108 nm at NA 1.45 is undersampled: its noise cannot be estimated, so it is stated
    worker = panel.start()
    assert worker is not None and panel.button.text == "Stop"
    qtbot.waitUntil(lambda: not panel.running, timeout=120_000)
    assert notes["error"] == [] and "saved scope.cvdm" in panel.status.value
    assert any("scope" in str(choice) for choice in widget.model.choices)


def test_adapt_on_an_undersampled_layer_asks_for_the_photons(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    raw = np.random.default_rng(0).poisson(np.linspace(20, 400, 64)[None].repeat(64, 0)).astype(np.float32)
    viewer.add_image(raw, name="mine", scale=(0.108, 0.108), units=("µm", "µm"))
    widget.optics.numerical_aperture.value, widget.optics.wavelength.value = "1.45", "515nm"
    panel = widget.open_adapt()
    panel.model_name.value, panel.n_pairs.value, panel.steps.value = "scope", 4, 2
    assert panel.start() is not None
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert "Nyquist" in notes["error"][0] and "Photons field" in notes["error"][0]


def test_adapt_without_pixel_size_is_refused(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    viewer.add_image(noisy((64, 64)), name="mine")
    assert widget.open_adapt().start() is None
    assert "has no pixel size" in notes["error"][0]


def test_adapt_takes_the_camera_offset_of_the_reconstruction_widget(make_widget, model_files, notes, monkeypatch):
    import napari_cvdm._widgets.adapt as adapt

    seen = {}
    monkeypatch.setattr(adapt, "iter_adapt", lambda *args, **kwargs: seen.update(kwargs) or iter(()))
    viewer, widget = make_widget()
    raw = np.random.default_rng(0).poisson(np.linspace(120, 500, 64)[None].repeat(64, 0)).astype(np.float32)
    viewer.add_image(raw, name="mine", scale=(0.0626, 0.0626), units=("µm", "µm"))  # with a dark level of 100
    widget.optics.numerical_aperture.value, widget.optics.wavelength.value = "1.3", "515nm"
    widget.form["camera_offset"].value = 100.0
    panel = widget.open_adapt()
    panel._make_job()
    assert seen["offset"] == 100.0 and notes["error"] == []
