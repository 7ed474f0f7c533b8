"""Bundled sample images: a simulated widefield image and a two-shot defocus pair, each with its ground truth.

The files in ``sample_data/`` are written once by ``benchmarks/make_sample_data.py`` (fixed seeds, our own
simulators) and only read here — nothing is simulated at load time.  GUI-free: the napari sample-data hooks
(:mod:`napari_cvdm._sample_data`) and ``napari-cvdm predict --sample`` both call :func:`load_sample`.

Each file is an ImageJ TIFF with the pixel size (µm) in its resolution tags and a JSON ``Info`` entry holding
the metadata that :func:`load_sample` returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_DIR = Path(__file__).parent


@dataclass(frozen=True)
class SampleSpec:
    """One bundled sample: file name, layer name, what it is and what it pairs with."""

    filename: str
    display_name: str
    kind: str  # "input" or "truth"
    task: str  # "super-resolution" or "phase"
    units: str
    partner: str  # the truth of an input, or the input of a truth


SAMPLES: dict[str, SampleSpec] = {
    "widefield": SampleSpec(
        "widefield.tif",
        "widefield (simulated microtubules)",
        "input",
        "super-resolution",
        "photo-electrons (sum of 9 raw SIM frames)",
        "widefield-sim-truth",
    ),
    "widefield-sim-truth": SampleSpec(
        "widefield_sim_truth.tif",
        "SIM ground truth",
        "truth",
        "super-resolution",
        "photo-electrons per widefield-pixel area",
        "widefield",
    ),
    "defocus-pair": SampleSpec(
        "defocus_pair.tif",
        "I(−d)/I(+d) stack",
        "input",
        "phase",
        "intensity (illumination = 1)",
        "defocus-pair-phase-truth",
    ),
    "defocus-pair-phase-truth": SampleSpec(
        "defocus_pair_phase_truth.tif",
        "phase ground truth (rad)",
        "truth",
        "phase",
        "rad",
        "defocus-pair",
    ),
}


def sample_names() -> list[str]:
    """Names accepted by :func:`load_sample`."""
    return list(SAMPLES)


def sample_path(name: str) -> Path:
    """The TIFF behind sample ``name``; raises ``KeyError`` with the known names."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")
    return SAMPLE_DIR / SAMPLES[name].filename


def load_sample(name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Load a bundled sample as ``(float32 array, metadata)``.

    Names: ``"widefield"`` (256×256 widefield image), ``"widefield-sim-truth"`` (its 512×512 SIM ground truth),
    ``"defocus-pair"`` (2×256×256 stack ordered (I(−d), I(+d))) and ``"defocus-pair-phase-truth"`` (256×256
    phase in rad).  The metadata holds at least ``name``, ``display_name``, ``pixel_um``, ``axes``, ``task``,
    ``kind`` ("input" / "truth"), ``units``, ``partner`` (the matching truth or input) and ``simulation``
    (simulator settings, seed and per-image info).
    """
    import tifffile

    path = sample_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"sample file {path} is missing; reinstall napari-cvdm")
    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        ij = tif.imagej_metadata or {}
    info = json.loads(ij.get("Info", "{}"))
    spec = SAMPLES[name]
    meta: dict[str, Any] = {
        **info,
        "name": name,
        "display_name": spec.display_name,
        "kind": spec.kind,
        "task": spec.task,
        "units": spec.units,
        "partner": spec.partner,
        "file": str(path),
    }
    meta.setdefault("axes", "ZYX" if data.ndim == 3 else "YX")
    if "pixel_um" not in meta:
        raise ValueError(f"{path} has no pixel size in its metadata; regenerate it with benchmarks/make_sample_data.py")
    return np.asarray(data, dtype=np.float32), meta
