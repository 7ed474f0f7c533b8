"""Which score ranks a model's errors: the raw sample spread, the mean's local structure, the nearness to the
plane's edge, or the spread at two scales (``sampling/calibration_score.py``).

Reads a ``napari-cvdm calibrate --save-measurements`` file and prints, for each measured sampler setting:

* every score the calibration tries on all its images (pooled) and its cross-fitted negative log-likelihood per
  pixel (lower is better; a blend is kept only where it gains more than ``FEATURE_MIN_GAIN`` over the raw spread
  on each half and does not put the images' levels further off) and its out-of-half mean over the images of
  log²(mean(err²)/mean(σ²)) (the level; 0 when every image's error bars have the right size);
* the RMS error of the mean by distance to the plane's edge;
* Spearman(feature, |err|) per image, averaged, for the raw std, the structure (1 px) and the edge nearness;
* the held-out NLL of the raw spread at each smoothing;
* across images: the log–log slope of each image's RMS error against its RMS raw std (1: the error scales with the
  spread), the range of each image's mean(err²)/mean(σ_cal²) under the chosen calibration (and, where it blends a
  feature in, under the raw spread alone) and its Spearman correlation with the image's raw std, (where measured)
  its noise ξ and the RMS of its mean smoothed over 16 px — what the calibration leaves unexplained;
* where the file holds a condition (phase noise ξ, SR PSF width), the held-out likelihood of each number of bins
  (``calibration_bins.fit_binned_calibrations``) and the count chosen.

    napari-cvdm calibrate --model cvdm-phase-twoshot -o /tmp/phase.cvdm --save-measurements runs/phase.npz
    python benchmarks/calibration_scores.py runs/phase.npz --model cvdm-phase-twoshot
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_cvdm.cli.calibrate import load_measurements
from napari_cvdm.evaluation.metrics import spearman
from napari_cvdm.sampling.calibration import FEATURE_MIN_GAIN, error_std_factor, fit_calibration, posterior_std
from napari_cvdm.sampling.calibration_bins import BIN_MIN_GAIN, CONDITIONS, fit_binned_calibrations
from napari_cvdm.sampling.calibration_score import edge_distance, local_structure, smooth_variance

EDGE_BANDS = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10_000))  # px from the plane's edge


def describe(score) -> str:
    blend = "" if not score.blended else f" + {score.feature} (w {score.weight:g}, {score.width_px:g} px)"
    return f"raw std, smoothed {score.smoothing_px:g} px{blend}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("measurements", type=Path)
    ap.add_argument("--model", required=True, help="the model the file was measured with (name as registered)")
    args = ap.parse_args()
    measured, about = load_measurements(args.measurements, args.model)
    print(f"{args.measurements}: {about}")
    for m in measured:
        errors, variances, means = m["errors"], m["variances"], m["means"]
        print(f"\n{m['method']}, η = {m['eta']:g}, {m['steps']} steps, {m['n_samples']} samples, {len(errors)} images")
        report: list = []
        chosen = fit_calibration(variances, errors, m["n_samples"], m["method"], m["eta"], m["steps"], means=means,
                                 report=report)  # fmt: skip
        spread_best, spread_levels = min((nll, lv) for s, nll, lv in report if not s.blended)
        print(f"  chosen: {chosen.score_feature} (w {chosen.feature_weight:g}), smoothing {chosen.smoothing_px:g} px")
        print(f"  best raw-spread NLL {spread_best:.4f} per pixel, images' mean log² level {spread_levels:.3f}; the "
              f"best of each blend (NLL gain needed > {FEATURE_MIN_GAIN} on each half, level no larger):")  # fmt: skip
        for feature in ("structure", "border", "detail", "coarse"):
            tried = [(nll, lv, s) for s, nll, lv in report if s.feature == feature]
            if tried:
                nll, lv, s = min(tried, key=lambda t: t[0])
                print(f"    {describe(s)}: NLL {nll:.4f} (gain {spread_best - nll:+.4f}), level {lv:.3f}")
        by_smoothing = ", ".join(f"{s.smoothing_px:g} px {nll:.4f}" for s, nll, _ in report if not s.blended)
        print(f"  raw spread by smoothing, NLL per pixel: {by_smoothing}")
        across_images(chosen, variances, errors, means, m["n_samples"], m.get("noise_xi") or [])
        if chosen.feature_weight > 0 and means is not None:  # what the blend explained: ratios under the spread alone
            best = min((t for t in report if not t[0].blended), key=lambda t: t[1])[0]
            spread_only = fit_calibration(variances, errors, m["n_samples"], m["method"], m["eta"], m["steps"],
                                          smoothing_candidates=(best.smoothing_px,), feature_candidates=())  # fmt: skip
            print("  under the raw spread alone:", end="")
            across_images(spread_only, variances, errors, means, m["n_samples"], m.get("noise_xi") or [])
        err = np.stack(errors)
        distance = np.stack([edge_distance(np.shape(e)) for e in errors])
        rms = [np.sqrt(np.mean(err[(distance >= a) & (distance < b)] ** 2)) for a, b in EDGE_BANDS]
        bands = ", ".join(
            f"{a}–{b if b < 10_000 else '…'} px {r:.3f}" for (a, b), r in zip(EDGE_BANDS, rms, strict=True)
        )
        print(f"  RMS error by distance to the edge (network units): {bands}")
        ranks = {
            "raw std": [spearman(np.sqrt(v), np.abs(e)) for v, e in zip(variances, errors, strict=True)],
            "structure (1 px)": [
                spearman(local_structure(mu, 1.0), np.abs(e)) for mu, e in zip(means, errors, strict=True)
            ],
            "edge nearness": [spearman(-d, np.abs(e)) for d, e in zip(distance, errors, strict=True)],
        }
        print("  Spearman(·, |err|) per image, mean: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in ranks.items()))
        for condition in CONDITIONS:
            if m[condition]:
                counts: list = []
                cals = fit_binned_calibrations(variances, errors, m[condition], condition, m["n_samples"], m["method"],
                                               m["eta"], m["steps"], means=means, report=counts)  # fmt: skip
                tried = ", ".join(f"{c} bin{'s' if c > 1 else ''} {nll:.4f}" for c, nll in counts)
                print(f"  bins of {condition}, held-out NLL per pixel (each bin beyond the first must gain "
                      f"{BIN_MIN_GAIN}): {tried}; chosen: {max(1, len(cals) - 1)}")  # fmt: skip


def across_images(chosen, variances, errors, means, n_samples: int, noise_xi: list) -> None:
    """What differs between images: the error's power law in the spread, and the calibrated ratio's spread."""
    raw = np.array([np.sqrt(np.mean(v)) for v in variances])
    rmse = np.array([np.sqrt(np.mean(np.square(e))) for e in errors])
    slope = np.polyfit(np.log(raw), np.log(rmse), 1)[0]
    ratio = np.array(
        [
            np.mean(np.square(e)) / np.mean(np.square(posterior_std(chosen, v, mu) * error_std_factor(n_samples)))
            for v, e, mu in zip(variances, errors, means, strict=True)
        ]
    )
    line = (
        f"  across images: RMS error ∝ RMS raw std^{slope:.2f}; mean(err²)/mean(σ_cal²) per image "
        f"{ratio.min():.2f}–{ratio.max():.2f} (median {np.median(ratio):.2f}), Spearman with the raw std "
        f"{spearman(raw, ratio):.3f}"
    )
    if len(noise_xi) == len(ratio):
        line += f", with the noise ξ {spearman(np.array(noise_xi), ratio):.3f}"
    if means is not None:  # the object's low frequencies (the TIE's worst-determined band) and its overall size
        low = np.array([np.std(smooth_variance(np.asarray(mu, np.float64), 16.0)) for mu in means])
        line += f", with the RMS of the mean smoothed over 16 px {spearman(low, ratio):.3f}"
    print(line)


if __name__ == "__main__":
    main()
