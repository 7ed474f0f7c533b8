"""The reconstruction widget end to end: outputs, geometry, re-runs, stacks, phase inputs, cancel."""

from __future__ import annotations

import numpy as np
import pytest

from tests.widgets.conftest import FAST, noisy, run_and_wait

pytestmark = pytest.mark.gui

NAMES = ("CVDM mean", "CVDM variance", "CVDM β map")


def _names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


def test_super_resolution_adds_three_overlaid_layers(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    assert widget.model.value == "tiny-sr" and widget.steps.value == 2
    assert widget.device_info.value.startswith("→ cpu")
    viewer.add_image(noisy((32, 32)), name="wf", scale=(0.1, 0.2), translate=(5.0, 7.0))
    widget.n_samples.value = 2
    job = run_and_wait(qtbot, widget)
    assert job.outcome == "done" and notes["error"] == []
    assert _names(viewer) == ["wf", *(f"wf {n}" for n in NAMES)]
    for name in NAMES:
        layer = viewer.layers[f"wf {name}"]
        assert layer.data.shape == (64, 64)
        np.testing.assert_allclose(layer.scale, (0.05, 0.1))
        # first output pixel starts where the first input pixel starts: t − p/2 = t' − q/2
        np.testing.assert_allclose(layer.translate, (5.0 - 0.025, 7.0 - 0.05))
    for name in NAMES[1:]:
        layer = viewer.layers[f"wf {name}"]
        assert layer.colormap.name == "magma" and layer.blending == "additive"
    mean = viewer.layers["wf CVDM mean"]
    assert mean.metadata["napari_cvdm"]["settings"]["n_samples"] == 2
    assert np.isfinite(mean.data).all() and (viewer.layers["wf CVDM variance"].data >= 0).all()
    assert widget.run_button.text == "Run" and widget.status.value.startswith("done")


def test_rerun_replaces_data_in_the_same_layers(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    viewer.add_image(noisy((32, 32)), name="wf")
    widget.n_samples.value = 2
    run_and_wait(qtbot, widget)
    before = {layer.name: (layer, layer.data) for layer in viewer.layers}
    widget.seed.value = 1
    run_and_wait(qtbot, widget)
    assert _names(viewer) == list(before)
    mean, old = before["wf CVDM mean"]
    assert viewer.layers["wf CVDM mean"] is mean
    assert not np.array_equal(mean.data, old)


def test_stack_keeps_leading_axes_and_samples_on_request(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    viewer.add_image(noisy((2, 32, 32)), name="movie", scale=(3.0, 0.1, 0.1), translate=(1.0, 0.0, 0.0))
    widget.n_samples.value = 2
    widget.keep_samples.value = True
    job = run_and_wait(qtbot, widget)
    assert job.outcome == "done"
    mean = viewer.layers["movie CVDM mean"]
    assert mean.data.shape == (2, 64, 64)
    np.testing.assert_allclose(mean.scale, (3.0, 0.05, 0.05))
    np.testing.assert_allclose(mean.translate, (1.0, -0.025, -0.025))
    samples = viewer.layers["movie CVDM samples"]
    assert samples.data.shape == (2, 2, 64, 64) and not samples.visible  # layer visibility, not Qt
    np.testing.assert_allclose(samples.scale, (1.0, 3.0, 0.05, 0.05))
    np.testing.assert_allclose(samples.data.mean(0), mean.data, rtol=1e-4, atol=1e-2)


def test_phase_from_one_stack_equals_phase_from_two_layers(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    widget.task.value = "phase"
    assert widget.model.value == "tiny-phase" and not widget.plus.native.isHidden()
    pair = noisy((2, 32, 32), low=0.8, high=1.2)
    stack = viewer.add_image(pair, name="pair", scale=(1.0, 0.21, 0.21))
    minus = viewer.add_image(pair[0], name="minus", scale=(0.21, 0.21))
    plus = viewer.add_image(pair[1], name="plus", scale=(0.21, 0.21))
    widget.n_samples.value = 2
    widget.image.value, widget.plus.value = stack, None
    run_and_wait(qtbot, widget)
    widget.image.value, widget.plus.value = minus, plus
    run_and_wait(qtbot, widget)
    one, two = viewer.layers["pair CVDM mean"], viewer.layers["minus + plus CVDM mean"]
    assert one.data.shape == (32, 32) and one.metadata["napari_cvdm"]["units"] == "rad"
    np.testing.assert_allclose(one.scale, (0.21, 0.21))
    np.testing.assert_allclose(one.translate, (0.0, 0.0))
    np.testing.assert_array_equal(one.data, two.data)
    assert notes["error"] == []


def _cancel_at_first_mean(widget, qtbot):
    """Start a long run and press Cancel when the mean layer has appeared; returns the job."""
    widget.n_samples.value, widget.steps.value, widget.batch_size.value = 4, 60, 1  # the mean shows after 1
    widget.pixel_size.value = widget.pixel_size.value or "62.6nm"  # the tiny SR model's own pixel
    job = widget.reconstruct()
    assert widget.run_button.text == "Cancel"
    mean_name = job.output_names["mean"]
    qtbot.waitUntil(lambda: mean_name in widget._viewer.layers, timeout=30_000)
    widget.run_button.clicked.emit()  # the Run button is the Cancel button while running
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)
    return job


def test_cancel_removes_the_partial_mean(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    viewer.add_image(noisy((32, 32)), name="wf")
    job = _cancel_at_first_mean(widget, qtbot)
    assert job.outcome == "cancelled"
    assert _names(viewer) == ["wf"]
    assert widget.run_button.text == "Run" and notes["info"] and not notes["error"]


def test_cancelled_rerun_restores_the_previous_results(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    viewer.add_image(noisy((32, 32)), name="wf")
    widget.n_samples.value = 2
    run_and_wait(qtbot, widget)
    before = {layer.name: layer.data for layer in viewer.layers}
    job = _cancel_at_first_mean(widget, qtbot)
    assert job.outcome == "cancelled"
    assert {layer.name: layer.data for layer in viewer.layers}.keys() == before.keys()
    for layer in viewer.layers:
        assert layer.data is before[layer.name]


def test_model_loaded_from_file_is_offered_and_used(make_widget, no_models, tmp_path, notes, qtbot):
    from tests.conftest import save_tiny_models

    viewer, widget = make_widget()
    assert widget.model.choices == () and "No CVDM model" in widget.model_info.value
    files = save_tiny_models(tmp_path / "elsewhere", sampler=FAST)
    widget.model_file.value = files["tiny-sr"]
    assert widget.model.value == str(files["tiny-sr"]) and widget.task.value == "super-resolution"
    viewer.add_image(noisy((16, 16)), name="wf")
    widget.n_samples.value = 1
    assert run_and_wait(qtbot, widget).outcome == "done"
    assert viewer.layers["wf CVDM mean"].data.shape == (32, 32)


def test_registered_model_is_downloaded_in_a_worker_then_run(
    make_widget, no_models, tmp_path, monkeypatch, notes, qtbot
):
    """A registered model not on disk is listed without network access, fetched on Run, then used."""
    import shutil

    from napari_cvdm import registry
    from napari_cvdm._widgets.job import DownloadJob, ReconstructionJob
    from napari_cvdm.model.files import sha256_of
    from tests.conftest import save_tiny_models

    source = save_tiny_models(tmp_path / "release", sampler=FAST)["tiny-sr"]
    entry = registry.RegisteredModel("tiny-registered", "tiny-registered.cvdm", sha256_of(source), "test model")
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    monkeypatch.setenv("NAPARI_CVDM_CACHE", str(tmp_path / "cache"))
    fetched = []

    def fake_fetch(registered, progress=None):
        target = registry.cache_dir() / registered.filename
        if not target.is_file():
            fetched.append(registered.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            for done in (1000, 2000):
                if progress is not None:
                    progress(done, 2000)
            shutil.copy(source, target)
        return target

    monkeypatch.setattr(registry, "fetch_registered", fake_fetch)
    viewer, widget = make_widget()
    assert widget.model.value == "tiny-registered" and fetched == []
    assert "downloaded" in widget.model_info.value
    viewer.add_image(noisy((16, 16)), name="wf")
    widget.n_samples.value = 1
    widget.pixel_size.value = "0.0626"  # the image states none; the model is not on disk yet to show its own
    download = widget.reconstruct()
    assert isinstance(download, DownloadJob)
    qtbot.waitUntil(lambda: not download.running, timeout=30_000)
    assert download.outcome == "done" and fetched == ["tiny-registered"]
    run = widget._job
    assert isinstance(run, ReconstructionJob)
    qtbot.waitUntil(lambda: not run.running, timeout=30_000)
    assert run.outcome == "done" and notes["error"] == []
    assert viewer.layers["wf CVDM mean"].data.shape == (32, 32)
    assert "2 steps by default" in widget.model_info.value
