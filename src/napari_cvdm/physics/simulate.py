"""Paired-image simulators (WF → SIM and two-shot defocus → phase) and dataset writing.

Output units:

- SR input (WF): offset-subtracted photo-electrons summed over the ``n_raw_frames`` raw SIM frames
  (BioSR builds its WF input as this sum), on the ``wf_pixel_um`` grid.
- SR target (SIM): the noise-free SIM image of the same object in the *same* units per WF-pixel area,
  i.e. sum-binned photo-electrons × ``scale_factor²``; a uniform region has the same value in both
  images, so an upsampled WF image is directly comparable with the target.
- Phase input: intensities [I(−d), I(+d)] with unit illumination (|U|² = 1), plus the N(ξ, ξ) noise.
- Phase target: phase in rad, ≥ 0 (photos: min–max scaled to [0, φ_peak]).

Every function is deterministic given its ``rng``.  Datasets derive item k's generator from
``np.random.SeedSequence(seed).spawn(n)[k]``, which does not depend on n.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .optics import (
    apply_otf,
    camera_noise,
    foreground_mean,
    incoherent_otf,
    sim_cutoff,
    smooth_field,
    sum_bin,
    widefield_cutoff,
)
from .phase_objects import cell_phase, photo_phase
from .propagation import two_shot
from .settings import PhaseSimulation, SRSimulation
from .structures import STRUCTURES, render_structure

__all__ = ["read_manifest", "simulate_phase_pair", "simulate_sr_pair", "write_dataset"]

MANIFEST_FORMAT = 1
MIN_SIZE = 8  # px: the smallest input side a dataset is written at


def simulate_sr_pair(
    settings: SRSimulation, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One widefield / SIM pair.

    Args:
        settings: optics, sampling and noise parameters.
        size: WF image side in pixels (the SIM target is ``scale_factor·size``).
        rng: source of all randomness.

    Returns:
        ``wf`` (size, size) float32 photo-electrons (offset subtracted, noisy), ``sim``
        (s·size, s·size) float32 noise-free target in the same units per WF-pixel area, and ``info``.
    """
    s = settings
    if size < 8:
        raise ValueError(f"size must be ≥ 8 WF pixels, got {size}")
    kind = s.structure if s.structure != "mixed" else STRUCTURES[int(rng.integers(len(STRUCTURES)))]
    f_per_sim, f_per_wf = s.oversampling, s.oversampling * s.scale_factor
    margin_wf = math.ceil(s.margin_um / s.wf_pixel_um)
    n_fine = (size + 2 * margin_wf) * f_per_wf
    fine_px = s.fine_pixel_um
    obj = render_structure(kind, (n_fine, n_fine), fine_px, rng)

    def blur(cutoff: float) -> np.ndarray:
        out = apply_otf(obj, incoherent_otf(obj.shape, fine_px, cutoff, real=True))
        m = margin_wf * f_per_wf
        out = out[m : m + size * f_per_wf, m : m + size * f_per_wf]
        return sum_bin(np.clip(out, 0.0, None), f_per_sim)  # on the SIM grid

    wf_s = blur(widefield_cutoff(s.wavelength_um, s.na))
    sim_s = blur(sim_cutoff(s.wavelength_um, s.na, s.pattern_spacing_um))
    bg_frac = float(rng.uniform(*s.background))
    field = smooth_field(wf_s.shape, s.sim_pixel_um, s.background_scale_um, rng)
    bg = bg_frac * float(np.percentile(wf_s, 99.9)) * field
    wf_s, sim_s = wf_s + bg, sim_s + bg
    wf_clean = sum_bin(wf_s, s.scale_factor)

    photons = float(np.exp(rng.uniform(np.log(s.photons[0]), np.log(s.photons[1]))))
    per_frame = photons / max(foreground_mean(wf_clean), 1e-30)
    expected = s.n_raw_frames * per_frame * wf_clean
    wf = camera_noise(
        expected,
        rng,
        read_noise_counts=s.read_noise_counts,
        gain_photons_per_count=s.gain_photons_per_count,
        n_frames=s.n_raw_frames,
    )
    gt_counts = s.n_raw_frames * per_frame * sim_s  # photo-electrons per SIM pixel
    if s.gt_photons > 0:
        k = s.gt_photons / max(foreground_mean(gt_counts), 1e-30)
        gt_counts = rng.poisson(k * gt_counts) / k
    sim = gt_counts * s.scale_factor**2
    info = {
        "structure": kind,
        "photons_per_frame": photons,
        "wf_foreground_photons": photons * s.n_raw_frames,
        "background_fraction": bg_frac,
        "wf_pixel_um": s.wf_pixel_um,
        "sim_pixel_um": s.sim_pixel_um,
    }
    return wf.astype(np.float32), sim.astype(np.float32), info


def simulate_phase_pair(
    settings: PhaseSimulation, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One two-shot defocus stack and its phase.

    Returns:
        ``stack`` (2, size, size) float32 [I(−d), I(+d)] in units of the illumination intensity
        (noisy when ``noise_max > 0``), ``phase`` (size, size) float32 in rad, and ``info``.
    """
    s = settings
    if size < 8:
        raise ValueError(f"size must be ≥ 8 pixels, got {size}")
    source = s.source
    if source == "mixed":
        source = "photos" if rng.uniform() < 0.5 else "cells"
    if source == "photos":
        peak = s.max_phase_rad * float(rng.uniform(s.min_phase_fraction, 1.0))
        phase, info = photo_phase(size, rng, peak, s.photo_zoom)
    else:
        phase, info = cell_phase(size, s.pixel_um, s.wavelength_um, rng)
        top = float(phase.max())
        if top > s.max_phase_rad:
            phase *= s.max_phase_rad / top
    top = float(phase.max())
    amp = np.exp(-s.absorption * phase / top) if s.absorption > 0 and top > 0 else 1.0
    stack = two_shot(amp * np.exp(1j * phase), s.defocus_um, s.wavelength_um, s.pixel_um, s.n_medium)
    xi = float(rng.uniform(0.0, s.noise_max)) if s.noise_max > 0 else 0.0
    if xi > 0:
        stack = stack + rng.normal(xi, xi, size=stack.shape)
    info = {
        "source": source,
        **info,
        "peak_phase_rad": top,
        "noise_xi": xi,
        "pixel_um": s.pixel_um,
        "defocus_um": s.defocus_um,
    }
    return stack.astype(np.float32), phase.astype(np.float32), info


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-cvdm")
    except PackageNotFoundError:
        return "0+unknown"


def _write_tif(path: Path, arr: np.ndarray, pixel_um: float, extra: dict[str, Any] | None = None) -> None:
    import tifffile

    meta: dict[str, Any] = {"unit": "um", "axes": "ZYX" if arr.ndim == 3 else "YX"}
    meta.update(extra or {})
    tifffile.imwrite(
        path,
        np.ascontiguousarray(arr, dtype=np.float32),
        imagej=True,
        resolution=(1.0 / pixel_um, 1.0 / pixel_um),
        metadata=meta,
    )


def write_dataset(
    task: Literal["sr", "phase"],
    n: int,
    size: int,
    out_dir: str | Path,
    seed: int = 0,
    settings: SRSimulation | PhaseSimulation | dict | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``n`` simulated pairs to ``out_dir`` and return the directory.

    Layout: ``input/NNNN.tif`` and ``target/NNNN.tif`` (pairs share the file name; float32,
    ImageJ TIFF with the pixel size in µm), and ``manifest.json`` with the task, n, size, seed, full
    settings, package version and per-item info.  The same call rewrites a bit-identical dataset.
    SR: input (size, size) WF at ``wf_pixel_um``, target (s·size)² SIM at ``wf_pixel_um/s``.
    Phase: input (2, size, size) [I(−d), I(+d)] (Z spacing 2d), target (size, size) phase in rad.
    ``progress(k, n)`` is called after each item.
    """
    if task not in ("sr", "phase"):
        raise ValueError(f"task must be 'sr' or 'phase', got {task!r}")
    model = SRSimulation if task == "sr" else PhaseSimulation
    if settings is None:
        settings = model()
    elif isinstance(settings, dict):
        settings = model.model_validate(settings)
    if not isinstance(settings, model):
        raise TypeError(f"task {task!r} needs {model.__name__} settings, got {type(settings).__name__}")
    if n < 1 or size < MIN_SIZE:
        raise ValueError(f"need n ≥ 1 and size ≥ {MIN_SIZE}, got n={n}, size={size}")
    out = Path(out_dir)
    if (out / "manifest.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a dataset; choose another directory or overwrite=True")
    (out / "input").mkdir(parents=True, exist_ok=True)
    (out / "target").mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(n - 1)))
    items = []
    for k, child in enumerate(np.random.SeedSequence(seed).spawn(n)):
        rng = np.random.default_rng(child)
        name = f"{k:0{digits}d}.tif"
        if isinstance(settings, SRSimulation):
            x, y, info = simulate_sr_pair(settings, size, rng)
            _write_tif(out / "input" / name, x, settings.wf_pixel_um)
            _write_tif(out / "target" / name, y, settings.sim_pixel_um)
        else:
            x, y, info = simulate_phase_pair(settings, size, rng)
            _write_tif(
                out / "input" / name,
                x,
                settings.pixel_um,
                {"spacing": 2 * settings.defocus_um, "Labels": ["I(-d)", "I(+d)"]},
            )
            _write_tif(out / "target" / name, y, settings.pixel_um)
        items.append({"file": name, **info})
        if progress is not None:
            progress(k + 1, n)
    manifest = {
        "format": MANIFEST_FORMAT,
        "task": task,
        "n": n,
        "size": size,
        "seed": seed,
        "settings_model": type(settings).__name__,
        "settings": settings.model_dump(mode="json"),
        "package_version": _package_version(),
        "units": _UNITS[task],
        "items": items,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out


_UNITS = {
    "sr": {
        "input": "photo-electrons summed over n_raw_frames, offset subtracted",
        "target": "noise-free SIM, photo-electrons per WF-pixel area (same scale as input)",
    },
    "phase": {"input": "intensity [I(-d), I(+d)], unit illumination = 1", "target": "phase, rad"},
}


def read_manifest(path: str | Path) -> tuple[dict[str, Any], SRSimulation | PhaseSimulation]:
    """Manifest of a dataset directory (or of the file itself) and its validated settings."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    manifest = json.loads(p.read_text())
    model = SRSimulation if manifest["task"] == "sr" else PhaseSimulation
    return manifest, model.model_validate(manifest["settings"])
