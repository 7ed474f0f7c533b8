"""What the widget screenshots share (``screenshot_widget.py``, ``screenshot_finetune.py``): a real napari window
of a fixed size, waiting for a widget's run while Qt keeps processing events, and grabbing the whole window.

Imported by those scripts when run as ``python benchmarks/screenshot_*.py`` (their folder is then on the path).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def _process_events(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.05)


def open_viewer(size: tuple[int, int]) -> Any:
    """A shown napari viewer titled "napari-cvdm" whose window is ``size`` (width, height) pixels."""
    import napari

    viewer = napari.Viewer(show=True, title="napari-cvdm")
    viewer.window._qt_window.resize(*size)
    return viewer


def wait_for(job: Any, timeout: float) -> float:
    """Keep the GUI alive until the widget's ``job`` has finished; its duration in seconds.

    Exits when the widget refused to start (``job`` is None) or the run takes longer than ``timeout`` seconds.
    """
    from qtpy.QtWidgets import QApplication

    if job is None:
        raise SystemExit("the run was refused; see the notification above")
    app = QApplication.instance()
    start = time.perf_counter()
    while job.running and time.perf_counter() - start < timeout:
        app.processEvents()
        time.sleep(0.05)
    if job.running:
        job.cancel()
        raise SystemExit(f"the run took longer than {timeout} s")
    return time.perf_counter() - start


def save_window(viewer: Any, out: Path) -> None:
    """Fit the view, let the window settle, write the whole window (docks included) to ``out``, close the viewer."""
    viewer.reset_view()
    _process_events(1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(out), canvas_only=False, flash=False)
    print(f"wrote {out}")
    viewer.close()
