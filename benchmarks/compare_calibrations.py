"""Several calibrations of one model's weights, scored on the same reconstructions of the bench's rows.

``napari-cvdm bench`` reconstructs every test image again for each model file; calibrations that share weights
(the same network refitted, e.g. with other score candidates) differ only in σ_cal, so this script reconstructs each
of the bench's images once (phase: its seven rows; SR: its six, the held-out microscopes told no optics as in the
bench), with the first file, and applies every file's calibration (the bin of the input's estimated noise or of the
run's PSF width, as ``reconstruct()`` picks it) to the same raw variance and mean.  The error bars are then compared
pixel for pixel, and the row-to-row differences are not diluted by sampling noise.  It checks that the first file's
σ_cal reproduces its own reconstruction's.

    OMP_NUM_THREADS=2 python benchmarks/compare_calibrations.py cvdm-phase-twoshot runs/phase_refit.cvdm --n 16
    OMP_NUM_THREADS=2 python benchmarks/compare_calibrations.py cvdm-sr-widefield runs/sr_refit.cvdm --n 16
    OMP_NUM_THREADS=2 python benchmarks/compare_calibrations.py runs/phase10.cvdm cvdm-phase-twoshot --steps 10
    OMP_NUM_THREADS=2 python benchmarks/compare_calibrations.py OLD NEW --n 12 --rows 'λd/p²'   # set-up rows only

Per row and file, in the units the spread describes (network units; the ratios do not depend on them):
Spearman(σ_cal, |err|), err²/σ_cal² as the mean of the images' ratios ± its standard error and pooled over the row's
pixels, and the coverage of the central 50 / 90 / 95 % intervals (mean ± standard error).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time

import numpy as np

from napari_cvdm.evaluation.calibrate import network_scale, network_units_error, network_units_mean
from napari_cvdm.evaluation.quality import bench_pairs
from napari_cvdm.evaluation.uncertainty_scores import CALIBRATED_LEVELS, Uncertainty, _fmt_se, run_calibration
from napari_cvdm.inference.reconstruct import Reconstruction, reconstruct
from napari_cvdm.model.files import TrainedModel
from napari_cvdm.registry import load_model
from napari_cvdm.sampling.calibration import error_std_factor, interval_multiplier, posterior_std


def calibrated(
    model: TrainedModel, result: Reconstruction, image: np.ndarray, n_samples: int
) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """σ_cal (network units) of ``result`` under ``model``'s calibration, and the half-widths of its central
    intervals."""
    cal = run_calibration(model, result, image)
    if cal is None:
        run = result.settings
        raise SystemExit(f"{model.info.name} holds no calibration for {run['method']}, η = {run['eta']:g}")
    scale = network_scale(image, model.info)
    mean = network_units_mean(result, image, model.info)
    sigma = error_std_factor(n_samples) * posterior_std(cal, result.variance / scale**2, mean)
    halves = {}
    for level in CALIBRATED_LEVELS:
        with contextlib.suppress(ValueError):
            halves[level] = interval_multiplier(cal, level) * sigma
    return sigma, halves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model names or .cvdm files with the same weights")
    ap.add_argument("--n", type=int, default=4, help="test images per row")
    ap.add_argument("--n-samples", type=int, default=8)
    ap.add_argument(
        "--steps",
        type=int,
        help="sampler steps (default: the first file's); a file without a calibration at these "
        "steps is scored with its nearest, as reconstruct() applies it",
    )
    ap.add_argument("--rows", help="only the rows whose label contains this text (e.g. 'λd/p²': the set-up rows)")
    args = ap.parse_args()
    models = [load_model(m) for m in args.models]
    first = models[0]
    if any(m.info.task != first.info.task for m in models):
        raise SystemExit("the files are for different tasks: compare calibrations of one model's weights")
    rows: list[tuple[str, list[Uncertainty]]] = []
    t0 = time.perf_counter()
    for label, images in itertools.groupby(bench_pairs(first.info.task, args.n), key=lambda pair: pair[0]):
        if args.rows and args.rows not in label:
            continue
        scores = [Uncertainty(args.n_samples) for _ in models]
        for k, (_, image, truth, told) in enumerate(images):
            result = reconstruct(first, image, n_samples=args.n_samples, seed=k, steps=args.steps, **told)
            variance, error = network_units_error(result, image, truth, first.info)
            for m, (model, row) in enumerate(zip(models, scores, strict=True)):
                sigma, halves = calibrated(model, result, image, args.n_samples)
                if m == 0 and result.calibrated_std is not None:
                    own = result.calibrated_std / network_scale(image, first.info)
                    np.testing.assert_allclose(sigma, own, rtol=1e-4, atol=1e-7)
                row.add(error, variance, sigma, halves)
        rows.append((label, scores))
        print(f"{label} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    levels = " / ".join(f"{round(100 * q)}" for q in CALIBRATED_LEVELS)
    print(f"\n| row | file | Spearman(σ_cal, \\|err\\|) | err²/σ_cal² | pooled | cal. {levels} % coverage |")
    print("|---|---|---|---|---|---|")
    for label, scores in rows:
        for name, row in zip(args.models, scores, strict=True):
            coverage = " / ".join(_fmt_se(row.cal_coverage[q]) for q in CALIBRATED_LEVELS)
            print(
                f"| {label} | {name} | {np.nanmean(row.cal_spearman):.3f} | {_fmt_se(row.cal_ratio)} | "
                f"{row.pooled_ratio():.2f} | {coverage} |"
            )
    for m, name in enumerate(args.models):
        mean_rank = np.nanmean([np.nanmean(scores[m].cal_spearman) for _, scores in rows])
        print(f"{name}: Spearman(σ_cal, |err|) averaged over the rows {mean_rank:.3f}")
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
