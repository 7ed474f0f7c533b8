"""Procedural fluorescent structures of the four BioSR families on a fine grid.

``render_structure(kind, shape, pixel_um, rng)`` returns a non-negative fluorophore-density map
(arbitrary linear units, float64) sampled at ``pixel_um`` (default grid 15.65 nm = BioSR WF pixel / 4).
Object counts are given per 8 µm × 8 µm field (the 128² BioSR WF patch) and scale with the area.
Filaments are Gaussian-profile curves (given as a FWHM in nm) drawn by splatting densely sampled
points and blurring; every object gets a log-normal brightness (σ_log = 0.5).

Families (see ``docs/simulator-sr.md``):

- ``microtubules``: 10–40 worm-like chains (persistence length 5–20 µm, length 5–30 µm, FWHM
  25–40 nm) with a slow brightness modulation along each chain.
- ``f-actin``: 3–15 near-straight stress-fibre bundles (±15° about a dominant direction, curvature
  radius > 20 µm, FWHM 80–250 nm) over 100–600 short dim cortical filaments (0.5–3 µm, FWHM 10–20 nm).
- ``er``: edges of a Voronoi tessellation (seeds 1–4 µm⁻²) as jittered quadratic Bézier tubes
  (FWHM 50–100 nm, 10–30 % of edges deleted) plus 0–3 sheets (1–4 µm) with 50–150 nm fenestrations.
- ``ccps``: hard-core Poisson pits (0.5–3 µm⁻², spacing ≥ 150 nm): rings of radius 40–90 nm and
  width 30–40 nm; pits with radius < 50 nm are filled puncta.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import Voronoi

__all__ = ["STRUCTURES", "render_structure"]

STRUCTURES: tuple[str, ...] = ("microtubules", "f-actin", "er", "ccps")
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_REF_AREA_UM2 = 64.0  # densities below are given per 8 µm × 8 µm field


def _lognormal(rng: np.random.Generator, n: int | None = None, sigma: float = 0.5) -> np.ndarray:
    return rng.lognormal(0.0, sigma, size=n)


def _count(rng: np.random.Generator, lo: int, hi: int, area_um2: float) -> int:
    """Integer in [lo, hi] per 64 µm², scaled to ``area_um2`` (at least 1)."""
    scale = area_um2 / _REF_AREA_UM2
    return max(1, round(rng.integers(lo, hi + 1) * scale))


def _densify(points_um: np.ndarray, step_um: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample a polyline (N, 2) [y, x] at spacing ``step_um``.

    Returns the new points, their arc length and the arc length of the input vertices.
    """
    seg = np.hypot(*np.diff(points_um, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(0.0, s[-1], step_um) if s[-1] > 0 else np.zeros(1)
    pts = np.stack([np.interp(t, s, points_um[:, 0]), np.interp(t, s, points_um[:, 1])], 1)
    return pts, t, s


class _Canvas:
    """Accumulates Gaussian-profile strokes, grouped into a few width bins for speed."""

    def __init__(self, shape: tuple[int, int], pixel_um: float, n_bins: int = 4) -> None:
        self.shape = shape
        self.px = pixel_um
        self.n_bins = n_bins
        self.items: list[tuple[float, np.ndarray, np.ndarray]] = []  # (sigma_px, pts_px, weights)

    def stroke(self, points_um: np.ndarray, fwhm_um: float, density: np.ndarray | float) -> None:
        """Curve with linear density ``density`` (per µm of length, may vary along the curve)."""
        step = 0.5 * self.px
        pts, t, s = _densify(points_um, step)
        dens = np.asarray(density, dtype=np.float64)
        dens = np.full(t.shape, float(dens)) if dens.ndim == 0 else np.interp(t, s, dens)
        self.items.append((fwhm_um * _FWHM_TO_SIGMA / self.px, pts / self.px, dens * step))

    def render(self) -> np.ndarray:
        """Sum of all strokes: splat per width bin, then one Gaussian blur per bin."""
        out = np.zeros(self.shape)
        if not self.items:
            return out
        sig = np.array([max(it[0], 0.5) for it in self.items])
        edges = np.quantile(sig, np.linspace(0, 1, self.n_bins + 1))
        which = np.clip(np.searchsorted(edges, sig, side="right") - 1, 0, self.n_bins - 1)
        for b in range(self.n_bins):
            members = np.flatnonzero(which == b)
            if members.size == 0:
                continue
            pts = np.concatenate([self.items[i][1] for i in members])
            w = np.concatenate([self.items[i][2] for i in members])
            acc = _splat(self.shape, pts, w)
            out += gaussian_filter(acc, float(np.mean(sig[members])), mode="constant", truncate=4.0)
        return out


def _splat(shape: tuple[int, int], pts_px: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bilinear deposit of weights ``w`` at fractional pixel positions (y, x); outside points dropped."""
    h, wd = shape
    y, x = pts_px[:, 0], pts_px[:, 1]
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = y - y0, x - x0
    acc = np.zeros(h * wd)
    for dy, dx, ww in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < wd)
        acc += np.bincount(yy[ok] * wd + xx[ok], weights=(w * ww)[ok], minlength=h * wd)
    return acc.reshape(h, wd)


def _smooth_1d(rng: np.random.Generator, n: int, corr: float, amp: float) -> np.ndarray:
    """1 + amp·(smooth unit-variance noise of correlation ``corr`` samples), clipped ≥ 0.2."""
    noise = gaussian_filter(rng.standard_normal(n), max(corr, 1.0), mode="reflect")
    noise /= max(float(noise.std()), 1e-12)
    return np.clip(1.0 + amp * noise, 0.2, None)


def _microtubules(c: _Canvas, size_um: np.ndarray, rng: np.random.Generator) -> None:
    area = float(size_um[0] * size_um[1])
    ds = 0.02
    for _ in range(_count(rng, 10, 40, area)):
        lp = rng.uniform(5.0, 20.0)
        length = rng.uniform(5.0, 30.0)
        n = max(int(length / ds / 2), 2)
        start = rng.uniform(0.0, 1.0, 2) * size_um
        theta0 = rng.uniform(0.0, 2 * np.pi)
        halves = []
        for sign in (1.0, -1.0):
            th = theta0 + np.cumsum(rng.normal(0.0, np.sqrt(ds / lp), n))
            if sign < 0:
                th = th + np.pi
            steps = ds * np.stack([np.sin(th), np.cos(th)], 1)
            halves.append(start + np.cumsum(steps, 0))
        pts = np.concatenate([halves[1][::-1], start[None], halves[0]])
        mod = _smooth_1d(rng, len(pts), corr=1.0 / ds, amp=0.3)
        c.stroke(pts, rng.uniform(0.025, 0.040), _lognormal(rng) * mod)


def _arc(start: np.ndarray, theta: float, curvature: float, length: float, n: int) -> np.ndarray:
    s = np.linspace(-length / 2, length / 2, n)
    th = theta + curvature * s
    ds = s[1] - s[0]
    pts = np.cumsum(ds * np.stack([np.sin(th), np.cos(th)], 1), 0)
    return pts - pts[n // 2] + start


def _f_actin(c: _Canvas, size_um: np.ndarray, rng: np.random.Generator) -> None:
    area = float(size_um[0] * size_um[1])
    diag = float(np.hypot(*size_um))
    theta_d = rng.uniform(0.0, np.pi)
    for _ in range(_count(rng, 3, 15, area)):
        theta = theta_d + np.deg2rad(rng.uniform(-15.0, 15.0))
        kappa = rng.uniform(-1 / 20.0, 1 / 20.0)
        length = rng.uniform(0.4, 1.5) * diag
        pts = _arc(rng.uniform(0, 1, 2) * size_um, theta, kappa, length, max(int(length / 0.05), 4))
        fwhm = rng.uniform(0.080, 0.250)
        mod = _smooth_1d(rng, len(pts), corr=20.0, amp=0.25)
        c.stroke(pts, fwhm, rng.uniform(4.0, 10.0) * _lognormal(rng) * mod)
    for _ in range(_count(rng, 100, 600, area)):
        length = rng.uniform(0.5, 3.0)
        pts = _arc(
            rng.uniform(0, 1, 2) * size_um,
            rng.uniform(0, 2 * np.pi),
            rng.normal(0.0, 0.3),
            length,
            max(int(length / 0.05), 4),
        )
        c.stroke(pts, rng.uniform(0.010, 0.020), rng.uniform(0.5, 1.0) * _lognormal(rng))


def _bezier(p0: np.ndarray, p1: np.ndarray, ctrl: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p1


def _er(c: _Canvas, size_um: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws the tubes into ``c``; returns the sheet image (added after tube rendering)."""
    margin = 2.0
    ext = size_um + 2 * margin
    n_seeds = rng.poisson(rng.uniform(1.0, 4.0) * ext[0] * ext[1])
    seeds = rng.uniform(0, 1, (max(n_seeds, 4), 2)) * ext - margin
    vor = Voronoi(seeds)
    delete = rng.uniform(0.1, 0.3)
    for ridge in vor.ridge_vertices:
        if -1 in ridge:
            continue
        p0, p1 = vor.vertices[ridge[0]], vor.vertices[ridge[1]]
        keep = rng.uniform() >= delete
        jitter = rng.normal(0.0, 0.2)
        fwhm = rng.uniform(0.050, 0.100)
        bright = _lognormal(rng, sigma=0.3)
        lo, hi = np.minimum(p0, p1), np.maximum(p0, p1)
        if not keep or np.any(hi < -0.5) or np.any(lo > size_um + 0.5):
            continue
        d = p1 - p0
        length = float(np.hypot(*d))
        normal = np.array([-d[1], d[0]]) / max(length, 1e-9)
        ctrl = 0.5 * (p0 + p1) + jitter * length * normal
        c.stroke(_bezier(p0, p1, ctrl, max(int(length / 0.02), 3)), fwhm, bright)
    return _er_sheets(c.shape, c.px, size_um, rng)


def _er_sheets(shape: tuple[int, int], px: float, size_um: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0–3 sheets of height 0.3–0.6 (× tube peak, applied by the caller) with 50–150 nm holes."""
    sheets = np.zeros(shape)
    for _ in range(rng.integers(0, 4)):
        center = rng.uniform(0, 1, 2) * size_um
        radius = rng.uniform(0.5, 2.0)
        harm = rng.normal(0.0, 0.12, 4)
        phases = rng.uniform(0, 2 * np.pi, 4)
        level = rng.uniform(0.3, 0.6)
        n_holes = rng.poisson(8.0 * np.pi * radius**2)
        holes = center + rng.uniform(-radius, radius, (n_holes, 2))
        hole_r = rng.uniform(0.025, 0.075, n_holes)
        ext = 1.6 * radius
        y0, x0 = (max(int((center[i] - ext) / px), 0) for i in (0, 1))
        y1, x1 = min(int((center[0] + ext) / px) + 1, shape[0]), min(int((center[1] + ext) / px) + 1, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1] * px
        r = np.hypot(yy - center[0], xx - center[1])
        ang = np.arctan2(yy - center[0], xx - center[1])
        edge = radius * (1 + sum(harm[m] * np.cos((m + 2) * ang + phases[m]) for m in range(4)))
        mask = r < edge
        for (hy, hx), hr in zip(holes, hole_r, strict=True):
            iy0, ix0 = max(int((hy - hr) / px) - y0, 0), max(int((hx - hr) / px) - x0, 0)
            iy1, ix1 = int((hy + hr) / px) + 2 - y0, int((hx + hr) / px) + 2 - x0
            if iy1 <= 0 or ix1 <= 0:
                continue
            sub = (slice(iy0, iy1), slice(ix0, ix1))
            mask[sub] &= np.hypot(yy[sub] - hy, xx[sub] - hx) > hr
        sheets[y0:y1, x0:x1] = np.maximum(sheets[y0:y1, x0:x1], level * mask)
    return gaussian_filter(sheets, 0.03 / px) if sheets.any() else sheets


def _hardcore_points(rng: np.random.Generator, size_um: np.ndarray, density: float, dmin: float) -> np.ndarray:
    cand = rng.uniform(0, 1, (rng.poisson(density * size_um[0] * size_um[1]), 2)) * size_um
    kept: list[np.ndarray] = []
    for p in cand:
        if not kept or np.min(np.hypot(*(np.asarray(kept) - p).T)) >= dmin:
            kept.append(p)
    return np.asarray(kept).reshape(-1, 2)


def _ccps(shape: tuple[int, int], px: float, size_um: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(shape)
    pts = _hardcore_points(rng, size_um, rng.uniform(0.5, 3.0), 0.150)
    for p in pts:
        radius = rng.uniform(0.040, 0.090)
        sigma = rng.uniform(0.030, 0.040) * _FWHM_TO_SIGMA
        total = _lognormal(rng) * (radius / 0.065) ** 2
        half = int(np.ceil((radius + 4 * sigma) / px)) + 1
        cy, cx = round(p[0] / px), round(p[1] / px)
        y0, y1 = max(cy - half, 0), min(cy + half + 1, shape[0])
        x0, x1 = max(cx - half, 0), min(cx + half + 1, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1] * px
        r = np.hypot(yy - p[0], xx - p[1])
        if radius < 0.050:  # filled punctum: disk blurred by the coat width
            prof = np.exp(-(r**2) / (2 * (sigma**2 + (radius / 2) ** 2)))
        else:
            prof = np.exp(-((r - radius) ** 2) / (2 * sigma**2))
        s = prof.sum()
        if s > 0:
            out[y0:y1, x0:x1] += total * prof / s
    return out / px**2


def render_structure(kind: str, shape: tuple[int, int], pixel_um: float, rng: np.random.Generator) -> np.ndarray:
    """Fluorophore density of one BioSR-like field.

    Args:
        kind: "microtubules", "f-actin", "er", "ccps", or "mixed" (one family drawn at random).
        shape: (H, W) in fine pixels.
        pixel_um: fine-grid pixel size in µm (default simulator grid 0.01565).
        rng: source of all randomness (deterministic given its state).

    Returns:
        float64 (H, W) ≥ 0, arbitrary linear units (normalised to max 1).
    """
    if kind == "mixed":
        kind = STRUCTURES[int(rng.integers(len(STRUCTURES)))]
    if kind not in STRUCTURES:
        raise ValueError(f"unknown structure {kind!r}; choose one of {(*STRUCTURES, 'mixed')}")
    if pixel_um <= 0:
        raise ValueError(f"pixel_um must be > 0, got {pixel_um}")
    size_um = np.asarray(shape, dtype=np.float64) * pixel_um
    canvas = _Canvas(shape, pixel_um)
    if kind == "microtubules":
        _microtubules(canvas, size_um, rng)
        img = canvas.render()
    elif kind == "f-actin":
        _f_actin(canvas, size_um, rng)
        img = canvas.render()
    elif kind == "er":
        sheets = _er(canvas, size_um, rng)
        img = canvas.render()
        img = img + sheets * float(np.percentile(img, 99.9)) if img.any() else img + sheets
    else:
        img = _ccps(shape, pixel_um, size_um, rng)
    peak = float(img.max())
    return img / peak if peak > 0 else img
