"""How the phase mean and its uncertainty depend on the number of samples N (docs/models.md, "Samples per image").

Each test image is reconstructed once with ``--max`` samples (default 32) and the model's default sampler; the
mean of every disjoint group of N samples (N = 1, 2, 4, …) is scored against the truth and the scores of the
groups are averaged.  So a row's spread between N values is the Monte-Carlo error of an N-sample mean, measured
on the same draws.  err²/var is 1 + 1/N for calibrated samples (metrics.calibration_ratio); here the variance is
that of the mean-removed samples, like the error (``napari-cvdm bench`` uses the reconstruction's variance layer,
which also contains the spread of the samples' unknowable constant offsets).

Images: the first ``--n`` held-out images of the benchmark's noise-free and noisy cell rows, and
``skimage.data.cell()`` (benchmark seeds, so they are images of ``napari-cvdm bench --task phase``).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/phase_samples.py [--model M] [--n 2] [--max 32]``
(about 5 min per image at 50 steps and 32 samples on one core of the development machine).
"""

from __future__ import annotations

import argparse

import numpy as np

import napari_cvdm as nc
from napari_cvdm.evaluation.nfe import score
from napari_cvdm.evaluation.quality import phase_cases, real_cell_pair
from napari_cvdm.inference.reconstruct import reconstruct
from napari_cvdm.physics import PhaseSimulation, simulate_phase_pair


def held_out_images(n: int) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(label, input stack, true phase, MS-SSIM data range in rad) of the study's images."""
    images = []
    for label, settings, rngs in phase_cases(n):
        if label.startswith("cells"):
            images += [(label, *simulate_phase_pair(settings, 256, rng)[:2], settings.max_phase_rad) for rng in rngs]
    real = PhaseSimulation(noise_max=0.0)
    return [*images, ("skimage cell()", *real_cell_pair(real), real.max_phase_rad)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cvdm-phase-twoshot")
    parser.add_argument("--n", type=int, default=2, help="images from each cell row")
    parser.add_argument("--max", type=int, default=32, help="samples per image (a power of 2)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    args = parser.parse_args()
    model = nc.load_model(args.model)
    groups = [2**k for k in range(int(np.log2(args.max)) + 1)]
    scores: dict[str, dict[int, list[tuple[float, float, float]]]] = {}
    for k, (label, stack, phase, data_range) in enumerate(held_out_images(args.n)):
        truth = phase - phase.mean()
        result = reconstruct(model, stack, n_samples=args.max, steps=args.steps, seed=k, keep_samples=True)
        samples = result.samples - result.samples.mean(axis=(-2, -1), keepdims=True)
        row = scores.setdefault(label, {})
        for n in groups:
            for start in range(0, args.max, n):
                group = samples[start : start + n]
                variance = group.var(0, ddof=1) if n > 1 else np.ones_like(group[0])  # (one sample: no spread)
                m = score("phase", group.mean(0), variance, truth, data_range)  # the NFE study's scoring
                ratio = m["calibration"] if n > 1 else float("nan")
                row.setdefault(n, []).append((m["mae"], m["ms_ssim"], ratio))
        print(f"{label}: image {k} done ({result.nfe_per_sample} steps)", flush=True)
    print("\n| test images | N | MAE (rad) ↓ | MS-SSIM ↑ | err²/var (calibrated: 1 + 1/N) |\n|---|---|---|---|---|")
    for label, row in scores.items():
        for n, values in row.items():
            m, s, c = np.mean(values, axis=0)
            ratio = "–" if n == 1 else f"{c:.2f} ({1 + 1 / n:.2f})"
            print(f"| {label} | {n} | {m:.3f} | {s:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
