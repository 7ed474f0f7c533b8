"""What makes the spread itself better, not only its rescaling: samples vs steps, stochastic vs deterministic.

For each sampler configuration (samples N, steps, η) of a bundled model: calibrate on the simulated calibration
pairs (``evaluation.calibrate``, seeds 20 000+), then score on the bench's held-out pairs (seeds 10 000+):

* coverage of the calibrated 90 % interval and err²/σ² after calibration (both ≈ what the calibration promises
  when the calibration transfers from one seed range to the other);
* Spearman(calibrated std, |err|) per image, averaged: does the std point at the wrong pixels?  (A monotone
  calibration map cannot change it; smoothing can.);
* the mean half-width of the 90 % interval in the metric's units (sharpness: at equal coverage, narrower is better)
  and the Gaussian negative log-likelihood per pixel (calibration and sharpness in one number, lower is better);
* the network evaluations per image (N × steps), the cost.

Usage (one thread; SR about 6 min per configuration, phase about 12, on one core of a 2-core VM)::

    OMP_NUM_THREADS=1 python benchmarks/uncertainty_levers.py --task sr --n-cal 8 --n-test 8 \
        --configs 8x10x1 16x5x1 4x20x1 8x10x0 --out runs/levers_sr.json

A configuration is ``NxSTEPSxETA``; η = 0 uses the model's LD3-learned grid where it has one for those steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from napari_cvdm._runtime import drive
from napari_cvdm.evaluation.calibrate import (
    SamplerSetting,
    iter_calibrate,
    network_scale,
    network_units_error,
    simulated_calibration_pairs,
    with_calibrations,
)
from napari_cvdm.evaluation.metrics import spearman
from napari_cvdm.evaluation.quality import TEST_SEED_SR, held_out_rngs, phase_cases
from napari_cvdm.inference.reconstruct import reconstruct
from napari_cvdm.model.files import TrainedModel
from napari_cvdm.physics import STRUCTURES, SRSimulation, simulate_phase_pair, simulate_sr_pair
from napari_cvdm.registry import load_model


def test_pairs(task: str, n: int) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The bench's held-out pairs: SR ``n`` per structure family in turn, phase ``n`` per case in turn."""
    pairs = []
    if task == "super-resolution":
        rngs = {kind: held_out_rngs(TEST_SEED_SR + 10 * j, n) for j, kind in enumerate(STRUCTURES)}
        for k in range(n):
            kind = STRUCTURES[k % len(STRUCTURES)]
            wf, sim, _ = simulate_sr_pair(SRSimulation(structure=kind), 128, rngs[kind][k])
            pairs.append((wf, sim, kind))
        return pairs
    cases = phase_cases(n)
    for k in range(n):
        label, settings, rngs = cases[k % len(cases)]
        stack, phase, _ = simulate_phase_pair(settings, 256, rngs[k])
        pairs.append((stack, phase, label))
    return pairs


def score(model: TrainedModel, pairs, n_samples: int, steps: int, eta: float) -> dict[str, float]:
    cover, ratio_num, ratio_den, rho, width, nll = [], [], [], [], [], []
    for k, (image, truth, _) in enumerate(pairs):
        result = reconstruct(model, image, n_samples=n_samples, steps=steps, eta=eta, seed=k, device="cpu")
        _, err = network_units_error(result, image, truth, model.info)
        scale = network_scale(image, model.info)
        sigma, half = result.calibrated_std / scale, (result.upper - result.mean) / scale
        cover.append(float(np.mean(np.abs(err) <= half)))
        ratio_num.append(float(np.mean(err**2)))
        ratio_den.append(float(np.mean(sigma**2)))
        rho.append(spearman(sigma, np.abs(err)))
        width.append(float(np.mean(half)))
        nll.append(float(np.mean(np.log(sigma) + 0.5 * (err / sigma) ** 2 + 0.5 * np.log(2 * np.pi))))
    return {
        "coverage_90": float(np.mean(cover)),
        "err2_over_sigma2": float(np.sum(ratio_num) / np.sum(ratio_den)),
        "spearman": float(np.nanmean(rho)),
        "half_width_90": float(np.mean(width)),
        "nll": float(np.mean(nll)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=["sr", "phase"], required=True)
    parser.add_argument("--model", help="model name or file (default: the bundled model of the task)")
    parser.add_argument("--n-cal", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--configs", nargs="+", default=["8x10x1", "16x5x1", "4x20x1", "8x10x0"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    task = "super-resolution" if args.task == "sr" else "phase"
    model = load_model(args.model or ("cvdm-sr-widefield" if args.task == "sr" else "cvdm-phase-twoshot"))
    held_out = simulated_calibration_pairs(task, args.n_cal)
    cal_pairs, about = held_out.pairs, held_out.about
    tests = test_pairs(task, args.n_test)
    rows = json.loads(args.out.read_text()) if args.out.exists() else {}
    for config in args.configs:
        if config in rows:
            continue
        n, steps, eta = config.split("x")
        n_samples, steps_i, eta_f = int(n), int(steps), float(eta)
        start = time.perf_counter()
        setting = SamplerSetting(steps=steps_i, eta=eta_f)
        cals = drive(iter_calibrate(model, cal_pairs, [setting], n_samples=n_samples, data=about, device="cpu"))
        calibrated = TrainedModel(model.network, with_calibrations(model.info, cals), model.source)
        row = score(calibrated, tests, n_samples, steps_i, eta_f)
        row |= {"nfe_per_image": n_samples * steps_i, "seconds": round(time.perf_counter() - start, 1)}
        row |= {"smoothing_px": cals[0].smoothing_px, "z90": cals[0].interval_z["0.9"]}
        rows[config] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
        print(config, row, flush=True)


if __name__ == "__main__":
    main()
