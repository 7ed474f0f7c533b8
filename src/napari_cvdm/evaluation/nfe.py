"""``napari-cvdm bench --nfe``: quality and calibration of the default models against the number of network
evaluations (NFE) per sample, for each sampler.

Samplers: Algorithm 2 with the exact per-step decay (``ancestral``) and as printed in the paper
(``ancestral-euler``), the γ-sampler with DDPM posterior steps (η = 1) and its deterministic form (η = 0), both on
the log-SNR grid, and η = 0 on the model's LD3-learned grid where it has one.
Test images: 128² outputs from the held-out simulated set of :mod:`.quality` (one WF 64² → SIM 128² image
per SR structure family; phase: photos noisy, cells noise-free, and a crop of the real ``skimage.data.cell()``),
small so that 1 000+ NFE × 8 samples per image fit a CPU afternoon.  Per run: MS-SSIM and MAE of the mean
(SR: min–max normalised as in DL-SR; phase: rad, mean removed), Spearman(std, |err|), and the calibration ratio
mean(err²)/mean(var) — close to 1 + 1/N when the N-sample variance is calibrated, above it when overconfident.
Every finished run is appended to a JSON-lines file, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..inference.reconstruct import reconstruct
from ..model.files import TrainedModel
from ..physics import STRUCTURES, PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair
from .metrics import calibration_ratio, mae, ms_ssim, spearman
from .quality import TEST_SEED_PHASE, TEST_SEED_SR, held_out_rngs, real_cell_pair
from .report import Table

NFES = (5, 10, 20, 50, 100, 200)
SIZE = 128  # output side of the test images (pixels)
# name → (reconstruct options, NFE values it is run at)
VARIANTS: dict[str, tuple[dict, tuple[int, ...]]] = {
    "ancestral (Alg. 2, exact decay)": ({"method": "ancestral"}, NFES),
    "ancestral (Alg. 2 as printed)": ({"method": "ancestral-euler"}, NFES),
    "γ, η=1, log-SNR grid": ({"method": "gamma", "grid": "snr", "eta": 1.0}, NFES),
    "γ, η=0, log-SNR grid": ({"method": "gamma", "grid": "snr", "eta": 0.0}, (5, 10, 20, 50, 200)),
    "γ, η=0, LD3 grid": ({"method": "gamma", "grid": "learned", "eta": 0.0}, NFES),
}
# `bench --nfe --samplers …`: short names of the variants (the fp32 check runs with "gamma")
SAMPLER_KEYS = {
    "ancestral": "ancestral (Alg. 2, exact decay)",
    "ancestral-euler": "ancestral (Alg. 2 as printed)",
    "gamma": "γ, η=1, log-SNR grid",
    "gamma-eta0": "γ, η=0, log-SNR grid",
    "gamma-ld3": "γ, η=0, LD3 grid",
}
PRECISION_CHECK_NFE = (10, 20)  # the η=1 sampler is also run in fp32 at these NFE


def test_images(task: str) -> Iterator[tuple[str, np.ndarray, np.ndarray, float]]:
    """(label, input, truth, data range) of the study's held-out images."""
    if task == "sr":
        for j, kind in enumerate(STRUCTURES):
            rng = held_out_rngs(TEST_SEED_SR + 10 * j, 1)[0]
            wf, sim, _ = simulate_sr_pair(SRSimulation(structure=kind), SIZE // 2, rng)
            yield kind, wf, sim, 1.0
        return
    noisy = PhaseSimulation(source="photos", noise_max=0.2)
    stack, phase = simulate_phase_pair(noisy, SIZE, held_out_rngs(TEST_SEED_PHASE, 1)[0])[:2]
    yield "photos, noisy", stack, phase, noisy.max_phase_rad
    clean = PhaseSimulation(source="cells", noise_max=0.0)
    stack, phase = simulate_phase_pair(clean, SIZE, held_out_rngs(TEST_SEED_PHASE + 1, 1)[0])[:2]
    yield "cells, noise-free", stack, phase, clean.max_phase_rad
    stack, phase = real_cell_pair(clean, SIZE)
    yield "skimage cell()", stack, phase, clean.max_phase_rad


def score(task: str, mean: np.ndarray, variance: np.ndarray, truth: np.ndarray, data_range: float) -> dict:
    """MS-SSIM, MAE, Spearman(std, |err|) and mean(err²)/mean(var), in the benchmark's units."""
    if task == "sr":
        scale = float(np.ptp(mean)) or 1.0
        est = (mean - mean.min()) / scale
        ref = (truth - truth.min()) / (float(np.ptp(truth)) or 1.0)
        var = variance / scale**2
    else:
        est, ref, var = mean - mean.mean(), truth - truth.mean(), variance
    err = est - ref
    return {
        "ms_ssim": ms_ssim(est, ref, data_range=data_range),
        "mae": mae(est, ref),
        "spearman": spearman(np.sqrt(var), np.abs(err)),
        "calibration": calibration_ratio(err, var),
    }


def _runs(model: TrainedModel, samplers: tuple[str, ...] | None = None) -> list[tuple[str, dict, int]]:
    chosen = [SAMPLER_KEYS[key] for key in samplers] if samplers else list(VARIANTS)
    runs = []
    for name in chosen:
        options, nfes = VARIANTS[name]
        for nfe in nfes:
            if options.get("grid") == "learned" and nfe not in model.info.sampler.learned_grids:
                continue
            runs.append((name, options, nfe))
    for nfe in PRECISION_CHECK_NFE if samplers is None or "gamma" in samplers else ():
        runs.append(("γ, η=1, log-SNR grid, fp32", {**VARIANTS["γ, η=1, log-SNR grid"][0], "precision": "fp32"}, nfe))
    return runs


def run_study(
    model: TrainedModel,
    task: str,
    results: Path,
    n_samples: int = 8,
    log: Callable[[str], None] = print,
    samplers: tuple[str, ...] | None = None,
) -> list[dict]:
    """Run every (image, sampler, NFE) not yet in ``results`` (JSON lines) and return all records of ``task``.

    ``samplers``: keys of :data:`SAMPLER_KEYS` to run (None: all).
    """
    unknown = sorted(set(samplers or ()) - SAMPLER_KEYS.keys())
    if unknown:
        raise ValueError(f"unknown sampler(s) {unknown}; choose from {sorted(SAMPLER_KEYS)}")
    done = load_records(results)
    keys = {(r["task"], r["image"], r["sampler"], r["nfe"], r["n_samples"]) for r in done}
    results.parent.mkdir(parents=True, exist_ok=True)
    for label, image, truth, data_range in test_images(task):
        for name, options, nfe in _runs(model, samplers):
            if (task, label, name, nfe, n_samples) in keys:
                continue
            start = time.perf_counter()
            result = reconstruct(model, image, n_samples=n_samples, steps=nfe, seed=0, **options)
            record = {
                "task": task,
                "image": label,
                "sampler": name,
                "nfe": nfe,
                "n_samples": n_samples,
                "seconds": time.perf_counter() - start,
                **score(task, result.mean, result.variance, truth, data_range),
            }
            with results.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            done.append(record)
            log(f"nfe study: {task} {label} {name} NFE={nfe}: MS-SSIM {record['ms_ssim']:.4f}")
    return [r for r in done if r["task"] == task and r["n_samples"] == n_samples]


def load_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(records: list[dict], task: str) -> tuple[Table, dict[str, dict[str, int]]]:
    """Mean over images per (sampler, NFE), and per sampler two picks of the default NFE.

    ``"ms-ssim"``: the smallest NFE within 1 % MS-SSIM of the sampler's 200 NFE (the issue's rule).
    ``"ms-ssim+calibration"``: also with err²/var within 25 % of its 200-NFE value — few steps shrink the sample
    spread, and the uncertainty is the point of the product.
    """
    images = sorted({r["image"] for r in records})
    header = ["sampler", "NFE", "MS-SSIM ↑", "MAE ↓", "Spearman(std, |err|) ↑", "err²/var (≈1+1/N)"]
    table = Table(f"{task}: quality vs NFE (mean over {len(images)} held-out images: {'; '.join(images)})", header)
    picks: dict[str, dict[str, int]] = {}
    for name in dict.fromkeys(r["sampler"] for r in records):
        by_nfe: dict[int, list[dict]] = {}
        for r in records:
            if r["sampler"] == name:
                by_nfe.setdefault(r["nfe"], []).append(r)
        means = {nfe: {k: float(np.mean([r[k] for r in rs])) for k in _NUMERIC} for nfe, rs in by_nfe.items()}
        for nfe in sorted(means):
            m = means[nfe]
            table.rows.append(
                [
                    name,
                    str(nfe),
                    f"{m['ms_ssim']:.4f}",
                    f"{m['mae']:.4f}",
                    f"{m['spearman']:.2f}",
                    f"{m['calibration']:.2f}",
                ]
            )
        reference = _reference(records, name, means)
        if reference is None:
            continue
        good = [nfe for nfe, m in means.items() if m["ms_ssim"] >= 0.99 * reference["ms_ssim"]]
        calibrated = [n for n in good if means[n]["calibration"] <= 1.25 * reference["calibration"]]
        picks[name] = {"ms-ssim": min(good)} | ({"ms-ssim+calibration": min(calibrated)} if calibrated else {})
    return table, picks


_NUMERIC = ("ms_ssim", "mae", "spearman", "calibration", "seconds")


def _reference(records: list[dict], name: str, means: dict[int, dict]) -> dict[str, float] | None:
    """Scores at 200 NFE of this sampler (η=0 on a learned grid: of η=0 on the log-SNR grid, its teacher)."""
    if 200 in means:
        return means[200]
    teacher = [r for r in records if r["sampler"] == "γ, η=0, log-SNR grid" and r["nfe"] == 200]
    return {k: float(np.mean([r[k] for r in teacher])) for k in _NUMERIC} if teacher else None
