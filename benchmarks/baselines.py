"""Classical baselines on a fixed simulated test set; prints markdown tables.

Usage: ``python benchmarks/baselines.py [--n-phase 8] [--n-sr 8]`` (about 1–2 min on 2 CPU cores).

Test set: the simulators with default settings, item k drawn from
``np.random.SeedSequence(TEST_SEED_PHASE or TEST_SEED_SR).spawn(n)[k]`` (the ``write_dataset`` rule).
Seeds ≥ 10 000 are reserved for evaluation — never train on them.

Phase: 256² pairs, d = 2 µm, photos and procedural cells, noise-free (``noise_max=0``) and noisy
(``noise_max=0.2``, the training noise).  Metrics after removing each phase's mean: MAE in rad (and on
CVDM's normalised scale y = 2φ/3.5 − 1, i.e. × 2/3.5) and MS-SSIM with ``data_range = 3.5`` rad.
SR: WF 128² → SIM 256², photons log-uniform in 15–600 per frame; PSNR and MS-SSIM after per-image
min–max normalisation (DL-SR convention) and decorrelation resolution in nm.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_cvdm.evaluation.metrics import decorrelation_resolution, mae, ms_ssim, psnr
from napari_cvdm.evaluation.quality import TEST_SEED_PHASE, TEST_SEED_SR, held_out_rngs
from napari_cvdm.physics import (
    STRUCTURES,
    PhaseSimulation,
    SRSimulation,
    bicubic_upsample,
    richardson_lucy,
    simulate_phase_pair,
    simulate_sr_pair,
    tie_fft,
    us_tie,
)
from napari_cvdm.physics.baselines import DEFAULT_TIE_ALPHA, DEFAULT_US_TIE_ALPHA


def phase_table(n: int, size: int = 256) -> str:
    lines = [
        "| source | noise | method | MAE (rad) | MAE × 2/3.5 | MS-SSIM | US-TIE iterations |",
        "|---|---|---|---|---|---|---|",
    ]
    for noise in (0.0, 0.2):
        for source in ("photos", "cells"):
            s = PhaseSimulation(source=source, noise_max=noise)
            rows: dict[str, list[tuple[float, float]]] = {"TIE": [], "US-TIE": []}
            iters = []
            for rng in held_out_rngs(TEST_SEED_PHASE + (source == "cells"), n):
                stack, phase, _ = simulate_phase_pair(s, size, rng)
                truth = phase - phase.mean()
                args = (stack, s.defocus_um, s.wavelength_um, s.pixel_um)
                us, info = us_tie(*args, return_info=True)
                iters.append(info["iterations"])
                for name, est in (("TIE", tie_fft(*args)), ("US-TIE", us)):
                    rows[name].append((mae(est, truth), ms_ssim(est, truth, data_range=s.max_phase_rad)))
            for name, vals in rows.items():
                m, ss = np.mean(vals, axis=0)
                it = f"{np.mean(iters):.1f}" if name == "US-TIE" else ""
                label = "none" if noise == 0 else f"ξ ~ U(0, {noise})"
                lines.append(f"| {source} | {label} | {name} | {m:.3f} | {m * 2 / 3.5:.3f} | {ss:.3f} | {it} |")
    return "\n".join(lines)


def sr_table(n: int, size: int = 128) -> str:
    lines = [
        "| structure | method | PSNR (dB) | MS-SSIM | resolution (nm) |",
        "|---|---|---|---|---|",
    ]
    for j, kind in enumerate(STRUCTURES):
        s = SRSimulation(structure=kind)
        vals: dict[str, list[tuple[float, float, float]]] = {"bicubic": [], "Richardson–Lucy (20 it.)": []}
        res_wf, res_gt = [], []
        for rng in held_out_rngs(TEST_SEED_SR + 10 * j, n):
            wf, sim, _ = simulate_sr_pair(s, size, rng)
            res_wf.append(decorrelation_resolution(wf, s.wf_pixel_um * 1000))
            res_gt.append(decorrelation_resolution(sim, s.sim_pixel_um * 1000))
            for name, est in (
                ("bicubic", bicubic_upsample(wf, 2)),
                ("Richardson–Lucy (20 it.)", richardson_lucy(wf, 2, s, iterations=20)),
            ):
                vals[name].append(
                    (
                        psnr(est, sim, normalize="minmax"),
                        ms_ssim(est, sim, normalize="minmax"),
                        decorrelation_resolution(est, s.sim_pixel_um * 1000),
                    )
                )
        lines.append(f"| {kind} | WF input | – | – | {np.nanmean(res_wf):.0f} |")
        for name, v in vals.items():
            p, m, r = np.nanmean(v, axis=0)
            lines.append(f"| {kind} | {name} | {p:.2f} | {m:.3f} | {r:.0f} |")
        lines.append(f"| {kind} | SIM target | ∞ | 1 | {np.nanmean(res_gt):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-phase", type=int, default=8, help="pairs per source and noise level")
    parser.add_argument("--n-sr", type=int, default=8, help="pairs per structure family")
    args = parser.parse_args()
    t0 = time.perf_counter()
    print(
        f"### Phase retrieval (256², n = {args.n_phase} per row; TIE α = {DEFAULT_TIE_ALPHA:g}, "
        f"US-TIE α = {DEFAULT_US_TIE_ALPHA:g}, ≤ 50 iterations)\n"
    )
    print(phase_table(args.n_phase))
    print(f"\n### Super-resolution (WF 128² → SIM 256², n = {args.n_sr} per structure)\n")
    print(sr_table(args.n_sr))
    print(f"\n_{time.perf_counter() - t0:.0f} s_")


if __name__ == "__main__":
    main()
