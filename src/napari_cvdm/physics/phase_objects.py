"""Phase objects for the two-shot defocus simulator (phases in radians, ≥ 0).

Two sources:

- ``photo_phase``: a grayscale photo bundled with scikit-image (no download), randomly cropped,
  resampled, rotated/flipped and min–max scaled to [0, φ_peak] rad — the CVDM recipe with ImageNet
  replaced by offline images.  ``skimage.data.cell()`` is a real quantitative-phase image reserved for
  evaluation and is **never** used here (``load_photo("cell")`` raises).
- ``cell_phase``: procedural adherent cells, φ = (2π/λ)·Σ Δn·h: an ellipsoidal body (semi-axes 5–15 µm,
  height 3–6 µm, Δn 0.02–0.05, smooth irregular edge), a nucleus (extra Δn 0.01), 1–4 nucleoli and
  20–200 granules (σ 0.2–0.5 µm).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["EVALUATION_ONLY", "PHOTO_NAMES", "cell_phase", "load_photo", "photo_phase"]

#: Photos shipped inside the scikit-image wheel (checked: none needs a download).
PHOTO_NAMES: tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
#: Reserved for evaluation; must never become training data.
EVALUATION_ONLY: frozenset[str] = frozenset({"cell"})
assert not EVALUATION_ONLY & set(PHOTO_NAMES)


@functools.lru_cache(maxsize=32)
def load_photo(name: str) -> np.ndarray:
    """Grayscale float64 image in [0, 1] of the bundled scikit-image photo ``name`` (read-only)."""
    if name in EVALUATION_ONLY:
        raise ValueError(f"skimage.data.{name}() is reserved for evaluation (a real phase image); never train on it")
    if name not in PHOTO_NAMES:
        raise ValueError(f"unknown photo {name!r}; choose one of {PHOTO_NAMES}")
    import skimage.data
    from skimage.color import rgb2gray, rgba2rgb

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 3 and img.shape[-1] == 4:
        img = rgba2rgb(img)
    if img.ndim == 3:
        img = rgb2gray(img)
    img = img.astype(np.float64)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    img.setflags(write=False)
    return img


def photo_phase(
    size: int,
    rng: np.random.Generator,
    peak_rad: float,
    zoom: tuple[float, float] = (0.5, 2.0),
) -> tuple[np.ndarray, dict]:
    """Random photo crop as a (size, size) phase map in [0, peak_rad] rad.

    ``zoom`` is the log-uniform range of output pixels per source pixel; the crop side is
    size/zoom (capped by the photo).  A random rot90/flip follows; then min–max to [0, peak_rad].
    """
    from skimage.transform import resize

    name = PHOTO_NAMES[int(rng.integers(len(PHOTO_NAMES)))]
    img = load_photo(name)
    z = float(np.exp(rng.uniform(np.log(zoom[0]), np.log(zoom[1]))))
    side = int(np.clip(round(size / z), 8, min(img.shape)))
    y0 = int(rng.integers(0, img.shape[0] - side + 1))
    x0 = int(rng.integers(0, img.shape[1] - side + 1))
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    crop = img[y0 : y0 + side, x0 : x0 + side]
    crop = resize(crop, (size, size), order=3, mode="reflect", anti_aliasing=side > size)
    crop = np.rot90(crop, k)
    if flip:
        crop = crop[:, ::-1]
    lo, hi = float(crop.min()), float(crop.max())
    phase = (crop - lo) / (hi - lo) * peak_rad if hi > lo else np.zeros((size, size))
    info = {"photo": name, "crop": [y0, x0, side], "rot90": k, "flip": flip}
    return np.ascontiguousarray(phase), info


def _ellipse_coords(yy: np.ndarray, xx: np.ndarray, c: np.ndarray, a: float, b: float, ang: float):
    dy, dx = yy - c[0], xx - c[1]
    u = dx * np.cos(ang) + dy * np.sin(ang)
    v = -dx * np.sin(ang) + dy * np.cos(ang)
    return u / a, v / b


def _ellipse_point(c: np.ndarray, a: float, b: float, ang: float, r: float, th: float) -> np.ndarray:
    """Point at normalised radius r and angle th of an ellipse (semi-axes a, b, rotated by ang)."""
    u, v = a * r * np.cos(th), b * r * np.sin(th)
    return c + np.array([u * np.sin(ang) + v * np.cos(ang), u * np.cos(ang) - v * np.sin(ang)])


def cell_phase(size: int, pixel_um: float, wavelength_um: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Procedural cells: (size, size) phase in rad (not yet clipped to the simulator's maximum).

    φ = (2π/λ)·[Δn_body·h_body + 0.01·h_nucleus + nucleoli + granules], with overlapping cells
    combined by a maximum (a monolayer).  Returns the phase and the per-cell parameters.
    """
    k0 = 2 * np.pi / wavelength_um
    L = size * pixel_um
    yy, xx = np.mgrid[0:size, 0:size] * pixel_um
    phase = np.zeros((size, size))
    n_cells = max(1, round(rng.integers(1, 5) * (L / 54.0) ** 2))
    cells = []
    for _ in range(n_cells):
        c = rng.uniform(0.1, 0.9, 2) * L
        a, b = rng.uniform(5.0, 15.0, 2)
        ang = rng.uniform(0, np.pi)
        height, dn = rng.uniform(3.0, 6.0), rng.uniform(0.02, 0.05)
        harm, hph = rng.normal(0, 0.08, 3), rng.uniform(0, 2 * np.pi, 3)
        u, v = _ellipse_coords(yy, xx, c, a, b, ang)
        t = np.arctan2(v, u)
        rr = np.hypot(u, v) / (1 + sum(harm[m] * np.cos((m + 2) * t + hph[m]) for m in range(3)))
        h_body = height * np.sqrt(np.clip(1 - rr**2, 0, None))
        h_body = gaussian_filter(h_body, 0.5 / pixel_um)
        cell = k0 * dn * h_body
        # nucleus
        nc = c + rng.uniform(-0.3, 0.3, 2) * min(a, b)
        na_, nb_ = rng.uniform(0.3, 0.5) * a, rng.uniform(0.3, 0.5) * b
        nang = ang + rng.uniform(-0.3, 0.3)
        nu, nv = _ellipse_coords(yy, xx, nc, na_, nb_, nang)
        h_nuc = 0.8 * height * np.sqrt(np.clip(1 - nu**2 - nv**2, 0, None))
        cell += k0 * 0.01 * gaussian_filter(h_nuc, 0.3 / pixel_um)
        # nucleoli and granules: Gaussian spots (amplitude in rad)
        spots = np.zeros((size, size))
        n_nucleoli, n_gran = int(rng.integers(1, 5)), int(rng.integers(20, 201))
        for j in range(n_nucleoli + n_gran):
            if j < n_nucleoli:
                r, th = np.sqrt(rng.uniform(0, 0.5)), rng.uniform(0, 2 * np.pi)
                p = _ellipse_point(nc, na_, nb_, nang, r, th)
                sigma, amp = rng.uniform(0.4, 0.8), k0 * 0.02 * rng.uniform(0.5, 1.0)
            else:
                r, th = np.sqrt(rng.uniform(0, 0.8)), rng.uniform(0, 2 * np.pi)
                p = _ellipse_point(c, a, b, ang, r, th)
                sigma, amp = rng.uniform(0.2, 0.5), k0 * rng.uniform(0.01, 0.04) * rng.uniform(0.2, 0.6)
            half = int(np.ceil(4 * sigma / pixel_um))
            iy, ix = int(p[0] / pixel_um), int(p[1] / pixel_um)
            y0, y1, x0, x1 = max(iy - half, 0), min(iy + half + 1, size), max(ix - half, 0), min(ix + half + 1, size)
            if y0 < y1 and x0 < x1:
                g = np.exp(-((yy[y0:y1, x0:x1] - p[0]) ** 2 + (xx[y0:y1, x0:x1] - p[1]) ** 2) / (2 * sigma**2))
                spots[y0:y1, x0:x1] += amp * g
        cell += spots * (h_body > 0.05 * height)
        phase = np.maximum(phase, cell)
        cells.append(
            {
                "center_um": [float(c[0]), float(c[1])],
                "semi_axes_um": [float(a), float(b)],
                "height_um": float(height),
                "delta_n": float(dn),
            }
        )
    return phase, {"cells": cells}
