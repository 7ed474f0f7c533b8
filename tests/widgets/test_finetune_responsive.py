"""The fine-tuning widget reads its data in the worker thread: napari's event loop keeps turning meanwhile."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile
from qtpy.QtCore import QTimer

from napari_cvdm._widgets import FineTuneWidget
from napari_cvdm.io import pairs
from tests.widgets.conftest import noisy

pytestmark = pytest.mark.gui

N_PAIRS, READ_SECONDS = 20, 0.05  # each file read takes ≥ 50 ms: 2 s of reading for the 20 pairs


def test_the_event_loop_keeps_turning_while_20_tiff_pairs_are_read(
    make_napari_viewer, model_files, notes, qtbot, tmp_path, monkeypatch
):
    inputs, targets = tmp_path / "in", tmp_path / "out"
    inputs.mkdir(), targets.mkdir()
    for k in range(N_PAIRS):
        tifffile.imwrite(inputs / f"p{k:02d}.tif", noisy((32, 32), seed=k))
        tifffile.imwrite(targets / f"p{k:02d}.tif", noisy((64, 64), seed=100 + k))
    real_read = pairs.read_image
    reads: list[float] = []

    def slow_read(path):  # a slow disk or a large file
        time.sleep(READ_SECONDS)
        reads.append(time.perf_counter())
        return real_read(path)

    monkeypatch.setattr(pairs, "read_image", slow_read)
    viewer = make_napari_viewer()
    widget = FineTuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="CVDM fine-tuning")
    widget.base.value = "tiny-sr"
    widget.source.value = "folders"
    widget.input_dir.value, widget.target_dir.value = inputs, targets
    widget.patch_size.value, widget.batch_size.value, widget.steps.value = 32, 2, 2
    widget.val_fraction.value, widget.device.value, widget.preview_every.value = 0.1, "cpu", 1
    widget.model_name.value = "responsive"
    assert widget.data_info.value.startswith(f"{N_PAIRS} pairs"), widget.data_info.value

    ticks: list[float] = []
    statuses: list[str] = []

    def tick() -> None:  # runs on the GUI thread: only when the event loop turns
        ticks.append(time.perf_counter())
        statuses.append(widget.status.value)

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    job = widget.train()
    returned = time.perf_counter()
    assert job is not None
    qtbot.waitUntil(lambda: not job.running, timeout=60_000)
    timer.stop()
    assert job.outcome == "done" and notes["error"] == [], notes["error"]
    assert len(reads) == 2 * N_PAIRS
    assert reads[0] > returned  # no file was read on the GUI thread, inside train()
    during = [t for t in ticks if reads[0] <= t <= reads[-1]]
    # the timer fires all through the reading (≥ 2 s): at least one tick per 100 ms, none blocked longer
    assert len(during) >= (reads[-1] - reads[0]) / 0.1, (len(during), reads[-1] - reads[0])
    gaps = np.diff([reads[0], *during, reads[-1]])
    assert gaps.max() < 0.5, f"the event loop stood still for {gaps.max():.2f} s"
    assert any(s.startswith("reading pair ") for s in statuses), set(statuses)  # progress shown meanwhile
    assert viewer.layers["CVDM fine-tuning preview"].data.shape == (32, 32)


def test_stop_while_the_data_are_read_ends_the_run_with_nothing_saved(
    make_napari_viewer, model_files, notes, qtbot, tmp_path, monkeypatch
):
    inputs, targets = tmp_path / "in", tmp_path / "out"
    inputs.mkdir(), targets.mkdir()
    for k in range(N_PAIRS):
        tifffile.imwrite(inputs / f"p{k:02d}.tif", noisy((32, 32), seed=k))
        tifffile.imwrite(targets / f"p{k:02d}.tif", noisy((64, 64), seed=100 + k))
    real_read = pairs.read_image
    monkeypatch.setattr(pairs, "read_image", lambda p: (time.sleep(READ_SECONDS), real_read(p))[1])
    viewer = make_napari_viewer()
    widget = FineTuneWidget(viewer)
    widget.base.value = "tiny-sr"
    widget.source.value = "folders"
    widget.input_dir.value, widget.target_dir.value = inputs, targets
    widget.patch_size.value, widget.batch_size.value, widget.device.value = 32, 2, "cpu"
    widget.model_name.value = "never-trained"
    job = widget.train()
    qtbot.waitUntil(lambda: widget.status.value.startswith("reading pair"), timeout=10_000)
    widget.run_button.clicked.emit()  # Stop
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)
    assert job.outcome == "stopped" and job.model is None and notes["error"] == []
    assert widget.status.value == "stopped before the first step; nothing was saved"
    assert not (model_files["tiny-sr"].parent / "never-trained.cvdm").exists()
