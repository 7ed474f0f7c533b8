"""The default models on microscopes they were not trained for: as is, resampled where exact, and adapted.

SR: widefield at 108 nm pixels, NA 1.45, λ_em 0.515 µm (PSF width 0.52× the model's in pixels); phase: λ·d/p² 3×
the model's (d = 6 µm instead of 2 µm; λ 0.521 µm, 0.21 µm pixels).  Test pairs are simulated from seeds 30 000+
(neither training, the bench nor the calibration uses them).  Rows: the classical baselines with the true optics,
the default model "as is" (run on the model's assumed optics, pixel_size_um=None: what happens when nobody says
otherwise), resampling (SR: only 'approximate' interpolation applies — undersampled, nothing exact; phase: the
exact resampling to the model's λ·d/p²), and the model adapted by `iter_adapt` (pairs simulated with these optics
and the first test input's noise, a short fine-tune, recalibration).  The noise: phase, ξ estimated from the first
test pair; SR, stated as `napari-cvdm adapt --photons --read-noise` would (the first test input's true foreground
photo-electrons and the simulator's read noise, 3 × 10 ADU × 0.6026 e⁻/ADU for its 9 summed frames), because 108 nm
at NA 1.45 is sampled coarser than Nyquist: its structure fills the whole spectrum and no noise-only band is left
for the estimate (adapt refuses to guess).  Metrics: SR PSNR and MS-SSIM
after per-image min–max (DL-SR convention); phase MAE (rad, mean removed) and PSNR over the truth's range;
coverage of the calibrated 90 % interval (— when the model is not calibrated for the sampler).

    python benchmarks/your_microscope.py --n 4 --n-samples 8 --adapt-steps 200 --adapt-pairs 24 --out runs/ym
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from napari_cvdm import load_model
from napari_cvdm._runtime import drive
from napari_cvdm.evaluation.calibrate import network_scale, network_units_error
from napari_cvdm.evaluation.metrics import mae, ms_ssim, psnr
from napari_cvdm.inference.reconstruct import iter_reconstruct
from napari_cvdm.physics import PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair
from napari_cvdm.physics.baselines import bicubic_upsample, richardson_lucy, tie_fft, us_tie
from napari_cvdm.physics.ranges import sr_pattern_spacing
from napari_cvdm.settings import ReconstructSettings, TrainSettings
from napari_cvdm.training.adapt import Microscope, iter_adapt

SEED = 30_000


def coverage(result, image, truth, info):
    """Fraction of pixels whose truth lies in the calibrated 90 % interval, the truth brought into the output's
    units as the calibration measures it (SR: the target normalised by its own percentiles, mapped with the
    input's; phase: up to a constant) — :func:`napari_cvdm.evaluation.calibrate.network_units_error`."""
    if result.lower is None:
        return None
    _, err = network_units_error(result, image, truth, info)
    t = result.mean - err * network_scale(image, info)
    return float(np.mean((t >= result.lower) & (t <= result.upper)))


def score(pred, truth, phase):
    if phase:
        p, t = pred - pred.mean(), truth - truth.mean()
        return {"MAE_rad": mae(p, t), "PSNR_dB": psnr(p, t, data_range=float(np.ptp(t)))}
    return {"PSNR_dB": psnr(pred, truth, normalize="minmax"), "MS-SSIM": ms_ssim(pred, truth, normalize="minmax")}


def run(model, image, n_samples, **optics):
    settings = ReconstructSettings(n_samples=n_samples, device="cpu", **optics)
    start = time.perf_counter()
    result = drive(iter_reconstruct(model, image, settings))
    return result, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--n-samples", type=int, default=8)
    ap.add_argument("--adapt-steps", type=int, default=200)
    ap.add_argument("--adapt-pairs", type=int, default=24)
    ap.add_argument("--task", choices=["sr", "phase", "both"], default="both")
    ap.add_argument("--out", default="runs/your_microscope")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, timing = [], {}
    rngs = [np.random.default_rng(c) for c in np.random.SeedSequence(SEED).spawn(args.n)]
    px, na, lam = 0.108, 1.45, 0.515
    sim = SRSimulation(na=na, wf_pixel_um=px, pattern_spacing_um=sr_pattern_spacing(na, lam, px))
    # the SR pairs are drawn first from each stream, for every --task: the phase pairs then come from the same
    # point of it, so --task phase scores the pairs --task both scores
    simulated = [simulate_sr_pair(sim, 128, rng) for rng in rngs]
    if args.task in ("sr", "both"):
        pairs = [s[:2] for s in simulated]
        photons = [s[2]["wf_foreground_photons"] for s in simulated]  # photo-electrons, 9 frames summed
        read_e = math.sqrt(sim.n_raw_frames) * sim.read_noise_counts * sim.gain_photons_per_count
        base = load_model("cvdm-sr-widefield")
        t0 = time.perf_counter()
        adapted = drive(iter_adapt(
            base, pairs[0][0], Microscope(px, lam, na), out / "sr-108nm.cvdm", name="sr-108nm-na1.45",
            n_pairs=args.adapt_pairs, size=128, photons=photons[0], read_noise_e=read_e,
            train=TrainSettings(steps=args.adapt_steps, batch_size=8, patch_size=64, val_fraction=0.25, device="cpu"),
        ))  # fmt: skip
        timing["sr_adapt_s"] = time.perf_counter() - t0
        print(json.dumps(timing), flush=True)
        timing["sr_adapt_noise"] = adapted.info.training["adapted"]["noise"]["note"]
        timing["sr_calibration"] = adapted.info.training.get("calibration", "")
        for k, (wf, truth) in enumerate(pairs):
            preds = {
                "bicubic": (bicubic_upsample(wf, 2), None),
                "Richardson–Lucy (true optics)": (richardson_lucy(wf, 2, sim, iterations=20), None),
            }
            r, s = run(base, wf, args.n_samples)
            preds["CVDM default, as is (model's optics assumed)"] = (r.mean, r)
            r2, _ = run(base, wf, args.n_samples, pixel_size_um=px, numerical_aperture=na, resample="approximate")
            # approximate: the output is on its own finer grid; bring it to the truth's grid for scoring
            from napari_cvdm.inference.optics import resample as rs

            zoom = truth.shape[0] / r2.mean.shape[0]
            preds["CVDM default, interpolated (own risk)"] = (rs(r2.mean, zoom, truth.shape), None)
            r3, _ = run(adapted, wf, args.n_samples, pixel_size_um=px, numerical_aperture=na)
            preds["CVDM adapted (napari-cvdm adapt)"] = (r3.mean, r3)
            res_info = {name: (adapted if "adapted" in name else base).info for name in preds}
            for name, (pred, res) in preds.items():
                cov = None if res is None else coverage(res, wf, truth, res_info[name])
                rows.append({
                    "task": "sr", "image": k, "photons": photons[k], "method": name, **score(pred, truth, False),
                    "coverage90": cov,
                })  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
            timing.setdefault("sr_reconstruct_s_per_image", s)
    if args.task in ("phase", "both"):
        lam, px, d = 0.521, 0.21, 6.0
        sim = PhaseSimulation(defocus_um=d)
        pairs = [simulate_phase_pair(sim, 256, rng)[:2] for rng in rngs]
        base = load_model("cvdm-phase-twoshot")
        t0 = time.perf_counter()
        adapted = drive(iter_adapt(
            base, pairs[0][0], Microscope(px, lam, None, d), out / "phase-d6.cvdm", name="phase-d6um",
            n_pairs=args.adapt_pairs, size=128,
            train=TrainSettings(steps=args.adapt_steps, batch_size=8, patch_size=64, val_fraction=0.25, device="cpu"),
        ))  # fmt: skip
        timing["phase_adapt_s"] = time.perf_counter() - t0
        print(json.dumps(timing), flush=True)
        timing["phase_adapt_noise"] = adapted.info.training["adapted"]["noise"]["note"]
        timing["phase_calibration"] = adapted.info.training.get("calibration", "")
        for k, (stack, truth) in enumerate(pairs):
            preds = {
                "FFT-TIE (true optics)": (tie_fft(stack, d, lam, px), None),
                "US-TIE (true optics)": (us_tie(stack, d, lam, px), None),
            }
            r, s = run(base, stack, args.n_samples)
            preds["CVDM default, as is (model's optics assumed)"] = (r.mean, r)
            r2, _ = run(base, stack, args.n_samples, defocus_um=d)
            preds["CVDM default, resampled to its λ·d/p² (exact)"] = (r2.mean, r2)
            r3, _ = run(adapted, stack, args.n_samples, defocus_um=d)
            preds["CVDM adapted (napari-cvdm adapt)"] = (r3.mean, r3)
            res_info = {name: (adapted if "adapted" in name else base).info for name in preds}
            for name, (pred, res) in preds.items():
                cov = None if res is None else coverage(res, stack, truth, res_info[name])
                row = {"task": "phase", "image": k, "method": name, **score(pred, truth, True), "coverage90": cov}
                rows.append(row)
                print(json.dumps(rows[-1]), flush=True)
            timing.setdefault("phase_reconstruct_s_per_image", s)
    (out / "rows.json").write_text(json.dumps({"rows": rows, "timing": timing}, indent=1))
    summary = {}
    for row in rows:
        key = (row["task"], row["method"])
        summary.setdefault(key, []).append(row)
    for (task, method), group in summary.items():
        cells = []
        for metric in ("PSNR_dB", "MS-SSIM", "MAE_rad", "coverage90"):
            vals = [g[metric] for g in group if g.get(metric) is not None]
            if vals:
                cells.append(f"{metric} {np.mean(vals):.3f}")
        print(f"{task} | {method} | " + " | ".join(cells))
    print(json.dumps(timing, indent=1))


if __name__ == "__main__":
    main()
