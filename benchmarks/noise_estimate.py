"""How close the SR noise estimate (``physics.noise.header_noise``, what the noise check and training use) comes to
the simulator's photons per frame and read noise, by photon count and image size.

    python benchmarks/noise_estimate.py [--seeds 24] [--photons 20 300 3000] [--sizes 128 256] \
        [--camera-pixel UM [--optics-cutoff-only]]

Each cell simulates ``--seeds`` widefield images at the nominal optics (``physics.simulate_sr_pair``, seeds 40 300+,
9 summed frames, read noise 10 ADU) and prints the median estimate / truth and its 10th–90th percentile, and how
many images gave no estimate.  ``--camera-pixel``: the images are recorded at that pixel (µm) but estimated as if at
the nominal 62.6 nm, as a run told the wrong pixel (or none) does; the noise band then starts above the cutoff the
image itself shows (``physics.resolution.estimate_cutoff``), as the reconstruction's noise check does, or with
``--optics-cutoff-only`` above the nominal optics' cutoff alone.
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_cvdm.evaluation.quality import sr_microscope
from napari_cvdm.physics import SRSimulation, simulate_sr_pair
from napari_cvdm.physics.noise import header_noise
from napari_cvdm.physics.resolution import ResolutionEstimateError, estimate_cutoff

NOMINAL = SRSimulation()


def _shown_cutoff(image: np.ndarray) -> float | None:
    try:
        return estimate_cutoff(image).cutoff_cycles_per_px
    except ResolutionEstimateError:
        return None


def _ratios(
    photons: float, size: int, seeds: int, camera_pixel: float | None, shown: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    recorded = sr_microscope(wf_pixel_um=camera_pixel) if camera_pixel else NOMINAL
    settings = recorded.model_copy(update={"photons": (photons, photons)})
    photon_ratio, read_ratio = [], []
    for seed in range(40_300, 40_300 + seeds):
        image = simulate_sr_pair(settings, size, np.random.default_rng(seed))[0]
        found = header_noise(
            "super-resolution",
            image,
            0.0,
            pixel_um=NOMINAL.wf_pixel_um,
            wavelength_um=NOMINAL.wavelength_um,
            numerical_aperture=NOMINAL.na,
            shown_cutoff=_shown_cutoff(image) if camera_pixel and shown else None,
        )["estimate"]
        photon_ratio.append(found["photons_per_frame"] / photons if found else np.nan)
        read_ratio.append(found.get("read_noise_counts", np.nan) / settings.read_noise_counts if found else np.nan)
    return np.array(photon_ratio), np.array(read_ratio)


def _summary(values: np.ndarray) -> str:
    good = values[np.isfinite(values)]
    if not len(good):
        return "no estimate"
    lo, mid, hi = np.percentile(good, [10, 50, 90])
    return f"{mid:.2f} [{lo:.2f}–{hi:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--photons", type=float, nargs="+", default=[20.0, 300.0, 3000.0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--camera-pixel", type=float, default=None, help="µm; the images' own pixel (see above)")
    parser.add_argument("--optics-cutoff-only", action="store_true", help="ignore the cutoff the image shows")
    args = parser.parse_args()
    print("| photons per frame | side (px) | estimate / truth, median [10–90 %] | read noise / truth | no estimate |")
    print("|---|---|---|---|---|")
    for photons in args.photons:
        for size in args.sizes:
            photon_ratio, read_ratio = _ratios(
                photons, size, args.seeds, args.camera_pixel, not args.optics_cutoff_only
            )
            missing = int(np.isnan(photon_ratio).sum())
            print(
                f"| {photons:g} | {size} | {_summary(photon_ratio)} | {_summary(read_ratio)} | {missing}/{args.seeds} |"
            )


if __name__ == "__main__":
    main()
