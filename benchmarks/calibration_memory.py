"""Memory and time of fitting one calibration (``sampling.calibration.fit_calibration``), by the pixels it rests on.

A calibration on many or large validation pairs must fit in the memory of the machine that reconstructed them.
This fits synthetic measurements — per image a smooth raw spread, an error drawn from it and a mean whose structure
scales the error (so every score candidate is evaluated) — with every smoothing and blend candidate, and reports the
peak of the memory NumPy allocates during the fit (``tracemalloc``; the measurements themselves not counted), per
pixel, and the seconds::

    OMP_NUM_THREADS=1 python benchmarks/calibration_memory.py --images 8 32 --side 256
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from scipy.ndimage import gaussian_filter

from napari_cvdm.sampling.calibration import fit_calibration


def measurements(n_images: int, side: int, seed: int = 0) -> tuple[list, list, list]:
    """Raw variances, errors and means of ``n_images`` synthetic side² images (network units)."""
    rng = np.random.default_rng(seed)
    variances, errors, means = [], [], []
    for k in range(n_images):
        spread = gaussian_filter(np.exp(0.3 * rng.normal(size=(side, side))), 2) * (1 + k % 3)
        mean = gaussian_filter(rng.normal(size=(side, side)), 3)
        structure = np.hypot(*np.gradient(mean))
        variances.append(0.3 * spread**2)
        errors.append(spread * (1 + 40 * structure) * rng.standard_normal((side, side)))
        means.append(mean)
    return variances, errors, means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--side", type=int, default=256)
    args = parser.parse_args()
    print("| images | pixels | peak MB | bytes per pixel | seconds | chosen score |\n|---|---|---|---|---|---|")
    for n in args.images:
        variances, errors, means = measurements(n, args.side)
        tracemalloc.start()
        start = time.perf_counter()
        c = fit_calibration(variances, errors, 8, "gamma", 1.0, 10, means=means)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        pixels = n * args.side**2
        chosen = f"{c.score_feature}, w = {c.feature_weight:g}, smoothing {c.smoothing_px:g} px"
        print(f"| {n} | {pixels:,} | {peak / 1e6:.0f} | {peak / pixels:.0f} | {seconds:.0f} | {chosen} |")


if __name__ == "__main__":
    main()
