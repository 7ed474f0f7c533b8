"""Write docs/figures/simulator_sr.png and docs/figures/simulator_phase.png.

Usage: ``python benchmarks/simulator_figures.py [--out docs/figures]`` (needs matplotlib; ~10 s).
Fixed seeds, so the figures are reproducible.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from napari_cvdm.physics import STRUCTURES, PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair


def _scalebar(ax, pixel_um: float, length_um: float, n: int) -> None:
    px = length_um / pixel_um
    ax.plot([n * 0.95 - px, n * 0.95], [n * 0.93, n * 0.93], color="w", lw=3)


def sr_figure(path: Path, size: int = 128) -> None:
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.4), constrained_layout=True)
    for j, kind in enumerate(STRUCTURES):
        s = SRSimulation(structure=kind, photons=(60.0, 60.0))
        wf, sim, info = simulate_sr_pair(s, size, np.random.default_rng(2024 + j))
        for i, (img, name, px) in enumerate(((wf, "WF", s.wf_pixel_um), (sim, "SIM (target)", s.sim_pixel_um))):
            ax = axes[i, j]
            lo, hi = np.percentile(img, (0.1, 99.9))
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            _scalebar(ax, px, 1.0, img.shape[0])
            ax.set_title(f"{kind} — {name}" if i == 0 else f"{name}, {px * 1000:.1f} nm px", fontsize=9)
            ax.axis("off")
        axes[0, j].text(2, 10, f"{info['photons_per_frame']:.0f} photons/frame", color="y", fontsize=8)
    fig.suptitle(f"Simulated widefield ({size}², 62.6 nm) → linear SIM ({2 * size}², 31.3 nm); bar 1 µm")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def phase_figure(path: Path, size: int = 256) -> None:
    rows = [("photos", 0.0, 77), ("photos", 0.2, 81), ("cells", 0.0, 79), ("cells", 0.2, 80)]
    fig, axes = plt.subplots(len(rows), 3, figsize=(9.2, 3.1 * len(rows)), constrained_layout=True)
    for i, (src, noise, seed) in enumerate(rows):
        s = PhaseSimulation(source=src, noise_max=noise)
        stack, phase, info = simulate_phase_pair(s, size, np.random.default_rng(seed))
        while info["noise_xi"] < 0.6 * noise:  # show a clearly noisy example
            seed += 1
            stack, phase, info = simulate_phase_pair(s, size, np.random.default_rng(seed))
        label = info.get("photo", "procedural cells")
        for j, (img, name) in enumerate(((stack[0], "I(−d)"), (stack[1], "I(+d)"), (phase, "phase (rad)"))):
            ax = axes[i, j]
            im = ax.imshow(img, cmap="gray" if j < 2 else "viridis")
            fig.colorbar(im, ax=ax, shrink=0.8)
            ax.set_title(f"{name} — {label}, ξ={info['noise_xi']:.2f}" if j == 0 else name, fontsize=9)
            ax.axis("off")
            if j == 2:
                _scalebar(ax, s.pixel_um, 10.0, size)
    fig.suptitle("Two-shot defocus pairs, λ = 0.521 µm, 0.21 µm px, d = 2 µm; bar 10 µm")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "figures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sr_figure(args.out / "simulator_sr.png")
    phase_figure(args.out / "simulator_phase.png")
    print(f"wrote {args.out / 'simulator_sr.png'} and {args.out / 'simulator_phase.png'}")


if __name__ == "__main__":
    main()
