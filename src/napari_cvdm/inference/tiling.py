"""Tiles on the output grid and the linear ramps that blend their overlaps without seams."""

from __future__ import annotations

import math

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` shared pixels."""
    if length <= tile:
        return [0]
    step = max(tile - overlap, 1)
    count = math.ceil((length - tile) / step) + 1
    return sorted({min(i * step, length - tile) for i in range(count)})


def ramp(size: int, overlap: int) -> np.ndarray:
    """Blending weight along one tile axis: rises linearly over ``overlap`` pixels at both ends (never 0)."""
    if overlap <= 0:
        return np.ones(size, np.float32)
    idx = np.arange(size, dtype=np.float32)
    return np.clip(np.minimum(idx + 1, size - idx) / (overlap + 1), 1e-3, 1.0)
