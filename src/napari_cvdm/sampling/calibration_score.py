"""The per-pixel score a calibration maps to the posterior std: the raw sample spread, optionally blended with one
more thing known at every pixel.

The raw spread alone ranks the error poorly where the network is consistently wrong in a way its samples do not
show.  Two-shot phase is the case in point: its error is a smooth, low-frequency field (the TIE's ill-posed low
frequencies) that grows towards the plane's edges, where the Fourier-space inversion meets its periodic boundary,
and the samples hardly spread there.  A calibration may therefore score each pixel by

    u = s^(1 − w) · f^w,

with s the raw sample std (its variance Gaussian-smoothed over ``smoothing_px``), w the feature's weight, and f one
of

* ``"structure"`` — the local structure of the mean: its RMS gradient magnitude (network units per pixel) averaged
  over a Gaussian of ``feature_px``; the error of a restoration gathers where the image changes;
* ``"border"`` — the nearness to the plane's edge: 1 / (1 + d / ``feature_px``), d the distance in pixels to the
  nearest edge, clipped at ``feature_clip_px`` (the farthest any calibration pixel lay from an edge), so that a plane
  larger than the calibration images treats its interior like their centres instead of extrapolating;
* ``"coarse"`` — the coarse structure of the mean: the RMS of its band between ``feature_px``/2 and 8·``feature_px``
  (a difference of Gaussians) averaged over a Gaussian of ``feature_px``.  A TIE-type inversion (two-shot phase)
  determines the low spatial frequencies worst, so the error of the mean there grows with how much of the object
  lies in them, which the samples' spread shows only partly;
* ``"detail"`` — the raw spread itself at a finer scale: the raw std with its variance smoothed over ``feature_px``
  (less than ``smoothing_px``).  A wide smoothing estimates how far off a region is; the fine spread says which
  pixels within it spread most, so the blend keeps the region's level and the ranking within it.

w = 0 (``"spread"``, calibration versions ≤ 2) is the raw spread alone.  The feature, its weight and width are
chosen on held-out pairs by the cross-fitted likelihood (:func:`~napari_cvdm.sampling.calibration.fit_calibration`;
a blend must also keep the images' levels), never set by hand; SR calibrations try the structure and the border
only (:func:`~napari_cvdm.sampling.calibration.feature_candidates_for`).

Every part is local or positional, so a plane calibrated a row band at a time needs only
:meth:`Score.reach` rows of context and the band's first row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

GAUSSIAN_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default: its kernel reaches int(4σ + 0.5) pixels
TINY = 1e-12  # floor of s and f before their logarithms (network units)
ScoreFeature = Literal["spread", "structure", "border", "detail", "coarse"]
COARSE_BAND = (0.5, 8.0)  # the coarse band's Gaussians, as multiples of feature_px


def gaussian_reach(sigma_px: float) -> int:
    """How many pixels a Gaussian of ``sigma_px`` (as :func:`smooth_variance` applies it) reaches; 0 for none."""
    return int(GAUSSIAN_TRUNCATE * sigma_px + 0.5) if sigma_px > 0 else 0


def smooth_variance(variance: np.ndarray, sigma_px: float) -> np.ndarray:
    """``variance`` blurred over its last two axes by a Gaussian of ``sigma_px`` pixels (0: unchanged)."""
    variance = np.asarray(variance, dtype=np.float64)
    if sigma_px <= 0:
        return variance
    from scipy.ndimage import gaussian_filter

    sigma = (0,) * (variance.ndim - 2) + (sigma_px, sigma_px)
    return gaussian_filter(variance, sigma=sigma, mode="reflect", truncate=GAUSSIAN_TRUNCATE)


def local_structure(mean: np.ndarray, sigma_px: float) -> np.ndarray:
    """The RMS gradient magnitude of ``mean`` (network units per pixel) over a Gaussian of ``sigma_px`` pixels, on
    the last two axes (central differences, one-sided at the edges)."""
    mean = np.asarray(mean, dtype=np.float64)
    if mean.ndim < 2:
        raise ValueError(f"the local structure needs an image (rows, columns); got shape {mean.shape}")
    gy, gx = np.gradient(mean, axis=(-2, -1))
    return np.sqrt(np.maximum(smooth_variance(gy * gy + gx * gx, sigma_px), 0.0))


def coarse_structure(mean: np.ndarray, sigma_px: float) -> np.ndarray:
    """The RMS of ``mean``'s band between Gaussians of ``COARSE_BAND`` × ``sigma_px`` pixels, averaged over a
    Gaussian of ``sigma_px`` (network units), on the last two axes."""
    mean = np.asarray(mean, dtype=np.float64)
    if mean.ndim < 2:
        raise ValueError(f"the coarse structure needs an image (rows, columns); got shape {mean.shape}")
    fine, wide = (smooth_variance(mean, k * sigma_px) for k in COARSE_BAND)
    return np.sqrt(np.maximum(smooth_variance(np.square(fine - wide), sigma_px), 0.0))


def edge_distance(shape: tuple[int, ...], first_row: int = 0, plane_rows: int | None = None) -> np.ndarray:
    """Distance in pixels of each pixel of rows [first_row, first_row + shape[-2]) of a plane of ``plane_rows``
    rows (default: these rows are the whole plane) and shape[-1] columns to the plane's nearest edge."""
    rows, cols = shape[-2], shape[-1]
    plane_rows = rows if plane_rows is None else plane_rows
    r = np.arange(first_row, first_row + rows, dtype=np.float64)
    c = np.arange(cols, dtype=np.float64)
    to_row_edge = np.minimum(r, plane_rows - 1 - r)[:, None]
    to_col_edge = np.minimum(c, cols - 1 - c)[None, :]
    return np.broadcast_to(np.minimum(to_row_edge, to_col_edge), shape)


def farthest_from_edge(shape: tuple[int, ...]) -> float:
    """The largest distance to the nearest edge of any pixel of a plane of ``shape`` (last two axes)."""
    return float((min(shape[-2], shape[-1]) - 1) // 2)


@dataclass(frozen=True)
class Score:
    """How a calibration scores pixels (see the module text): u = s^(1 − w)·f^w."""

    smoothing_px: float = 0.0
    feature: ScoreFeature = "spread"
    weight: float = 0.0
    width_px: float = 0.0
    clip_px: float = 0.0

    @property
    def blended(self) -> bool:
        return self.feature != "spread" and self.weight > 0

    def reach(self) -> int:
        """The rows (and columns) of neighbours a pixel's score depends on: the variance smoothing's reach, and for
        the structure the gradient's one pixel plus its averaging's reach, for the coarse structure its wide
        Gaussian's plus its averaging's, for the detail its own smoothing's (the border is positional)."""
        reach = gaussian_reach(self.smoothing_px)
        if self.blended and self.feature == "structure":
            reach = max(reach, 1 + gaussian_reach(self.width_px))
        if self.blended and self.feature == "detail":
            reach = max(reach, gaussian_reach(self.width_px))
        if self.blended and self.feature == "coarse":
            reach = max(reach, gaussian_reach(COARSE_BAND[1] * self.width_px) + gaussian_reach(self.width_px))
        return reach

    def spread(self, raw_variance: np.ndarray) -> np.ndarray:
        """s: the raw std after the variance smoothing."""
        return np.sqrt(np.maximum(smooth_variance(raw_variance, self.smoothing_px), 0.0))

    def feature_map(
        self,
        mean: np.ndarray | None,
        shape: tuple[int, ...],
        first_row: int = 0,
        plane_rows: int | None = None,
        raw_variance: np.ndarray | None = None,
    ) -> np.ndarray:
        """f of every pixel of rows [first_row, first_row + shape[-2]) of the plane (the whole plane by default);
        the detail needs ``raw_variance``, the structure ``mean`` (both network units, of ``shape``)."""
        if self.feature == "border":
            distance = np.minimum(edge_distance(shape, first_row, plane_rows), self.clip_px or np.inf)
            return 1.0 / (1.0 + distance / self.width_px)
        if self.feature == "detail":
            if raw_variance is None or tuple(np.shape(raw_variance)) != tuple(shape):
                raise ValueError(f"the detail score needs the raw variance of shape {tuple(shape)}")
            return np.sqrt(np.maximum(smooth_variance(raw_variance, self.width_px), 0.0))
        if mean is None:
            raise ValueError(
                f"this calibration scores pixels by the {'coarse' if self.feature == 'coarse' else 'local'} structure "
                "of the mean as well as the sample spread: "
                "pass the mean (network units) with the raw variance"
            )
        if tuple(np.shape(mean)) != tuple(shape):
            raise ValueError(f"the mean {np.shape(mean)} and the raw variance {tuple(shape)} differ in shape")
        if self.feature == "coarse":
            return coarse_structure(mean, self.width_px)
        return local_structure(mean, self.width_px)

    def combine(self, spread: np.ndarray, feature: np.ndarray) -> np.ndarray:
        """u = s^(1 − w)·f^w."""
        w = float(self.weight)
        return np.exp((1.0 - w) * np.log(np.maximum(spread, TINY)) + w * np.log(np.maximum(feature, TINY)))

    def __call__(
        self,
        raw_variance: np.ndarray,
        mean: np.ndarray | None = None,
        first_row: int = 0,
        plane_rows: int | None = None,
    ) -> np.ndarray:
        """u of every pixel (network units) of rows [first_row, …) of a plane of ``plane_rows`` rows (default: the
        arrays are the whole plane); ``mean`` (network units, same shape) is needed for the structure."""
        s = self.spread(raw_variance)
        if not self.blended:
            return s
        return self.combine(s, self.feature_map(mean, np.shape(raw_variance), first_row, plane_rows, raw_variance))
