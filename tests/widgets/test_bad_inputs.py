"""Every refused input: one error notification that names the problem, and the viewer left untouched."""

from __future__ import annotations

import numpy as np
import pytest

from tests.widgets.conftest import noisy

pytestmark = pytest.mark.gui


def _snapshot(viewer) -> list[tuple[str, int, int, bytes]]:
    """Each layer, its data array (identity: not replaced) and the data's bytes.  (A Shapes layer builds a new
    list on every ``.data``, so only array data are compared by identity.)"""
    return [
        (
            layer.name,
            id(layer),
            id(layer.data) if isinstance(layer.data, np.ndarray) else 0,
            np.asarray(layer.data).tobytes(),
        )
        for layer in viewer.layers
    ]


def _refused(viewer, widget, notes, match: str, layers=None) -> None:
    before = _snapshot(viewer)
    assert widget.reconstruct(layers) is None
    assert len(notes["error"]) == 1, notes
    assert match in notes["error"][0], notes["error"][0]
    assert _snapshot(viewer) == before
    assert widget.run_button.text == "Run"


@pytest.mark.parametrize(
    ("task", "make_layers", "match"),
    [
        ("super-resolution", lambda v: [v.add_image(np.zeros((32, 32, 3), np.uint8) + 9, rgb=True)], "RGB"),
        ("super-resolution", lambda v: [v.add_labels(np.ones((32, 32), np.int32))], "Labels layer"),
        (
            "super-resolution",
            lambda v: [v.add_shapes([[[0, 0], [5, 5], [0, 5]]], shape_type="polygon")],
            "Shapes layer",
        ),
        ("super-resolution", lambda v: [v.add_image(np.where(np.eye(32), np.nan, noisy((32, 32))))], "NaN"),
        ("super-resolution", lambda v: [v.add_image(noisy((2, 32, 32)) * [[[1.0]], [[np.inf]]])], "NaN or inf"),
        ("super-resolution", lambda v: [v.add_image(noisy((3, 3)))], "needs at least"),
        ("super-resolution", lambda v: [v.add_image(np.full((32, 32), 7.0))], "constant"),
        ("phase", lambda v: [v.add_image(noisy((32, 32)))], "two defocus planes"),
        ("phase", lambda v: [v.add_image(noisy((3, 32, 32)))], "two defocus planes"),
        ("phase", lambda v: [v.add_image(noisy((32, 32))), v.add_image(noisy((32, 30)))], "same size"),
        (
            "phase",
            lambda v: [v.add_image(noisy((32, 32)), scale=(0.2, 0.2)), v.add_image(noisy((32, 32)), scale=(0.1, 0.1))],
            "the same pixel size",
        ),
        ("phase", lambda v: [v.add_image(noisy((2, 32, 32)) - 200)], "non-negative"),
    ],
    ids=[
        "rgb",
        "labels",
        "shapes",
        "nan",
        "inf-in-2nd-frame",
        "too-small",
        "constant",
        "phase-1-plane",
        "phase-3-planes",
        "phase-shape-mismatch",
        "phase-scale-mismatch",
        "phase-negative",
    ],
)
def test_bad_layers_are_refused(make_widget, model_files, notes, task, make_layers, match):
    viewer, widget = make_widget()
    widget.task.value = task
    layers = make_layers(viewer)
    _refused(viewer, widget, notes, match, layers)


def test_pickers_offer_only_image_layers(make_widget, model_files, notes):
    viewer, widget = make_widget()
    viewer.add_labels(np.zeros((8, 8), np.int32), name="labels")
    viewer.add_points([[1, 1]], name="points")
    image = viewer.add_image(noisy((16, 16)), name="image")
    assert widget.image.choices == (image,)
    assert widget.plus.choices == (None, image)


def test_no_model_installed(make_widget, no_models, notes):
    viewer, widget = make_widget()
    viewer.add_image(noisy((32, 32)), name="wf")
    assert "No CVDM model is installed" in widget.model_info.value
    _refused(viewer, widget, notes, "No CVDM model is installed")


def test_model_task_must_match_the_chosen_task(make_widget, model_files, notes):
    model_files["tiny-sr"].unlink()  # only a phase model left
    viewer, widget = make_widget()
    assert widget.model.value == "tiny-phase" and widget.task.value == "phase"
    widget.task.value = "super-resolution"
    viewer.add_image(noisy((32, 32)), name="wf")
    _refused(viewer, widget, notes, "does phase, but Task is super-resolution")


def test_unavailable_device(make_widget, model_files, notes, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    viewer, widget = make_widget()
    viewer.add_image(noisy((32, 32)), name="wf")
    widget.device.value = "cuda"
    assert widget.device_info.value == "not available here"
    _refused(viewer, widget, notes, "no CUDA GPU")


def test_error_found_by_the_core_in_the_worker_changes_nothing(make_widget, model_files, notes, qtbot):
    """A later stack plane that is constant passes the quick checks; the core refuses it before any work."""
    viewer, widget = make_widget()
    frames = noisy((2, 32, 32))
    frames[1] = 5.0
    viewer.add_image(frames, name="movie")
    widget.pixel_size.value = "0.0626"
    before = _snapshot(viewer)
    job = widget.reconstruct()
    assert job is not None
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)
    assert job.outcome == "failed"
    assert len(notes["error"]) == 1 and "constant" in notes["error"][0]
    assert _snapshot(viewer) == before


@pytest.mark.parametrize(
    ("tile", "overlap", "match"),
    [
        (64, 64, "tile_overlap 64 is more than half of the tile_size 64"),
        (32, 17, "use a tile_overlap of at most 16"),
        (4, 0, "tile_size: Input should be greater than or equal to 8"),
    ],
)
def test_impossible_tiles_are_refused(make_widget, model_files, notes, tile, overlap, match):
    viewer, widget = make_widget()
    viewer.add_image(noisy((32, 32)), name="wf")
    widget.tile_size.value, widget.tile_overlap.value = tile, overlap
    _refused(viewer, widget, notes, match)
    assert "invalid setting: :" not in notes["error"][0]  # a check across fields reads as one sentence


def test_a_tile_below_the_network_minimum_is_refused(make_widget, model_files, notes):
    from napari_cvdm.model import CVDM, CVDMConfig, ModelMetadata, UNetConfig
    from napari_cvdm.model.files import save_model
    from tests.conftest import TINY, TINY_INFO

    deep = CVDM(CVDMConfig(cond_channels=1, residual_channel=0, **{**TINY, "denoiser": UNetConfig(width=4, depth=5)}))
    save_model(model_files["tiny-sr"].with_name("deep-sr.cvdm"), deep, ModelMetadata(**TINY_INFO["sr"], name="deep-sr"))
    viewer, widget = make_widget()
    widget.model.reset_choices()
    widget.model.value = "deep-sr"
    viewer.add_image(noisy((32, 32)), name="wf")
    widget.tile_size.value = 8
    _refused(viewer, widget, notes, "tile size 8 is below this model's minimum of 16")


def test_steps_cannot_go_beyond_what_the_time_grids_support(make_widget, model_files):
    from napari_cvdm.sampling.plan import MAX_STEPS

    _viewer, widget = make_widget()
    assert widget.steps.max == MAX_STEPS
