"""The image-border behaviour of the bundled models (docs/method.md, "Image borders").

1. ∫β on the outermost pixel rows/columns relative to the interior, on the bundled sample images, with the λ-U-Net
   applied to the image as it is and to the image mirrored by 8 pixels (then cropped).
2. What mirroring costs the SR mean: squared error to the SIM truth by distance from the edge, reconstructing the
   held-out CCP test images as they are and mirrored by 4 widefield pixels (8 output pixels, cropped afterwards).

Usage: ``python benchmarks/border_effects.py`` (about 2 min on one core).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import napari_cvdm as nc
from napari_cvdm.evaluation.quality import TEST_SEED_SR, held_out_rngs
from napari_cvdm.physics import STRUCTURES, SRSimulation, simulate_sr_pair
from napari_cvdm.sample_data import load_sample
from napari_cvdm.tasks import make_condition


def beta_edges() -> None:
    for name, sample in (("cvdm-sr-widefield", "widefield"), ("cvdm-phase-twoshot", "defocus-pair")):
        model = nc.load_model(name)
        cond, _ = make_condition(load_sample(sample)[0], model.info)
        for margin in (0, 8):
            with torch.no_grad():
                padded = F.pad(cond, (margin,) * 4, mode="reflect") if margin else cond
                beta = model.network.schedule.integrated_beta(model.network.schedule.lam(padded))[0, 0].numpy()
            if margin:
                beta = beta[margin:-margin, margin:-margin]
            inner = beta[8:-8, 8:-8].mean()
            edges = [beta[0], beta[-1], beta[:, 0], beta[:, -1]]
            print(f"{name}: mirror {margin} px → ∫β edge/interior", " ".join(f"{e.mean() / inner:.2f}" for e in edges))


def sr_mean_by_edge_distance(n: int = 4, margin_wf: int = 4) -> None:
    model = nc.load_model("cvdm-sr-widefield")
    j = list(STRUCTURES).index("ccps")
    size, dists = 256, (0, 1, 2, 3, 5, 8)
    idx = np.arange(size)
    dist = np.minimum(np.minimum(idx[:, None], idx[None, :]), np.minimum(idx[::-1][:, None], idx[::-1][None, :]))
    errors = {0: [], margin_wf: []}
    for k, rng in enumerate(held_out_rngs(TEST_SEED_SR + 10 * j, n)):
        wf, sim, _ = simulate_sr_pair(SRSimulation(structure="ccps"), 128, rng)
        for m in errors:
            image = np.pad(wf, m, mode="reflect") if m else wf
            mean = nc.reconstruct(model, image, n_samples=8, seed=k).mean
            if m:
                mean = mean[2 * m : -2 * m, 2 * m : -2 * m]
            err = ((mean - mean.min()) / np.ptp(mean) - (sim - sim.min()) / np.ptp(sim)) ** 2
            errors[m].append([err[dist == d].mean() for d in dists] + [err[dist >= 24].mean()])
    for m, rows in errors.items():
        print(
            f"SR CCPs, mirror {2 * m} output px: squared error by distance from the edge",
            " ".join(f"{d}px {v:.1e}" for d, v in zip([*dists, "≥24"], np.mean(rows, axis=0), strict=True)),
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    beta_edges()
    sr_mean_by_edge_distance()
