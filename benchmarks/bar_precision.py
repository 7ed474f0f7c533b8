"""How precisely does a bench row of n images measure the calibration bars?

``napari-cvdm bench`` scores each row's calibrated uncertainty as the mean over its images of err²/σ_cal² and of
the calibrated interval coverage; issue #16's bars ask 0.8–1.3 and 85–95 % of every row.  One image's pixels
share one draw of its error field (for phase a smooth, low-frequency field), so a row's precision is set by its
number of images, not its pixels.  This script measures that precision on simulated sets like the calibration
pairs — each image scored by the bench's own
:class:`~napari_cvdm.evaluation.uncertainty_scores.Uncertainty` under the shipped calibrated std and the shipped
interval multipliers — and draws rows of n images from them with replacement:

* the set's own values (mean over all its images per source): how well the shipped calibration holds on data like
  its calibration data, measured on many images;
* for rows of n images: the standard deviation of a row's value, and how often a row lands inside each bar.

A model calibrated in bulk on such data can still miss a bar on a row of 4 images often: the probability is the
measured chance of a row inside the bar, not a property of the model alone.

Reads the sets of ``benchmarks/posterior_variance.py measure`` (the commands are in its docstring); for example::

    python benchmarks/bar_precision.py runs/pv/nominal.npz runs/pv/nominal_more.npz --n 4 16
    python benchmarks/bar_precision.py runs/pv/sr_nominal.npz --n 4 16

``--by-setup`` (phase sets of randomised set-ups, whose reconstructions were told them): err²/σ_cal² pooled over
the images by the stated λ·d/p² as a factor of the model's, per file, and the held-out negative log-likelihood of
calibrations per quantile bin of that factor against one pooled calibration (``fit_binned_calibrations``, the
raw variance smoothed over the shipped calibration's width; the product has no such condition, so the bins' ranges
are carried in the ``psf_factor`` field here, which only names them)::

    OMP_NUM_THREADS=2 python benchmarks/bar_precision.py runs/pv/random.npz runs/pv/random_more.npz --by-setup
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from posterior_variance import MODELS, shipped_calibration

from napari_cvdm.evaluation.uncertainty_scores import Uncertainty
from napari_cvdm.physics import STRUCTURES
from napari_cvdm.sampling.calibration import interval_multiplier
from napari_cvdm.sampling.calibration_bins import fit_binned_calibrations

RATIO_BAR, COVERAGE_BAR = (0.8, 1.3), (0.85, 0.95)
SETUP_EDGES = (0.5, 0.7, 0.9, 1.1, 1.4, 2.0)  # λ·d/p² over the model's: the randomised range in five bins


def source_of(task: str, label: str, index: int) -> str:
    """The source of pair ``index`` of a simulated set: phase sets take photos and cells in turn, nominal SR sets
    the structure families in turn (``evaluation.calibrate.simulated_calibration_pairs``); randomised SR sets are
    one source."""
    if task == "phase":
        return f"{label}: {('photos', 'cells')[index % 2]}"
    return f"{label}: {STRUCTURES[index % len(STRUCTURES)]}" if label == "nominal" else f"{label}: all"


def per_image_scores(files: list[Path]) -> tuple[str, dict[str, np.ndarray]]:
    """The task, and per source an (images, 2) array of each image's calibrated err²/σ_cal² and 90 % coverage,
    scored as the bench scores them under the shipped calibration's 90 % multiplier."""
    sets = []
    for path in files:
        with np.load(path) as data:
            sets.append({k: data[k] for k in ("task", "label", "index", "error", "variance", "sigma_cal", "n_samples")})
    task = str(sets[0]["task"])
    z90 = interval_multiplier(shipped_calibration(task), 0.9)
    scores: dict[str, list[tuple[float, float]]] = {}
    for data in sets:
        if str(data["task"]) != task:
            raise SystemExit("give measured sets of one task")
        for k in range(len(data["label"])):
            image = Uncertainty(int(data["n_samples"]))
            sigma = data["sigma_cal"][k]
            image.add(data["error"][k], data["variance"][k], sigma, {0.9: z90 * sigma})
            key = source_of(task, str(data["label"][k]), int(data["index"][k]))
            scores.setdefault(key, []).append((image.cal_ratio[0], image.cal_coverage[0.9][0]))
    return task, {key: np.asarray(v) for key, v in scores.items()}


def row_precision(values: np.ndarray, n: int, draws: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Rows of ``n`` images drawn with replacement from ``values`` (images, 2): the std of a row's mean ratio and
    coverage, and the share of rows inside each bar."""
    rng = np.random.default_rng(seed)
    rows = values[rng.integers(0, len(values), (draws, n))].mean(axis=1)
    ratio, coverage = rows[:, 0], rows[:, 1]
    return {
        "ratio_sd": float(ratio.std()),
        "coverage_sd": float(coverage.std()),
        "p_ratio": float(np.mean((ratio >= RATIO_BAR[0]) & (ratio <= RATIO_BAR[1]))),
        "p_coverage": float(np.mean((coverage >= COVERAGE_BAR[0]) & (coverage <= COVERAGE_BAR[1]))),
    }


def by_setup(files: list[Path]) -> None:
    """err²/σ_cal² pooled by stated set-up factor per file, and the held-out NLL of calibrations binned by it."""
    cal = shipped_calibration("phase")
    variances, errors, factors = [], [], []
    print("| file | " + " | ".join(f"{a:g}–{b:g}×" for a, b in itertools.pairwise(SETUP_EDGES)) + " |")
    print("|---|" + "---|" * (len(SETUP_EDGES) - 1))
    for path in files:
        with np.load(path) as data:
            if str(data["task"]) != "phase":
                raise SystemExit("--by-setup reads phase sets")
            factor = np.exp(data["condition"][:, 0])
            err2 = np.square(data["error"]).mean(axis=(1, 2))
            sigma2 = np.square(data["sigma_cal"]).mean(axis=(1, 2))
            variances += list(data["variance"].astype(np.float64))
            errors += list(data["error"].astype(np.float64))
        factors += factor.tolist()
        cells = []
        for a, b in itertools.pairwise(SETUP_EDGES):
            inside = (factor >= a) & (factor < b)
            cells.append(f"{err2[inside].sum() / sigma2[inside].sum():.2f} ({inside.sum()})" if inside.any() else "–")
        print(f"| {path.name} | {' | '.join(cells)} |")
    report: list[tuple[int, float]] = []
    fit_binned_calibrations(
        variances, errors, factors, "psf_factor", cal.n_samples, cal.method, cal.eta, cal.steps,
        smoothing_candidates=(cal.smoothing_px,), feature_candidates=(), report=report,
    )  # fmt: skip
    print("held-out NLL per pixel by number of set-up bins: " + ", ".join(f"{c}: {v:.3f}" for c, v in report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="sets of posterior_variance.py measure (one task)")
    parser.add_argument("--n", type=int, nargs="+", default=[4, 16], help="images per row")
    parser.add_argument("--by-setup", action="store_true", help="phase, randomised set-ups: by stated λ·d/p²")
    args = parser.parse_args()
    if args.by_setup:
        by_setup(args.files)
        return
    task, scores = per_image_scores(args.files)
    print(f"{MODELS[task]}, shipped calibration; rows of n images drawn with replacement from each source\n")
    head = " | ".join(f"n = {n}: sd ratio / coverage, P(in bar) ratio / coverage" for n in args.n)
    print(f"| source | images | err²/σ_cal² (5–95 % of images) | cal. 90 % coverage | {head} |")
    print("|---|---|---|---|" + "---|" * len(args.n))
    for key, values in sorted(scores.items()):
        cells = []
        for n in args.n:
            p = row_precision(values, n)
            cells.append(f"{p['ratio_sd']:.2f} / {p['coverage_sd']:.3f}, {p['p_ratio']:.2f} / {p['p_coverage']:.2f}")
        low, high = np.quantile(values[:, 0], [0.05, 0.95])
        means = f"{values[:, 0].mean():.2f} ({low:.2f}–{high:.2f}) | {values[:, 1].mean():.3f}"
        print(f"| {key} | {len(values)} | {means} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
