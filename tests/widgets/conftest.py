"""Widget-test fixtures: tiny models in a temporary model folder, a docked widget, captured notifications."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import save_tiny_models

X_PACKAGES = "xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 libgl1 libegl1 libxkbcommon-x11-0"
GUI_FIXTURES = {"qtbot", "qapp", "make_napari_viewer", "make_widget"}
# What the GUI tests need from the display, tried in a child process: Qt aborts the whole process (not just the
# test) when it cannot open a display or a GL context, which is what the first image layer asks for.
PROBE = (
    "import numpy, napari; viewer = napari.Viewer(show=False); "
    "viewer.add_image(numpy.zeros((8, 8), numpy.float32)); viewer.close()"
)


@functools.cache
def display_problem() -> str | None:
    """None when napari can open a viewer with an image layer here; else what went wrong, in one line."""
    try:
        run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return "a test viewer did not open within 180 s"
    if run.returncode == 0:
        return None
    lines = [line.strip() for line in (run.stderr or run.stdout).splitlines() if line.strip()]
    for clue in ("needed", "could not connect", "could not load", "display", "error"):
        said = next((line for line in lines if clue in line.lower()), None)
        if said:
            return said.removeprefix("WARNING: ")
    return lines[-1] if lines else f"exit status {run.returncode}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a GUI test, before Qt starts, where no display works; the rest of the suite still runs."""
    if GUI_FIXTURES.isdisjoint(getattr(item, "fixturenames", ())):
        return
    problem = display_problem()
    if problem is not None:
        pytest.skip(
            f"GUI tests need an X server and Qt's X libraries (napari could not open a viewer: {problem[:160]}). "
            f"On Debian/Ubuntu: sudo apt-get install -y {X_PACKAGES} (scripts/test.sh does it); pytest-xvfb then "
            "starts the server"
        )


FAST = {"steps": 2}  # the tiny models' default sampler: 2 network evaluations per sample


@pytest.fixture(autouse=True)
def _only_test_models(monkeypatch):
    """Widget tests see only the tiny models they install (not the bundled default models)."""
    from napari_cvdm import registry

    for name in list(registry.REGISTRY):  # in place: other modules hold a reference to the same dict
        monkeypatch.delitem(registry.REGISTRY, name)


@pytest.fixture
def model_files(tmp_path, monkeypatch) -> dict[str, Path]:
    folder = tmp_path / "models"
    monkeypatch.setenv("NAPARI_CVDM_MODELS", str(folder))
    return save_tiny_models(folder, sampler=FAST)


@pytest.fixture
def no_models(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.setenv("NAPARI_CVDM_MODELS", str(folder))
    return folder


@pytest.fixture
def notes(monkeypatch) -> dict[str, list[str]]:
    """Every error/warning/info notification the plugin shows, by kind (nothing reaches the real manager)."""
    from napari.utils import notifications

    seen: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    for kind in seen:
        monkeypatch.setattr(notifications, f"show_{kind}", lambda msg, _k=kind: seen[_k].append(str(msg)))
    return seen


@pytest.fixture
def make_widget(make_napari_viewer) -> Callable:
    """A viewer with the reconstruction widget docked; returns (viewer, widget)."""

    def make():
        from napari_cvdm._widgets import ReconstructWidget

        viewer = make_napari_viewer()
        widget = ReconstructWidget(viewer)
        viewer.window.add_dock_widget(widget, name="CVDM reconstruction")
        return viewer, widget

    return make


def run_and_wait(qtbot, widget, layers=None, timeout: int = 30_000, state_pixel: bool = True):
    """Start a run and wait until its outcome is known; returns the job.  ``state_pixel``: where the layer states
    no pixel size, type the picked model's own (the test images are at the tiny models' optics)."""
    entry = widget.picker.entry()
    if state_pixel and not widget.pixel_size.value and entry is not None and entry.info is not None:
        widget.pixel_size.value = f"{entry.info.input_pixel_um:g}"
    job = widget.reconstruct(layers)
    assert job is not None, "the run was refused"
    qtbot.waitUntil(lambda: not job.running, timeout=timeout)
    return job


def run_on_nominal_widefield(make_widget, qtbot, image: np.ndarray):
    """Reconstruct ``image`` as a layer in µm at the tiny SR model's 62.6 nm pixels, with the emission λ and NA of
    the nominal optics typed in (the tiny model states none), 2 samples; returns the finished job."""
    viewer, widget = make_widget()
    viewer.add_image(image, name="wf", scale=(0.0626, 0.0626), units=("µm", "µm"))
    widget.optics.wavelength.value = "0.515"
    widget.optics.numerical_aperture.value = "1.3"
    widget.n_samples.value = 2
    return run_and_wait(qtbot, widget, state_pixel=False)


def noisy(shape: tuple[int, ...], seed: int = 0, low: float = 50.0, high: float = 150.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)
