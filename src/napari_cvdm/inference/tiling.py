"""Tiles on the output grid, the linear ramps that blend their overlaps without seams, and which tile owns a pixel.

Means, variances and ∫β maps are blended with the ramps (a weighted average of the tiles that cover a pixel).
Individual samples are not: two tiles are independent draws, and a weighted average of two draws has less spread
than either.  Each pixel of a kept sample is therefore copied from exactly one tile, its *owner*
(:func:`tile_owners`).
"""

from __future__ import annotations

import itertools
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


def tile_owners(rows: list[int], cols: list[int], weight: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """For each pixel of a ``shape`` grid, the index (row-major over ``rows`` × ``cols``) of the tile that owns it.

    All tiles have ``weight``'s shape.  The owner is the tile whose blending weight is largest at the pixel (the
    tile the pixel lies deepest inside); among tiles of equal weight, the one whose centre is nearest.
    """
    th, tw = weight.shape
    yy, xx = np.mgrid[0:th, 0:tw]
    off_centre = np.hypot(yy - (th - 1) / 2, xx - (tw - 1) / 2) / np.hypot(th, tw)  # in [0, 0.5]
    score = weight.astype(np.float64) - 1e-6 * off_centre  # weights differ by ≥ 1/(overlap + 1) ≫ 1e-6
    best = np.full(shape, -np.inf)
    owner = np.zeros(shape, np.int64)
    for index, (r, c) in enumerate(itertools.product(rows, cols)):
        window = best[r : r + th, c : c + tw]
        take = score > window
        window[take] = score[take]
        owner[r : r + th, c : c + tw][take] = index
    return owner
