"""How far the ±10 % holds: the default models at their nominal optics and at the edges of their stated tolerance.

The bundled models were trained at one set of optics and state the nominal optics ±10 % in the quantity the network
sees (``ModelMetadata.covered_optics()``): SR the PSF width in input pixels (0.514·λ/(NA·p)), phase λ·d/p².  This
measures that claim on held-out simulated pairs:

* SR (``cvdm-sr-widefield``): nominal (62.6 nm pixels, λ_em 0.515 µm, NA 1.3), and the PSF width 0.9× and 1.1×
  reached two ways: by the camera pixel (69.6 nm, 56.9 nm) and by the emission wavelength (0.4635 µm, 0.5665 µm);
  the SIM truth follows the optics as in the bench's held-out microscopes (``evaluation.quality.sr_microscope``).
* phase (``cvdm-phase-twoshot``): nominal (λ 0.521 µm, 0.21 µm pixels, d = 2 µm), and λ·d/p² 0.9× and 1.1× by the
  defocus (d = 1.8, 2.2 µm); mixed photos and cells with the training noise ξ ~ U(0, 0.2).

Each model is run as a user runs it: with the true optics stated (``pixel_size_um``, ``wavelength_um``,
``numerical_aperture`` / ``defocus_um``), which the plan accepts as inside the range, at the model's default sampler
(calibrated).  Scores as ``napari-cvdm bench``: SR PSNR and MS-SSIM after per-image min–max against the SIM truth,
phase MAE (rad, mean removed) and MS-SSIM (data range 3.5 rad); the calibrated 90 % interval coverage and
err²/σ_cal² in network units (``evaluation.calibrate.network_units_error``; the bench's bars: coverage 85–95 %,
err²/σ_cal² 0.8–1.3), per image then averaged; and the better classical baseline with the true optics on the same
images (SR: bicubic or Richardson–Lucy by PSNR; phase: FFT-TIE or US-TIE by MAE).  Test pairs come from seeds
40 000 (SR) and 40 001 (phase), ``SeedSequence(seed).spawn(n)``, used nowhere else; every case of a task uses the
same generators, so the rows differ by the optics only.

    OMP_NUM_THREADS=1 python benchmarks/optics_tolerance.py --n 3 --n-samples 8 --out runs/tolerance
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_cvdm import load_model
from napari_cvdm._runtime import drive
from napari_cvdm.evaluation.calibrate import network_scale, network_units_error
from napari_cvdm.evaluation.metrics import half_width_coverage, mae, ms_ssim, psnr, std_calibration_ratio
from napari_cvdm.evaluation.quality import calibrated_interval, held_out_rngs, sr_microscope
from napari_cvdm.inference.optics import plan_optics
from napari_cvdm.inference.reconstruct import Reconstruction, iter_reconstruct
from napari_cvdm.model.files import TrainedModel
from napari_cvdm.physics import (
    PhaseSimulation,
    bicubic_upsample,
    richardson_lucy,
    simulate_phase_pair,
    simulate_sr_pair,
    tie_fft,
    us_tie,
)
from napari_cvdm.settings import ReconstructSettings

SEED_SR = 40_000
SEED_PHASE = 40_001
COVERAGE_BAR = (0.85, 0.95)
RATIO_BAR = (0.8, 1.3)
EDGE = 1e-6  # the edges are nudged this much inward, so rounding never puts them outside the stated range


def sr_cases() -> list[tuple[str, float, dict[str, float]]]:
    """(label, PSF width factor, optics) of the SR cases: nominal, then 0.9× and 1.1× by the pixel and by λ_em."""
    px, lam = 0.0626, 0.515
    cases = [("nominal (62.6 nm, λ 0.515 µm, NA 1.3)", 1.0, {})]
    for factor in (0.9, 1.1):
        f = factor * (1 + EDGE) if factor < 1 else factor * (1 - EDGE)
        pixel = px / f
        cases.append((f"pixel {pixel * 1000:.1f} nm", factor, {"wf_pixel_um": pixel}))
    for factor in (0.9, 1.1):
        f = factor * (1 + EDGE) if factor < 1 else factor * (1 - EDGE)
        cases.append((f"λ_em {lam * f:.4f} µm", factor, {"wavelength_um": lam * f}))
    return cases


def phase_cases() -> list[tuple[str, float, float]]:
    """(label, λ·d/p² factor, defocus d in µm) of the phase cases: nominal, 0.9× and 1.1× by the defocus."""
    cases = [("nominal (d = 2 µm)", 1.0, 2.0)]
    for factor in (0.9, 1.1):
        f = factor * (1 + EDGE) if factor < 1 else factor * (1 - EDGE)
        cases.append((f"d = {2.0 * f:.1f} µm", factor, 2.0 * f))
    return cases


def run(model: TrainedModel, image: np.ndarray, n_samples: int, seed: int, **optics: float) -> Reconstruction:
    """The model on ``image`` as a user runs it: the true optics stated, the model's default sampler."""
    settings = ReconstructSettings(n_samples=n_samples, seed=seed, device="cpu", **optics)
    plan = plan_optics(model.info, settings)
    if plan.action != "run":
        raise RuntimeError(f"the optics {optics} are not run as is ({plan.action}): {plan.record.get('note')}")
    return drive(iter_reconstruct(model, image, settings))


def uncertainty(model: TrainedModel, result: Reconstruction, image: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Calibrated 90 % coverage and err²/σ_cal² in network units (None when the model is not calibrated)."""
    _, err = network_units_error(result, image, truth, model.info)
    cal, halves = calibrated_interval(model, result)
    if cal is None or 0.9 not in halves:
        return {"coverage90": None, "err2_over_sigma2": None}
    scale = network_scale(image, model.info)
    return {
        "coverage90": half_width_coverage(err, halves[0.9] / scale),
        "err2_over_sigma2": std_calibration_ratio(err, cal / scale),
    }


def sr_rows(n: int, n_samples: int, size: int, log: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Every SR case × test image: scores, uncertainty, the noise verdict and the time; each row also to ``log``."""
    model = load_model("cvdm-sr-widefield")
    rows = []
    for label, factor, optics in sr_cases():
        settings = sr_microscope(**optics)
        stated = {
            "pixel_size_um": settings.wf_pixel_um,
            "wavelength_um": settings.wavelength_um,
            "numerical_aperture": settings.na,
        }
        for k, rng in enumerate(held_out_rngs(SEED_SR, n)):
            wf, sim, info = simulate_sr_pair(settings, size, rng)
            start = time.perf_counter()
            result = run(model, wf, n_samples, k, **stated)
            seconds = time.perf_counter() - start
            baselines = {
                "bicubic": bicubic_upsample(wf, 2),
                "Richardson–Lucy": richardson_lucy(wf, 2, settings, iterations=20),
            }
            scores = {
                name: {"PSNR_dB": psnr(p, sim, normalize="minmax"), "MS-SSIM": ms_ssim(p, sim, normalize="minmax")}
                for name, p in {"CVDM": result.mean, **baselines}.items()
            }
            rows.append(
                {
                    "task": "sr",
                    "case": label,
                    "factor": factor,
                    "image": k,
                    "structure": info["structure"],
                    "scores": scores,
                    **uncertainty(model, result, wf, sim),
                    "noise_check": result.optics.get("noise", {}).get("verdict"),
                    "action": result.optics.get("action"),
                    "seconds": seconds,
                }
            )
            log(rows[-1])
    return rows


def phase_rows(n: int, n_samples: int, size: int, log: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Every phase case × test image, as :func:`sr_rows`."""
    model = load_model("cvdm-phase-twoshot")
    rows = []
    for label, factor, d in phase_cases():
        settings = PhaseSimulation(source="mixed", defocus_um=d)
        for k, rng in enumerate(held_out_rngs(SEED_PHASE, n)):
            stack, phase, info = simulate_phase_pair(settings, size, rng)
            truth = phase - phase.mean()
            start = time.perf_counter()
            result = run(model, stack, n_samples, k, pixel_size_um=0.21, wavelength_um=0.521, defocus_um=d)
            seconds = time.perf_counter() - start
            args = (stack, d, settings.wavelength_um, settings.pixel_um)
            estimates = {"CVDM": result.mean - result.mean.mean(), "FFT-TIE": tie_fft(*args), "US-TIE": us_tie(*args)}
            scores = {
                name: {"MAE_rad": mae(p, truth), "MS-SSIM": ms_ssim(p, truth, data_range=settings.max_phase_rad)}
                for name, p in estimates.items()
            }
            rows.append(
                {
                    "task": "phase",
                    "case": label,
                    "factor": factor,
                    "image": k,
                    "source": info["source"],
                    "noise_xi": info["noise_xi"],
                    "scores": scores,
                    **uncertainty(model, result, stack, phase),
                    "noise_check": result.optics.get("noise", {}).get("verdict"),
                    "action": result.optics.get("action"),
                    "seconds": seconds,
                }
            )
            log(rows[-1])
    return rows


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (task, case): mean scores, the better baseline, and whether the uncertainty meets the bars."""
    out = []
    for key in dict.fromkeys((r["task"], r["case"]) for r in rows):
        group = [r for r in rows if (r["task"], r["case"]) == key]
        task = key[0]
        metric, better = ("PSNR_dB", max) if task == "sr" else ("MAE_rad", min)
        names = list(group[0]["scores"])
        means = {n: {m: _mean([g["scores"][n][m] for g in group]) for m in group[0]["scores"][n]} for n in names}
        best = better((n for n in names if n != "CVDM"), key=lambda n: means[n][metric])
        coverage = _mean([g["coverage90"] for g in group])
        ratio = _mean([g["err2_over_sigma2"] for g in group])
        out.append(
            {
                "task": task,
                "case": key[1],
                "factor": group[0]["factor"],
                "n": len(group),
                "cvdm": means["CVDM"],
                "best_baseline": best,
                "baseline": means[best],
                "coverage90": coverage,
                "err2_over_sigma2": ratio,
                "coverage_in_bar": None if coverage is None else COVERAGE_BAR[0] <= coverage <= COVERAGE_BAR[1],
                "ratio_in_bar": None if ratio is None else RATIO_BAR[0] <= ratio <= RATIO_BAR[1],
                "noise_check": sorted({str(g["noise_check"]) for g in group}),
                "seconds_per_image": _mean([g["seconds"] for g in group]),
            }
        )
    return out


def _cell(value: float | None, digits: int, ok: bool | None = None) -> str:
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    return text if ok is None or ok else f"**{text}** ✗"


def markdown(summary: list[dict[str, Any]]) -> str:
    """The summary as markdown tables, one per task; ✗ marks uncertainty outside the bench's bars."""
    lines = []
    for task in dict.fromkeys(s["task"] for s in summary):
        rows = [s for s in summary if s["task"] == task]
        if task == "sr":
            lines += [
                f"**SR, `cvdm-sr-widefield`, WF → SIM (n = {rows[0]['n']} per row)**",
                "",
                "| case | PSF width × | CVDM PSNR (dB) | CVDM MS-SSIM | best baseline PSNR / MS-SSIM "
                "| cal. 90 % coverage | err²/σ_cal² | noise check |",
                "|---|---|---|---|---|---|---|---|",
            ]
        else:
            lines += [
                f"**Phase, `cvdm-phase-twoshot` (n = {rows[0]['n']} per row)**",
                "",
                "| case | λ·d/p² × | CVDM MAE (rad) | CVDM MS-SSIM | best baseline MAE / MS-SSIM "
                "| cal. 90 % coverage | err²/σ_cal² | noise check |",
                "|---|---|---|---|---|---|---|---|",
            ]
        for s in rows:
            c, b = s["cvdm"], s["baseline"]
            first, digits = ("PSNR_dB", 2) if task == "sr" else ("MAE_rad", 3)
            lines.append(
                f"| {s['case']} | {s['factor']:g} | {_cell(c[first], digits)} | {_cell(c['MS-SSIM'], 3)} | "
                f"{s['best_baseline']}: {_cell(b[first], digits)} / {_cell(b['MS-SSIM'], 3)} | "
                f"{_cell(s['coverage90'], 3, s['coverage_in_bar'])} | "
                f"{_cell(s['err2_over_sigma2'], 2, s['ratio_in_bar'])} | {', '.join(s['noise_check'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3, help="test images per case")
    ap.add_argument("--n-samples", type=int, default=8)
    ap.add_argument("--sr-size", type=int, default=128, help="WF input side in pixels (the SIM truth is 2×)")
    ap.add_argument("--phase-size", type=int, default=256)
    ap.add_argument("--task", choices=["sr", "phase", "both"], default="both")
    ap.add_argument("--out", default="runs/tolerance")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()

    def log(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "rows.json").write_text(json.dumps(rows, indent=1))  # partial results survive an interruption

    if args.task in ("sr", "both"):
        sr_rows(args.n, args.n_samples, args.sr_size, log)
    if args.task in ("phase", "both"):
        phase_rows(args.n, args.n_samples, args.phase_size, log)
    summary = summarise(rows)
    about = {
        "command": vars(args),
        "seeds": {"sr": SEED_SR, "phase": SEED_PHASE},
        "bars": {"coverage90": COVERAGE_BAR, "err2_over_sigma2": RATIO_BAR},
        "seconds": time.perf_counter() - start,
    }
    (out / "tolerance.json").write_text(json.dumps({"about": about, "summary": summary, "rows": rows}, indent=1))
    table = markdown(summary)
    (out / "tolerance.md").write_text(table + "\n")
    print(table)
    print(json.dumps(about))


if __name__ == "__main__":
    main()
