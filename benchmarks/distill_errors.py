"""Where a distilled SR student differs from its teacher: the error of the implied ŷ₀ by time, and a 2×2 pattern.

    python benchmarks/distill_errors.py runs/distill/sr-distill.cvdm

1. On 8 patches of 4 held-out simulated pairs (WF 128² → SIM 256², seed 99), at t ∈ {0.05, 0.4, 0.8, 0.97}: the MSE
   of ŷ₀ = (z_t − √(1−γ)·ε̂)/√γ against the diffused target for teacher and student, with z_t from the forward
   process (the teacher's γ, which the student shares).
2. On 2 held-out pairs (seed 12345), 4 samples at 10 steps: the error of each mean (after a least-squares fit of
   gain and offset to the truth) relative to the truth's std, and its mean on each of the four pixel positions of
   a 2×2 cell of the output grid: a coarse-grid network's four output channels of one cell may disagree.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from napari_cvdm.inference.reconstruct import reconstruct
from napari_cvdm.model.cvdm import GAMMA_MAX, GAMMA_MIN
from napari_cvdm.model.files import load_model_file
from napari_cvdm.registry import load_model
from napari_cvdm.training import presets
from napari_cvdm.training.data import PairedDataset


def main(student_path: str, teacher_name: str = "cvdm-sr-widefield") -> None:
    torch.set_num_threads(1)
    teacher, student = load_model(teacher_name), load_model_file(student_path)
    x, y = presets.simulate_pairs("sr", 4, 128, 99)
    data = PairedDataset.from_arrays(x, y, teacher.info, input_pixel_um=teacher.info.input_pixel_um)
    cond, target = data.sample(8, 128, np.random.default_rng(0), augment=False)
    gen = torch.Generator().manual_seed(0)
    net = teacher.network
    print("| t | median γ | ŷ₀ MSE teacher | ŷ₀ MSE student |\n|---|---|---|---|")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y0, lam = net.to_diffused(target, cond), net.schedule.lam(cond).float()
        for t in (0.05, 0.4, 0.8, 0.97):
            gamma = net.schedule.at(lam, torch.full((8,), t)).gamma.clamp(GAMMA_MIN, GAMMA_MAX)
            noise = torch.randn(target.shape, generator=gen)
            z = gamma.sqrt() * y0 + (1 - gamma).sqrt() * noise
            mse = []
            for model in (teacher, student):
                eps = model.network.predict_noise(z, cond, gamma).float()
                mse.append(float((((z - (1 - gamma).sqrt() * eps) / gamma.sqrt() - y0) ** 2).mean()))
            print(f"| {t} | {float(gamma.median()):.3g} | {mse[0]:.4f} | {mse[1]:.4f} |")
    print("\n| pair | model | RMS error / std(truth) | mean error at the 4 positions of a 2×2 cell |")
    print("|---|---|---|---|")
    for k, (wf, sim) in enumerate(zip(*presets.simulate_pairs("sr", 2, 128, 12345), strict=True)):
        for name, model in (("teacher", teacher), ("student", student)):
            mean = np.asarray(reconstruct(model, wf, n_samples=4, steps=10).mean, np.float64)
            truth = sim.astype(np.float64)
            error = np.polyval(np.polyfit(mean.ravel(), truth.ravel(), 1), mean) - truth
            cell = [f"{error[i::2, j::2].mean():+.1f}" for i in (0, 1) for j in (0, 1)]
            print(f"| {k} | {name} | {np.sqrt((error**2).mean()) / truth.std():.3f} | {' '.join(cell)} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
