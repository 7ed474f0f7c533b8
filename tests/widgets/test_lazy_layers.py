"""Lazy (dask) and large layers in the reconstruction widget: plane by plane into an OME-Zarr store, never read
whole; output layers are dask views of the store; rerun resumes, cancel keeps, a store of another run is refused."""

from __future__ import annotations

import threading
from typing import Any

import dask.array as da
import numpy as np
import pytest

from tests.widgets.conftest import noisy, run_and_wait

pytestmark = pytest.mark.gui

PIXEL = 0.0626  # the tiny SR model's own pixel (µm): the layer states it, the run goes as is (2× finer)
OUTPUTS = ("CVDM mean", "CVDM variance", "CVDM β map")


class PlaneOnly:
    """A (T, H, W) stack that serves one plane per read and fails any bigger read, as a stack too big for memory
    would; once ``block`` is set to an event, reads of planes ≥ 1 wait for it (to cancel a run at a known plane)."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.read_planes: list[int] = []
        self.block: threading.Event | None = None
        self.order: list[tuple[str, int]] | None = None  # set by PlaneOrder

    def __getitem__(self, index: Any) -> np.ndarray:
        part = self._data[index]
        plane = int(np.prod(self._data.shape[1:]))
        if part.size > plane:
            raise AssertionError(f"read {part.shape} at once: more than one plane")
        lead = index[0] if isinstance(index, tuple) else index
        first = lead.start or 0 if isinstance(lead, slice) else int(lead)
        if self.block is not None and first >= 1:
            assert self.block.wait(30), "the test never let the job read on"
        self.read_planes.append(first)
        if self.order is not None and threading.current_thread() is not threading.main_thread():
            self.order.append(("read", first))
        return part

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError("the whole stack was read")


class PlaneOrder:
    """While active: the worker threads' plane reads of a :class:`PlaneOnly` stack and the store's plane marks, in
    order.  (Not a dask callback: dask empties its global callback set while any thread computes, so napari
    refreshing a layer in the main thread would hide the job's own computes from it.)"""

    def __init__(self, wrapped: PlaneOnly, monkeypatch: pytest.MonkeyPatch) -> None:
        from napari_cvdm.io.omezarr import PlaneStore

        self.log: list[tuple[str, int]] = []
        mark = PlaneStore.mark

        def logged_mark(store: PlaneStore, k: int) -> None:
            mark(store, k)
            self.log.append(("mark", k))

        wrapped.order = self.log
        monkeypatch.setattr(PlaneStore, "mark", logged_mark)


def lazy_stack(n: int = 3, size: int = 64) -> tuple[da.Array, PlaneOnly]:
    wrapped = PlaneOnly(noisy((n, size, size)))
    lazy = da.from_array(wrapped, chunks=(1, size, size), name="plane-only-stack", meta=np.empty((0, 0, 0), "f4"))
    return lazy, wrapped


def add_stack(viewer, data: Any, name: str = "wf"):
    """The stack as a layer in µm at the model's pixel (explicit contrast limits: napari reads nothing for them)."""
    return viewer.add_image(
        data, name=name, scale=(1.0, PIXEL, PIXEL), units=("s", "µm", "µm"), axis_labels=("t", "y", "x"),
        contrast_limits=(50.0, 150.0),
    )  # fmt: skip


def start(widget, store) -> Any:
    widget.n_samples.value = 2
    widget.store.value = store
    return widget


def test_a_dask_stack_runs_plane_by_plane_into_lazy_layers(
    make_widget, model_files, notes, qtbot, tmp_path, monkeypatch
):
    from napari_cvdm._widgets.stack_job import StackReconstructionJob

    viewer, widget = make_widget()
    lazy, wrapped = lazy_stack()
    layer = add_stack(viewer, lazy)
    assert not widget.store.native.isHidden()
    store = tmp_path / "out.zarr"
    wrapped.read_planes.clear()  # only the run's own reads from here on
    order = PlaneOrder(wrapped, monkeypatch)
    job = run_and_wait(qtbot, start(widget, store))
    # never the stack at once: plane k is read only after planes 0 … k − 1 are marked in the store and before k is
    marks = [k for what, k in order.log if what == "mark"]
    assert marks == [0, 1, 2]
    reads = [
        (k, [m for w, m in order.log[:i] if w == "mark"]) for i, (what, k) in enumerate(order.log) if what == "read"
    ]
    assert {k for k, _ in reads} == {0, 1, 2} and all(before == list(range(k)) for k, before in reads), order.log
    assert isinstance(job, StackReconstructionJob)
    assert job.outcome == "done" and notes["error"] == [], notes
    assert any(str(store) in note for note in notes["info"])
    assert [lay.name for lay in viewer.layers] == ["wf", *(f"wf {name}" for name in OUTPUTS)]
    assert layer.data is lazy  # the input layer is untouched
    assert sorted(set(wrapped.read_planes)) == [0, 1, 2]  # every plane read, each alone (PlaneOnly)
    for name in OUTPUTS:
        out = viewer.layers[f"wf {name}"]
        assert isinstance(out.data, da.Array)
        assert out.data.shape == (3, 128, 128)
        np.testing.assert_allclose(out.scale, (1.0, PIXEL / 2, PIXEL / 2))
        np.testing.assert_allclose(out.translate, (0.0, -PIXEL / 4, -PIXEL / 4))
        assert [str(u) for u in out.units] == ["second", "micrometer", "micrometer"]
        assert tuple(out.axis_labels) == ("t", "y", "x")
        assert np.isfinite(np.asarray(out.data)).all()  # every plane filled in
        meta = out.metadata["napari_cvdm"]
        assert meta["store"] == str(store) and "partial" not in meta
    mean = viewer.layers["wf CVDM mean"]
    assert mean.visible and not viewer.layers["wf CVDM β map"].visible
    low, high = mean.contrast_limits
    assert np.isfinite([low, high]).all() and (low, high) != (0.0, 1.0)  # from the first plane, not all-NaN
    viewer.dims.set_current_step(0, 2)  # what napari shows of the last plane: written, not a cached NaN
    assert np.isfinite(np.asarray(mean._slice.image.raw)).all()
    assert job.computed == [0, 1, 2] and job.skipped == []
    assert widget.status.value.startswith("done") and "3 plane(s) computed" in widget.status.value


def test_a_rerun_with_the_same_settings_skips_every_plane(make_widget, model_files, notes, qtbot, tmp_path):
    viewer, widget = make_widget()
    lazy, _ = lazy_stack()
    add_stack(viewer, lazy)
    start(widget, tmp_path / "out.zarr")
    run_and_wait(qtbot, widget)
    mean = viewer.layers["wf CVDM mean"]
    first = np.asarray(mean.data).copy()
    job = run_and_wait(qtbot, widget)
    assert job.outcome == "done" and notes["error"] == []
    assert job.skipped == [0, 1, 2] and job.computed == []
    assert "3 already there (same run) skipped" in widget.status.value
    assert viewer.layers["wf CVDM mean"] is mean and len(viewer.layers) == 4
    np.testing.assert_array_equal(np.asarray(mean.data), first)


def test_cancel_keeps_the_finished_planes_and_a_rerun_continues(make_widget, model_files, notes, qtbot, tmp_path):
    viewer, widget = make_widget()
    lazy, wrapped = lazy_stack()
    add_stack(viewer, lazy)
    viewer.dims.set_current_step(0, 0)  # napari shows plane 0, which is never held back
    hold = wrapped.block = threading.Event()
    start(widget, tmp_path / "out.zarr")
    widget.pixel_size.value = widget.pixel_size.value or f"{PIXEL}"
    try:
        job = widget.reconstruct()
        assert job is not None and widget.run_button.text == "Cancel"
        qtbot.waitUntil(lambda: job.computed == [0], timeout=30_000)  # plane 1 is held back
        widget.run_button.clicked.emit()  # Cancel
    finally:
        hold.set()
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)
    assert job.outcome == "cancelled" and notes["error"] == []
    assert "cancelled" in notes["info"][-1] and "1 of 3 plane(s)" in notes["info"][-1]
    mean = viewer.layers["wf CVDM mean"]  # the layers stay, with the finished plane
    data = np.asarray(mean.data)
    assert np.isfinite(data[0]).all() and np.isnan(data[1:]).all()
    assert mean.metadata["napari_cvdm"]["partial"] is True
    viewer.dims.set_current_step(0, 1)
    assert np.isnan(np.asarray(mean._slice.image.raw)).all()  # napari shows plane 1 as not written yet
    again = run_and_wait(qtbot, widget)
    assert again.outcome == "done" and again.skipped == [0] and again.computed == [1, 2]
    assert np.isfinite(np.asarray(mean.data)).all()
    assert np.isfinite(np.asarray(mean._slice.image.raw)).all()  # and now as written, not a cached NaN
    np.testing.assert_array_equal(np.asarray(mean.data)[0], data[0])


def test_a_store_of_another_run_is_refused_and_nothing_is_added(make_widget, model_files, notes, qtbot, tmp_path):
    viewer, widget = make_widget()
    lazy, _ = lazy_stack()
    add_stack(viewer, lazy)
    store = tmp_path / "out.zarr"
    start(widget, store)
    run_and_wait(qtbot, widget)
    for name in OUTPUTS:
        viewer.layers.remove(f"wf {name}")
    before = list(viewer.layers)
    widget.seed.value = 1  # another run: the store holds seed 0
    assert widget.reconstruct() is None
    assert len(notes["error"]) == 1, notes
    message = notes["error"][0]
    assert str(store) in message and "another run" in message and "seed 0 → 1" in message
    assert "--overwrite" not in message and "Output store" in message
    assert list(viewer.layers) == before and widget.run_button.text == "Run"


def test_a_store_path_must_be_a_zarr_folder(make_widget, model_files, notes, tmp_path):
    viewer, widget = make_widget()
    lazy, _ = lazy_stack()
    add_stack(viewer, lazy)
    start(widget, tmp_path / "out.tif")
    assert widget.reconstruct() is None
    assert len(notes["error"]) == 1 and ".zarr" in notes["error"][0]
    assert [layer.name for layer in viewer.layers] == ["wf"]


def test_a_large_numpy_stack_runs_plane_by_plane(make_widget, model_files, notes, qtbot, tmp_path, monkeypatch):
    from napari_cvdm._widgets import stack_job

    viewer, widget = make_widget()
    add_stack(viewer, noisy((2, 32, 32)), name="small")
    assert widget.store.native.isHidden()  # in memory and small: the usual run, no store
    monkeypatch.setattr(stack_job, "LARGE_INPUT_BYTES", 1000)
    add_stack(viewer, noisy((2, 32, 32)), name="big")
    assert widget.image.value.name == "big" and not widget.store.native.isHidden()
    job = run_and_wait(qtbot, start(widget, tmp_path / "big.zarr"))
    assert isinstance(job, stack_job.StackReconstructionJob) and job.outcome == "done"
    mean = viewer.layers["big CVDM mean"]
    assert isinstance(mean.data, da.Array) and mean.data.shape == (2, 64, 64)


def test_two_lazy_phase_layers_are_stacked_in_plane_order(make_widget, model_files, notes, qtbot, tmp_path):
    viewer, widget = make_widget()
    widget.task.value = "phase"
    pixel = 0.21  # the tiny phase model's own
    pair = noisy((2, 2, 32, 32), low=0.8, high=1.2)  # T = 2 frames of (I(−d), I(+d))
    minus = viewer.add_image(da.from_array(pair[:, 0], chunks=(1, 32, 32)), name="minus", scale=(1, pixel, pixel))
    plus = viewer.add_image(da.from_array(pair[:, 1], chunks=(1, 32, 32)), name="plus", scale=(1, pixel, pixel))
    widget.image.value, widget.plus.value = minus, plus
    assert not widget.store.native.isHidden()
    widget.pixel_size.value = f"{pixel}"
    job = run_and_wait(qtbot, start(widget, tmp_path / "pair.zarr"))
    assert job.outcome == "done" and notes["error"] == [], notes
    np.testing.assert_array_equal(job.stack.source.plane(1), pair[1])  # plane 1 = frame 1 as (I(−d), I(+d))
    mean = viewer.layers["minus + plus CVDM mean"]
    assert isinstance(mean.data, da.Array) and mean.data.shape == (2, 32, 32)
    assert mean.metadata["napari_cvdm"]["units"] == "rad"
    assert np.isfinite(np.asarray(mean.data)).all()


def test_a_multiscale_layer_runs_on_its_full_resolution_level(make_widget, model_files, notes, qtbot, tmp_path):
    viewer, widget = make_widget()
    full = noisy((64, 64))
    pyramid = [da.from_array(full, chunks=32), da.from_array(full[::2, ::2], chunks=32)]
    viewer.add_image(pyramid, name="wf", multiscale=True, scale=(PIXEL, PIXEL), units="µm", contrast_limits=(50, 150))
    job = run_and_wait(qtbot, start(widget, tmp_path / "wf.zarr"))
    assert job.outcome == "done" and notes["error"] == [], notes
    mean = viewer.layers["wf CVDM mean"]
    assert mean.data.shape == (128, 128) and not mean.multiscale


@pytest.fixture
def calibrated_sr(model_files):
    from napari_cvdm.model.files import save_model
    from tests.conftest import tiny_model
    from tests.widgets.conftest import FAST
    from tests.widgets.test_calibrated_layers import CALIBRATION

    model = tiny_model("sr", name="tiny-sr-calibrated", sampler=FAST, calibrations=[CALIBRATION])
    return save_model(model_files["tiny-sr"].parent / "tiny-sr-calibrated.cvdm", model.network, model.info)


def test_a_calibrated_model_shows_the_calibrated_std_and_hides_the_raw_variance(
    make_widget, calibrated_sr, notes, qtbot, tmp_path
):
    viewer, widget = make_widget()
    widget.model.value = "tiny-sr-calibrated"
    lazy, _ = lazy_stack(n=2)
    add_stack(viewer, lazy)
    job = run_and_wait(qtbot, start(widget, tmp_path / "out.zarr"))
    assert job.outcome == "done" and notes["error"] == [], notes
    names = [layer.name for layer in viewer.layers]
    assert names == ["wf", "wf CVDM mean", "wf CVDM ± calibrated std", "wf CVDM variance", "wf CVDM β map"]
    std = viewer.layers["wf CVDM ± calibrated std"]
    assert isinstance(std.data, da.Array) and std.visible and not viewer.layers["wf CVDM variance"].visible
    meta = std.metadata["napari_cvdm"]
    assert meta["meaning"].startswith("± calibrated std: the expected RMS error of the mean")
    assert meta["interval_level"] == 0.9 and (np.asarray(std.data) > 0).all()
