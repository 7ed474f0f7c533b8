"""Tiles on the output grid, the linear ramps that blend their overlaps without seams, and which tile owns a pixel.

Means, variances and ∫β maps are blended with the ramps (a weighted average of the tiles that cover a pixel).
Individual samples are not: two tiles are independent draws, and a weighted average of two draws has less spread
than either.  Each pixel of a kept sample is therefore copied from exactly one tile, its *owner*
(:func:`tile_owners`).

Tiles run row by row, so once a row of tiles is done every output row above the next tile row's start is final:
:meth:`TileLayout.band` names these row bands, and a plane's results can be written band by band, holding one
row of tiles at a time instead of the whole plane.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

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


def tile_owners(
    rows: list[int],
    cols: list[int],
    weight: np.ndarray,
    shape: tuple[int, int],
    row_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """For each pixel of a ``shape`` grid, the index (row-major over ``rows`` × ``cols``) of the tile that owns it.

    All tiles have ``weight``'s shape.  The owner is the tile whose blending weight is largest at the pixel (the
    tile the pixel lies deepest inside); among tiles of equal weight, the one whose centre is nearest.
    ``row_range`` (first, end) restricts the answer to those output rows (the same owners, a band's worth).
    """
    th, tw = weight.shape
    first, end = row_range or (0, shape[0])
    yy, xx = np.mgrid[0:th, 0:tw]
    off_centre = np.hypot(yy - (th - 1) / 2, xx - (tw - 1) / 2) / np.hypot(th, tw)  # in [0, 0.5]
    score = weight.astype(np.float64) - 1e-6 * off_centre  # weights differ by ≥ 1/(overlap + 1) ≫ 1e-6
    best = np.full((end - first, shape[1]), -np.inf)
    owner = np.zeros((end - first, shape[1]), np.int64)
    for index, (r, c) in enumerate(itertools.product(rows, cols)):
        lo, hi = max(r, first), min(r + th, end)
        if lo >= hi:
            continue
        window = best[lo - first : hi - first, c : c + tw]
        mine = score[lo - r : hi - r]
        take = mine > window
        window[take] = mine[take]
        owner[lo - first : hi - first, c : c + tw][take] = index
    return owner


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of one plane lie on the output grid, their blending weight, and the row bands they finish."""

    rows: list[int]
    cols: list[int]
    height: int  # of every tile
    width: int
    weight: np.ndarray  # (height, width) linear ramps
    shape: tuple[int, int]  # (H_out, W_out)

    @classmethod
    def plan(cls, out_h: int, out_w: int, tile: int, overlap: int) -> TileLayout:
        rows, cols = tile_starts(out_h, tile, overlap), tile_starts(out_w, tile, overlap)
        th, tw = min(tile, out_h), min(tile, out_w)
        weight = np.outer(ramp(th, overlap if len(rows) > 1 else 0), ramp(tw, overlap if len(cols) > 1 else 0))
        return cls(rows, cols, th, tw, weight, (out_h, out_w))

    @property
    def n_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    def windows(self) -> Iterator[tuple[int, int, int]]:
        """(tile index, first row, first column) of every tile, row-major."""
        for index, (r, c) in enumerate(itertools.product(self.rows, self.cols)):
            yield index, r, c

    def band(self, tile_row: int) -> tuple[int, int]:
        """The output rows [first, end) that are final once tile rows 0 … ``tile_row`` are done."""
        last = tile_row == len(self.rows) - 1
        return self.rows[tile_row], self.shape[0] if last else self.rows[tile_row + 1]

    def owner(self, first: int, end: int) -> np.ndarray:
        """(end − first, W_out): the tile each kept sample's pixel in output rows [first, end) is copied from."""
        return tile_owners(self.rows, self.cols, self.weight, self.shape, (first, end))
