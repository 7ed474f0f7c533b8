"""``napari-cvdm bench``: the default models against the classical baselines on a fixed held-out simulated set.

The held-out set is regenerated from seeds ≥ 10 000, which training never uses (training sets use
``SeedSequence(simulate_seed)`` with small seeds).  Phase: 256² pairs, d = 2 µm, photos and procedural cells, with
and without the training noise, plus ``skimage.data.cell()`` — a real quantitative phase image that is reserved for
evaluation — propagated with our simulator.  SR: WF 128² → SIM 256² for each structure family, photons
log-uniform in 15–600.  Metrics: :mod:`napari_cvdm.metrics` (phase: mean removed, MAE in rad, MS-SSIM with
data_range 3.5 rad; SR: per-image min–max normalisation as DL-SR, PSNR, MS-SSIM, decorrelation resolution in nm
and the FRC resolution against the SIM truth in nm, which amplified noise cannot improve).
Uncertainty, in the metric's units: Spearman rank correlation between the pixel-wise standard deviation and the
absolute error of the mean (does the std map point at the wrong pixels?), the calibration ratio mean(err²)/mean(var)
(≈ 1 + 1/N for N calibrated samples; larger: overconfident), and, over all test images of a task, Spearman between
each image's mean std and its RMSE (does the model know which images it gets wrong?).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .device import describe_device
from .metrics import calibration_ratio, decorrelation_resolution, frc_resolution, mae, ms_ssim, psnr
from .model.files import TrainedModel
from .physics import (
    STRUCTURES,
    PhaseSimulation,
    SRSimulation,
    bicubic_upsample,
    richardson_lucy,
    simulate_phase_pair,
    simulate_sr_pair,
    tie_fft,
    two_shot,
    us_tie,
)
from .predict import reconstruct

TEST_SEED_PHASE = 10_000
TEST_SEED_SR = 10_001


@dataclass
class Example:
    """One test image with everything needed for a figure row."""

    label: str
    panels: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        header = [cell.replace("|", "\\|") for cell in self.header]  # e.g. |err| must not split a column
        lines = [f"### {self.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in self.rows]
        lines += ["", *self.notes] if self.notes else []
        return "\n".join(lines)


@dataclass
class Uncertainty:
    """Per-image uncertainty scores of one row of a benchmark, and the (mean std, RMSE) of every image for the
    task-wide image ranking."""

    spearman: list[float] = field(default_factory=list)
    calibration: list[float] = field(default_factory=list)
    per_image: list[tuple[float, float]] = field(default_factory=list)

    def add(self, error: np.ndarray, variance: np.ndarray) -> None:
        std = np.sqrt(variance)
        self.spearman.append(spearman(std, np.abs(error)))
        self.calibration.append(calibration_ratio(error, variance))
        self.per_image.append((float(std.mean()), float(np.sqrt(np.mean(np.square(error))))))

    def cells(self) -> list[str]:
        return [_fmt(self.spearman), _fmt(self.calibration, 2)]


def image_ranking_note(rows: list[Uncertainty], n_samples: int) -> list[str]:
    """One sentence: Spearman over all test images between mean std and RMSE, and the ideal calibration ratio."""
    pairs = [p for row in rows for p in row.per_image]
    if len(pairs) < 3:
        return []
    std, rmse = np.array(pairs).T
    return [
        f"Over all {len(pairs)} test images, Spearman(image's mean std, image's RMSE) = {spearman(std, rmse):.2f}. "
        f"A calibrated {n_samples}-sample mean has err²/var ≈ {1 + 1 / n_samples:.2f}."
    ]


def _rngs(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(n)]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; NaN (undefined) when either is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def _fmt(values: list[float], digits: int = 3) -> str:
    return f"{np.nanmean(values):.{digits}f}" if values else "–"


def phase_cases(n: int) -> list[tuple[str, PhaseSimulation, list[np.random.Generator]]]:
    cases = []
    for noise in (0.0, 0.2):
        for j, source in enumerate(("photos", "cells")):
            label = f"{source}, {'noise-free' if noise == 0 else 'noisy ξ~U(0,0.2)'}"
            cases.append((label, PhaseSimulation(source=source, noise_max=noise), _rngs(TEST_SEED_PHASE + j, n)))
    return cases


def real_cell_pair(settings: PhaseSimulation, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``skimage.data.cell()`` (a real quantitative phase image) scaled to ≤ 3.5 rad and propagated to ±d."""
    from skimage import data

    cell = data.cell().astype(np.float64)[:size, :size]
    phase = settings.max_phase_rad * (cell - cell.min()) / (cell.max() - cell.min())
    stack = two_shot(np.exp(1j * phase), settings.defocus_um, settings.wavelength_um, settings.pixel_um)
    return stack.astype(np.float32), phase.astype(np.float32)


def phase_benchmark(
    model: TrainedModel | None, n: int, n_samples: int, steps: int | None, log: Callable[[str], None] = print
) -> Table:
    header = ["test images", "method", "MAE (rad) ↓", "MS-SSIM ↑", "Spearman(std, |err|) ↑", "err²/var"]
    table = Table(f"Phase retrieval, 256², d = 2 µm (n = {n} per row)", header)
    cases = phase_cases(n)
    cases.append(("skimage cell() (real QPI), noise-free", PhaseSimulation(noise_max=0.0), [None]))
    uncertainty: list[Uncertainty] = []
    for label, settings, rngs in cases:
        scores: dict[str, list[tuple[float, float]]] = {"TIE": [], "US-TIE": [], "CVDM": []}
        row = Uncertainty()
        uncertainty.append(row)
        for k, rng in enumerate(rngs):
            stack, phase = real_cell_pair(settings) if rng is None else simulate_phase_pair(settings, 256, rng)[:2]
            truth = phase - phase.mean()
            args = (stack, settings.defocus_um, settings.wavelength_um, settings.pixel_um)
            estimates = {"TIE": tie_fft(*args), "US-TIE": us_tie(*args)}
            if model is not None:
                result = reconstruct(model, stack, n_samples=n_samples, steps=steps, seed=k)
                estimates["CVDM"] = result.mean - result.mean.mean()
                row.add(estimates["CVDM"] - truth, result.variance)
                if k == 0:
                    table.examples.append(
                        Example(
                            label,
                            {
                                "I(−d)": stack[0],
                                "US-TIE": estimates["US-TIE"],
                                "CVDM mean": estimates["CVDM"],
                                "CVDM std": result.std,
                                "∫β": result.beta_map,
                                "truth": truth,
                            },
                        )
                    )
            for name, est in estimates.items():
                scores[name].append((mae(est, truth), ms_ssim(est, truth, data_range=settings.max_phase_rad)))
        for name, vals in scores.items():
            if vals:
                m, s = np.mean(vals, axis=0)
                cells = row.cells() if name == "CVDM" else ["", ""]
                table.rows.append([label, name, f"{m:.3f}", f"{s:.3f}", *cells])
        log(f"phase: {label} done")
    if model is not None:
        table.notes = image_ranking_note(uncertainty, n_samples)
    return table


def sr_benchmark(
    model: TrainedModel | None, n: int, n_samples: int, steps: int | None, log: Callable[[str], None] = print
) -> Table:
    header = [
        "structure",
        "method",
        "PSNR (dB) ↑",
        "MS-SSIM ↑",
        "decorr. res. (nm) ↓",
        "FRC res. vs truth (nm) ↓",
        "Spearman(std, |err|) ↑",
        "err²/var",
    ]
    table = Table(f"Super-resolution, WF 128² → SIM 256² (n = {n} per structure)", header)
    uncertainty: list[Uncertainty] = []
    for j, kind in enumerate(STRUCTURES):
        settings = SRSimulation(structure=kind)
        px_nm = settings.sim_pixel_um * 1000
        scores: dict[str, list[tuple[float, ...]]] = {"bicubic": [], "Richardson–Lucy": [], "CVDM": []}
        res_gt: list[float] = []
        row = Uncertainty()
        uncertainty.append(row)
        for k, rng in enumerate(_rngs(TEST_SEED_SR + 10 * j, n)):
            wf, sim, _ = simulate_sr_pair(settings, 128, rng)
            res_gt.append(decorrelation_resolution(sim, px_nm))
            estimates = {
                "bicubic": bicubic_upsample(wf, 2),
                "Richardson–Lucy": richardson_lucy(wf, 2, settings, iterations=20),
            }
            if model is not None:
                result = reconstruct(model, wf, n_samples=n_samples, steps=steps, seed=k)
                estimates["CVDM"] = result.mean
                lo, hi = float(sim.min()), float(sim.max())
                scale = float(np.ptp(result.mean)) or 1.0  # the metric's min–max units, for error and variance
                err = (result.mean - result.mean.min()) / scale - (sim - lo) / (hi - lo)
                row.add(err, result.variance / scale**2)
                if k == 0:
                    table.examples.append(
                        Example(
                            kind,
                            {
                                "widefield": wf,
                                "Richardson–Lucy": estimates["Richardson–Lucy"],
                                "CVDM mean": result.mean,
                                "CVDM std": result.std,
                                "∫β": result.beta_map,
                                "SIM truth": sim,
                            },
                        )
                    )
            for name, est in estimates.items():
                scores[name].append(
                    (
                        psnr(est, sim, normalize="minmax"),
                        ms_ssim(est, sim, normalize="minmax"),
                        decorrelation_resolution(est, px_nm),
                        frc_resolution(est, sim, px_nm),
                    )
                )
        for name, vals in scores.items():
            if vals:
                with warnings.catch_warnings():  # a column that is all NaN (no decorrelation peak) stays NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p, m, r, f = np.nanmean(vals, axis=0)
                cells = row.cells() if name == "CVDM" else ["", ""]
                table.rows.append([kind, name, f"{p:.2f}", f"{m:.3f}", f"{r:.0f}", f"{f:.0f}", *cells])
        table.rows.append([kind, "SIM truth", "∞", "1", f"{np.nanmean(res_gt):.0f}", "–", "", ""])
        log(f"sr: {kind} done")
    if model is not None:
        table.notes = image_ranking_note(uncertainty, n_samples)
    return table


def save_figure(table: Table, path: Path) -> Path | None:
    """Input / baseline / CVDM mean / std / ∫β / truth, one row per example (needs matplotlib)."""
    if not table.examples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(table.examples[0].panels)
    fig, axes = plt.subplots(len(table.examples), len(cols), figsize=(2.2 * len(cols), 2.3 * len(table.examples)))
    axes = np.atleast_2d(axes)
    for r, example in enumerate(table.examples):
        for c, name in enumerate(cols):
            ax = axes[r, c]
            img = example.panels[name]
            cmap = "magma" if name in ("CVDM std", "∫β") else "gray"
            ax.imshow(img, cmap=cmap, vmin=np.percentile(img, 0.5), vmax=np.percentile(img, 99.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(example.label, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def speed_benchmark(
    model: TrainedModel,
    sizes: tuple[int, ...] = (256, 512),
    n_samples: tuple[int, ...] = (8,),
    steps: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    repeats: int = 1,
    log: Callable[[str], None] = print,
) -> Table:
    """Seconds for each input size × number of samples, against the network's own forward time.

    With ``repeats`` > 1 the run and the floor are timed alternately that many times and the fastest of each is
    kept (the usual defence against a noisy shared machine).

    The floor is the time of exactly the denoiser calls the sampler makes (same batches, shapes, precision and
    memory layout) with nothing else: the ratio says how much the sampler (λ network, schedule, noise, statistics,
    tiling, copies) adds on top of the network.  "s per NFE per MP" is seconds per sample-evaluation per output
    megapixel: constant when the cost grows linearly with pixels and samples.
    """
    import time

    import torch

    from .device import default_precision, resolve_device, samples_per_call
    from .model.sampler import _autocast

    dev = resolve_device(device)
    prec = default_precision(dev) if precision == "auto" else precision
    net = model.network.to(dev).eval()
    header = ["input", "output", "samples", "NFE/sample", "seconds", "s per NFE per MP", "floor (s)", "ratio"]
    table = Table(f"Speed on {describe_device(dev)}, {prec}", header)
    rng = np.random.default_rng(0)
    layout = torch.channels_last if dev.type == "cpu" else torch.contiguous_format

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for size in sizes:
        shape = (2, size, size) if model.task == "phase" else (size, size)
        image = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        reconstruct(model, image[..., :64, :64], n_samples=1, steps=1, device=str(dev), precision=prec)  # warm-up
        for n in n_samples:
            c = net.config
            seconds, floor = float("inf"), float("inf")
            for _ in range(max(repeats, 1)):
                sync()
                start = time.perf_counter()
                result = reconstruct(model, image, n_samples=n, steps=steps, device=str(dev), precision=prec)
                sync()
                seconds = min(seconds, time.perf_counter() - start)
                out = result.mean.shape[-1]
                batch = samples_per_call(dev, out * out, n, c.widest)
                calls = [min(batch, n - k) for k in range(0, n, batch)]
                z = torch.randn(batch, c.out_channels, out, out, device=dev).contiguous(memory_format=layout)
                x = torch.randn(batch, c.cond_channels, out, out, device=dev).contiguous(memory_format=layout)
                g = (torch.rand_like(z) * 0.9 + 0.05).contiguous(memory_format=layout)
                with torch.no_grad(), _autocast(dev, prec):
                    sync()
                    start = time.perf_counter()
                    for b in calls:
                        for _ in range(result.nfe_per_sample):
                            net.predict_noise(z[:b], x[:b], g[:b])
                    sync()
                    floor = min(floor, time.perf_counter() - start)
            per = seconds / (result.nfe_per_sample * n) / (out * out / 1e6)
            table.rows.append(
                [
                    f"{size}²",
                    f"{out}²",
                    str(n),
                    str(result.nfe_per_sample),
                    f"{seconds:.3g}",
                    f"{per:.3g}",
                    f"{floor:.3g}",
                    f"{seconds / floor:.2f}",
                ]
            )
            log(f"speed: {size}², {n} samples: {seconds:.1f} s (network alone {floor:.1f} s)")
    return table
