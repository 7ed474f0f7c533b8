"""I/O fixtures: a tiny SR model saved as a file (the dask workers and the CLI load it by path) and small stacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_cvdm.registry import load_model
from napari_cvdm.settings import ReconstructSettings
from tests.conftest import save_tiny_models

FAST = ReconstructSettings(steps=1, n_samples=2, device="cpu")


@pytest.fixture
def sr_file(tmp_path) -> Path:
    return save_tiny_models(tmp_path / "models", sampler={"steps": 1})["tiny-sr"]


@pytest.fixture
def sr_model(sr_file):
    return load_model(sr_file)


def stack(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(50, 150, (n, size, size)).astype(np.uint16)


@pytest.fixture
def stack_tif(tmp_path) -> Path:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack(4), photometric="minisblack")
    return path
