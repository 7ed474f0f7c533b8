"""Write the bundled sample images into ``src/napari_cvdm/sample_data/`` (fixed seeds, our simulators).

Usage: ``python benchmarks/make_sample_data.py [--out src/napari_cvdm/sample_data]`` (~2 s).

* ``widefield.tif``: 256² widefield microtubules (BioSR-like TIRF, 62.6 nm px), photo-electrons as uint16.
* ``widefield_sim_truth.tif``: its noise-free 512² SIM target (31.3 nm px), uint16 in the same units.
* ``defocus_pair.tif``: (2, 256, 256) float32 [I(−d), I(+d)], procedural cells, d = 2 µm, 0.21 µm px.
* ``defocus_pair_phase_truth.tif``: (256, 256) float32 phase in rad.

All files are zlib-compressed ImageJ TIFFs with the pixel size in the resolution tags and a JSON ``Info``
entry that :func:`napari_cvdm.sample_data.load_sample` returns as metadata.  Total size is about 1 MB.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_cvdm.physics import PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair
from napari_cvdm.sample_data import SAMPLE_DIR, SAMPLES

SIZE = 256
SR_SEED = 7
PHASE_SEED = 3
SR_SETTINGS = SRSimulation(structure="microtubules", photons=(100.0, 100.0))
PHASE_SETTINGS = PhaseSimulation(source="cells", noise_max=0.05)


def _write(out: Path, name: str, arr: np.ndarray, pixel_um: float, info: dict[str, Any], **extra: Any) -> Path:
    spec = SAMPLES[name]
    axes = "ZYX" if arr.ndim == 3 else "YX"
    meta = {"pixel_um": pixel_um, "axes": axes, **info}
    path = out / spec.filename
    integer = np.issubdtype(arr.dtype, np.integer)
    tifffile.imwrite(
        path,
        np.ascontiguousarray(arr),
        imagej=True,
        resolution=(1.0 / pixel_um, 1.0 / pixel_um),
        metadata={"unit": "um", "axes": axes, "Info": json.dumps(meta), **extra},
        compression="zlib",
        predictor=integer,  # horizontal differencing helps integers; float predictors need imagecodecs
    )
    return path


def make_samples(out: Path = SAMPLE_DIR) -> list[Path]:
    """Simulate both sample pairs and write the four TIFFs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    wf, sim, sr_info = simulate_sr_pair(SR_SETTINGS, SIZE, np.random.default_rng(SR_SEED))
    sr_sim = {"settings": SR_SETTINGS.model_dump(mode="json"), "seed": SR_SEED, "info": sr_info}
    if max(wf.max(), sim.max()) >= 65535 or wf.min() < 0:
        raise ValueError("sample intensities do not fit uint16; lower the photon level")
    stack, phase, ph_info = simulate_phase_pair(PHASE_SETTINGS, SIZE, np.random.default_rng(PHASE_SEED))
    ph_sim = {"settings": PHASE_SETTINGS.model_dump(mode="json"), "seed": PHASE_SEED, "info": ph_info}
    px = PHASE_SETTINGS.pixel_um
    return [
        _write(out, "widefield", np.round(wf).astype(np.uint16), SR_SETTINGS.wf_pixel_um, {"simulation": sr_sim}),
        _write(
            out,
            "widefield-sim-truth",
            np.round(sim).astype(np.uint16),
            SR_SETTINGS.sim_pixel_um,
            {"simulation": sr_sim},
        ),
        _write(
            out,
            "defocus-pair",
            stack.astype(np.float32),
            px,
            {"simulation": ph_sim, "defocus_um": PHASE_SETTINGS.defocus_um, "planes": ["I(-d)", "I(+d)"]},
            spacing=2 * PHASE_SETTINGS.defocus_um,
            Labels=["I(-d)", "I(+d)"],
        ),
        _write(out, "defocus-pair-phase-truth", phase.astype(np.float32), px, {"simulation": ph_sim}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR)
    args = parser.parse_args()
    paths = make_samples(args.out)
    for path in paths:
        print(f"{path}  {path.stat().st_size / 1024:.0f} KiB")
    print(f"total {sum(p.stat().st_size for p in paths) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
