"""How well the blind cutoff fit (``physics.resolution.estimate_cutoff``) reads a widefield image's optics, and how
often the reconstruction's resolution check (``inference.resolution_check``) flags the bench's microscopes.

    python benchmarks/resolution_check.py [--n 8] [--random 40] [--sizes 128 256]

Rows: the bench's SR test rows (the four structures at the nominal optics, then the held-out microscopes at 108 nm
pixels and at emission 0.67 µm / NA 1.4; seeds of ``evaluation.quality.sr_cases``), and ``--random`` draws of
``physics.SROpticsRange`` (seeds 52 000+).  For each: the fitted / true cutoff (median and 10–90 %), and the
share of images the check calls a mismatch: the bench's rows against the nominal model's optics (the bench's "told
no optics" runs), the randomised ones against their own optics (stated correctly: every flag is a false alarm).
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_cvdm.evaluation.quality import sr_cases
from napari_cvdm.inference.resolution_check import resolution_verdict
from napari_cvdm.physics import SRSimulation, simulate_sr_pair
from napari_cvdm.physics.noise import sr_cutoff_cycles_per_px
from napari_cvdm.physics.ranges import SROpticsRange, draw_sr_settings
from napari_cvdm.physics.resolution import ResolutionEstimateError, estimate_cutoff

NOMINAL = SRSimulation()
EXPECTED = sr_cutoff_cycles_per_px(NOMINAL.na, NOMINAL.wavelength_um, NOMINAL.wf_pixel_um)


def _row(label: str, draws: list[tuple[SRSimulation, np.random.Generator]], size: int, stated: bool) -> str:
    """One table row; ``stated``: the check compares each image with its own optics (stated correctly), else with
    the nominal model's (told none)."""
    ratios, flagged, missing = [], 0, 0
    for settings, rng in draws:
        image = simulate_sr_pair(settings, size, rng)[0]
        true = sr_cutoff_cycles_per_px(settings.na, settings.wavelength_um, settings.wf_pixel_um)
        try:
            found = estimate_cutoff(image)
        except ResolutionEstimateError:
            missing += 1
            continue
        ratios.append(found.cutoff_cycles_per_px / true if not found.at_least else np.nan)
        flagged += resolution_verdict(found, true if stated else EXPECTED)["verdict"] == "mismatch"
    finite = np.array([r for r in ratios if np.isfinite(r)])
    spread = "{:.2f} [{:.2f}–{:.2f}]".format(*np.percentile(finite, [50, 10, 90])) if len(finite) else "beyond the grid"
    beyond = len(ratios) - len(finite)
    return f"| {label} | {size} | {spread} | {beyond} | {missing} | {flagged}/{len(draws)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="images per bench row")
    parser.add_argument("--random", type=int, default=40, help="images drawn from physics.SROpticsRange")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    args = parser.parse_args()
    print("| images | side (px) | fitted / true cutoff, median [10–90 %] | ≥ grid | no estimate | mismatch |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        for label, settings, rngs in sr_cases(args.n):
            print(_row(label, [(settings, rng) for rng in rngs], size, stated=False), flush=True)
        draw = np.random.default_rng(52_000)
        randomised = [(draw_sr_settings(SROpticsRange(), draw), np.random.default_rng(52_001 + k))
                      for k in range(args.random)]  # fmt: skip
        print(_row("randomised optics (SROpticsRange), stated", randomised, size, stated=True), flush=True)


if __name__ == "__main__":
    main()
