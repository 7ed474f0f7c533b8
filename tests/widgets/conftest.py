"""Widget-test fixtures: tiny models in a temporary model folder, a docked widget, captured notifications."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import save_tiny_models

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


def run_and_wait(qtbot, widget, layers=None, timeout: int = 30_000):
    """Start a run and wait until its outcome is known; returns the job."""
    job = widget.reconstruct(layers)
    assert job is not None, "the run was refused"
    qtbot.waitUntil(lambda: not job.running, timeout=timeout)
    return job


def noisy(shape: tuple[int, ...], seed: int = 0, low: float = 50.0, high: float = 150.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)
