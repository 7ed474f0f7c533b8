"""Does the phase model's departure from its own classical estimate say where it errs?

The phase network is conditioned on a US-TIE (or FFT-TIE) estimate of the phase and corrects it. Where the
correction d = mean − TIE is large, the network either fixes what the TIE inversion got wrong (its low spatial
frequencies) or adds what the pair does not support. This script measures whether |d| — smoothed over L px, alone
or blended with the raw spread as s^(1−w)·|d|^w — ranks the error of the mean better than the shipped score (the
raw spread smoothed over 64 px) and whether a calibration fitted on it holds the images' levels.

``measure`` reconstructs the phase model's own held-out calibration pairs (``simulated_calibration_pairs``, the
pairs ``napari-cvdm calibrate`` uses; never ``skimage.data.cell()``) and keeps per pair the raw variance, the mean,
the truth and the TIE estimate (rad); run it in shards on several cores. ``analyse`` scores each candidate with
the calibration's own cross-fitted machinery (``fit_calibration`` on the candidate as the spread, 24 monotone
bins): out-of-half Gaussian NLL per pixel, out-of-half mean log²(mean(err²)/mean(σ²)) over the images, and the mean
over images of the pixel-wise Spearman(σ, |err|), as the bench reports it; and whether the departure follows the
TIE's own error or the mean's (pixel Spearman with each), with the mean's RMS error as a fraction of the TIE's.

    OMP_NUM_THREADS=1 python benchmarks/phase_tie_feature.py measure --steps 5 --shard 0/2 --out runs/tie5 &
    OMP_NUM_THREADS=1 python benchmarks/phase_tie_feature.py measure --steps 5 --shard 1/2 --out runs/tie5
    python benchmarks/phase_tie_feature.py analyse runs/tie5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def measure(args: argparse.Namespace) -> None:
    from napari_cvdm import load_model, reconstruct
    from napari_cvdm.evaluation.calibrate import simulated_calibration_pairs
    from napari_cvdm.tasks import tie_estimate

    model = load_model(args.model)
    info = model.info
    shard, shards = (int(v) for v in args.shard.split("/"))
    pairs = simulated_calibration_pairs("phase", args.n).pairs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(shard, len(pairs), shards):
        path = out / f"pair_{k:03d}.npz"
        if path.exists():
            continue
        stack, truth = pairs[k]
        start = time.perf_counter()
        result = reconstruct(model, stack, n_samples=args.n_samples, steps=args.steps, seed=k)
        tie = tie_estimate(stack, info) * info.normalization.target_scale + info.normalization.target_offset
        np.savez_compressed(
            path, variance=result.variance, mean=result.mean, truth=np.asarray(truth, np.float32), tie=tie
        )
        print(f"pair {k}: {time.perf_counter() - start:.1f} s", flush=True)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def analyse(args: argparse.Namespace) -> None:
    from napari_cvdm.sampling.calibration import fit_calibration, posterior_std
    from napari_cvdm.sampling.calibration_score import smooth_variance

    files = sorted(Path(args.folder).glob("pair_*.npz"))
    data = [dict(np.load(f)) for f in files]
    errors, raw, disagreement = [], [], []
    for d in data:
        mean, truth, tie = d["mean"], d["truth"], d["tie"]
        errors.append(((mean - mean.mean()) - (truth - truth.mean())).astype(np.float64))
        raw.append(smooth_variance(d["variance"].astype(np.float64), 64.0))
        disagreement.append(((mean - mean.mean()) - (tie - tie.mean())).astype(np.float64) ** 2)
    rng = np.random.default_rng(0)
    pick = rng.choice(errors[0].size, size=min(20000, errors[0].size), replace=False)
    candidates: dict[str, list[np.ndarray]] = {"raw spread, 64 px (shipped)": raw}
    for width in args.widths:
        d2 = [smooth_variance(v, width) for v in disagreement]
        candidates[f"|mean − TIE|, {width:g} px"] = d2
        for w in args.weights:
            candidates[f"blend w {w:g}, {width:g} px"] = [s ** (1 - w) * q**w for s, q in zip(raw, d2, strict=True)]
    rows = []
    for name, variances in candidates.items():
        report: list = []
        calibration = fit_calibration(
            variances, errors, args.n_samples, "gamma", 1.0, args.steps,
            smoothing_candidates=(0.0,), feature_candidates=(), report=report,
        )  # fmt: skip
        _, nll, level = report[0]
        sigma = [posterior_std(calibration, v) for v in variances]
        pixel_rho = np.mean(
            [_spearman(s.ravel()[pick], np.abs(e).ravel()[pick]) for s, e in zip(sigma, errors, strict=True)]
        )
        image_rho = _spearman(np.array([np.mean(s**2) for s in sigma]), np.array([np.mean(e**2) for e in errors]))
        rows.append(
            {"score": name, "nll": nll, "level_log2": level, "pixel_spearman": pixel_rho, "image_spearman": image_rho}
        )
        print(f"| {name} | {nll:.3f} | {level:.3f} | {pixel_rho:.3f} | {image_rho:.3f} |", flush=True)
    follows_tie, follows_mean, rms_ratio = [], [], []
    for d in data:  # does the departure follow the TIE's error or the mean's?
        m, t, tie = (d[k] - d[k].mean() for k in ("mean", "truth", "tie"))
        departure = np.abs(m - tie).ravel()[pick]
        follows_tie.append(_spearman(departure, np.abs(tie - t).ravel()[pick]))
        follows_mean.append(_spearman(departure, np.abs(m - t).ravel()[pick]))
        rms_ratio.append(float(np.sqrt(np.mean((m - t) ** 2) / np.mean((tie - t) ** 2))))
    tie_row = {
        "spearman_departure_tie_error": float(np.mean(follows_tie)),
        "spearman_departure_mean_error": float(np.mean(follows_mean)),
        "rms_error_mean_over_tie_p10_p50_p90": [float(v) for v in np.percentile(rms_ratio, [10, 50, 90])],
    }
    print(tie_row)
    summary = {"images": len(files), "rows": rows, "departure": tie_row}
    (Path(args.folder) / "analysis.json").write_text(json.dumps(summary, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--model", default="cvdm-phase-twoshot")
    m.add_argument("--n", type=int, default=48)
    m.add_argument("--steps", type=int, default=20)
    m.add_argument("--n-samples", type=int, default=8)
    m.add_argument("--shard", default="0/1", help="k/m: pairs k, k+m, k+2m, …")
    m.add_argument("--out", required=True)
    a = sub.add_parser("analyse")
    a.add_argument("folder")
    a.add_argument("--steps", type=int, default=20)
    a.add_argument("--n-samples", type=int, default=8)
    a.add_argument("--widths", type=float, nargs="+", default=[4.0, 16.0, 64.0])
    a.add_argument("--weights", type=float, nargs="+", default=[0.5])
    args = parser.parse_args()
    measure(args) if args.command == "measure" else analyse(args)


if __name__ == "__main__":
    main()
