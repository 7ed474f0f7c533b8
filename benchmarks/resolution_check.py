"""How well the blind cutoff fit (``physics.resolution.estimate_cutoff``) reads a widefield image's optics, and how
often the reconstruction's resolution check (``inference.resolution_check``) flags the bench's microscopes.

    python benchmarks/resolution_check.py [--n 8] [--random 40] [--sizes 128 256] [--defocus-waves W]

Rows: the bench's SR test rows (the four structures at the nominal optics, then the held-out microscopes at 108 nm
pixels and at emission 0.67 µm / NA 1.4; seeds of ``evaluation.quality.sr_cases``), and ``--random`` draws of
``physics.SROpticsRange`` (seeds 52 000+).  For each: the fitted / true cutoff (median and 10–90 %), and the
share of images the check calls a mismatch: the bench's rows against the nominal model's optics (the bench's "told
no optics" runs), the randomised ones against their own optics (stated correctly: every flag is a false alarm).
``--defocus-waves W``: every widefield image is simulated W waves (peak wavefront error at the pupil's edge) out of
focus — the OTF of a defocused circular pupil, same cutoff, lower contrast below it — as a real sample or objective
blurs it; the simulator itself is diffraction-limited.
"""

from __future__ import annotations

import argparse

import numpy as np

import napari_cvdm.physics.simulate as simulate_module
from napari_cvdm.evaluation.quality import sr_cases
from napari_cvdm.inference.resolution_check import resolution_verdict
from napari_cvdm.physics import SRSimulation, simulate_sr_pair
from napari_cvdm.physics.noise import sr_cutoff_cycles_per_px
from napari_cvdm.physics.optics import defocused_incoherent_otf
from napari_cvdm.physics.ranges import SROpticsRange, draw_sr_settings
from napari_cvdm.physics.resolution import ResolutionEstimateError, estimate_cutoff

NOMINAL = SRSimulation()
EXPECTED = sr_cutoff_cycles_per_px(NOMINAL.na, NOMINAL.wavelength_um, NOMINAL.wf_pixel_um)


def defocused_otf(waves: float):
    """``physics.optics.incoherent_otf`` with the widefield OTF replaced by that of a pupil ``waves`` out of focus
    (``physics.optics.defocused_incoherent_otf``); the SIM target's wider OTF, recognised by its cutoff above any
    widefield one, is left as it is."""
    plain = simulate_module.incoherent_otf
    widefield = 2 * 1.49 / 0.45  # µm⁻¹: above any widefield cutoff drawn (NA ≤ 1.49, λ ≥ 0.45 µm)

    def otf(shape, pixel_um, cutoff_per_um, real=False):
        if cutoff_per_um > widefield:
            return plain(shape, pixel_um, cutoff_per_um, real=real)
        return defocused_incoherent_otf(shape, pixel_um, cutoff_per_um, waves, real=real)

    return otf


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
    parser.add_argument("--defocus-waves", type=float, default=0.0, help="defocus of every image (see above)")
    args = parser.parse_args()
    if args.defocus_waves:
        simulate_module.incoherent_otf = defocused_otf(args.defocus_waves)
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
