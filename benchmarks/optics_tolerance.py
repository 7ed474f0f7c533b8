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

Options choose what is measured: ``--sr-model`` one or more SR models (names or files; default
``cvdm-sr-widefield``), ``--phase-model`` the phase model, ``--factors`` the factors besides the nominal (default 0.9
1.1: SR each by the pixel and by λ_em, phase by d), ``--task sr|phase|both``.  A factor outside a model's stated range
is measured with the range check lifted for that run only (the network sees the same pixels; the row says
``in_stated_range: false``, the tables mark it †), so a measurement stays repeatable after a header narrows its
range.  The tables end with the mean of the rows at each factor, which is what a stated range is decided on.

    OMP_NUM_THREADS=1 python benchmarks/optics_tolerance.py --n 3 --n-samples 8 --out runs/tolerance
    OMP_NUM_THREADS=1 python benchmarks/optics_tolerance.py --task sr --sr-model cvdm-sr-widefield \
        --factors 0.95 1.05 --n 5 --n-samples 8 --out runs/tolerance_5pct
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
from napari_cvdm.evaluation.quality import held_out_rngs, sr_microscope
from napari_cvdm.evaluation.uncertainty_scores import calibrated_interval
from napari_cvdm.inference.optics import OpticsMismatch, plan_optics
from napari_cvdm.inference.reconstruct import Reconstruction, iter_reconstruct
from napari_cvdm.model.files import TrainedModel
from napari_cvdm.model.metadata import ValidOptics
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
FACTORS = (0.9, 1.1)
SR_MODEL = "cvdm-sr-widefield"
PHASE_MODEL = "cvdm-phase-twoshot"


def _inward(factor: float) -> float:
    return factor * (1 + EDGE) if factor < 1 else factor * (1 - EDGE)


def sr_cases(factors: tuple[float, ...] = FACTORS) -> list[tuple[str, float, dict[str, float]]]:
    """(label, PSF width factor, optics) of the SR cases: nominal, then each factor by the pixel and by λ_em."""
    px, lam = 0.0626, 0.515
    cases = [("nominal (62.6 nm, λ 0.515 µm, NA 1.3)", 1.0, {})]
    others = [f for f in factors if f != 1.0]
    for factor in others:
        pixel = px / _inward(factor)
        cases.append((f"pixel {pixel * 1000:.1f} nm", factor, {"wf_pixel_um": pixel}))
    for factor in others:
        cases.append((f"λ_em {lam * _inward(factor):.4f} µm", factor, {"wavelength_um": lam * _inward(factor)}))
    return cases


def phase_cases(factors: tuple[float, ...] = FACTORS) -> list[tuple[str, float, float]]:
    """(label, λ·d/p² factor, defocus d in µm) of the phase cases: nominal, then each factor by the defocus."""
    cases = [("nominal (d = 2 µm)", 1.0, 2.0)]
    for factor in (f for f in factors if f != 1.0):
        d = 2.0 * _inward(factor)
        cases.append((f"d = {d:.2f} µm" if round(d, 1) != round(d, 2) else f"d = {d:.1f} µm", factor, d))
    return cases


def _lifted(model: TrainedModel, plan_record: dict[str, Any]) -> TrainedModel:
    """``model`` with its stated range widened to the case's factor: the same network and calibrations, so the
    measurement is of the network at these optics, not of the range check."""
    covered = model.info.covered_optics() or ValidOptics()
    value = plan_record["check"]["value"]
    key = "psf_width_factor" if model.info.task == "super-resolution" else "fresnel_factor"
    low, high = getattr(covered, key) or (1.0, 1.0)
    wider = covered.model_copy(update={key: (min(low, value * (1 - EDGE)), max(high, value * (1 + EDGE)))})
    return TrainedModel(model.network, model.info.model_copy(update={"valid_optics": wider}), model.source)


def run(
    model: TrainedModel, image: np.ndarray, n_samples: int, seed: int, **optics: float
) -> tuple[Reconstruction, bool]:
    """The model on ``image`` as a user runs it: the true optics stated, the model's default sampler.  Also
    whether the optics lie in the model's stated range (if not, it runs with the range check lifted)."""
    settings = ReconstructSettings(n_samples=n_samples, seed=seed, device="cpu", **optics)
    inside = True
    try:
        plan = plan_optics(model.info, settings)
    except OpticsMismatch:
        plan = None
    if plan is None or plan.action != "run":
        inside = False
        record = plan_optics(model.info, settings.model_copy(update={"resample": "approximate"})).record
        model = _lifted(model, record)
        plan = plan_optics(model.info, settings)
    if plan.action != "run":
        raise RuntimeError(f"the optics {optics} are not run as is ({plan.action}): {plan.record.get('note')}")
    return drive(iter_reconstruct(model, image, settings)), inside


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


def _row(
    task: str,
    model: TrainedModel,
    label: str,
    factor: float,
    k: int,
    about: dict[str, Any],
    scores: dict[str, dict[str, float]],
    result: Reconstruction,
    pair: tuple[np.ndarray, np.ndarray],
    inside: bool,
    seconds: float,
) -> dict[str, Any]:
    """One case × test image: what the image was (``about``), the scores, the calibrated uncertainty of the
    (input, truth) ``pair``, the noise verdict, what was done with the optics, and the time."""
    return {
        "task": task, "model": model.info.name, "case": label, "factor": factor, "image": k, **about,
        "scores": scores, **uncertainty(model, result, *pair),
        "noise_check": result.optics.get("noise", {}).get("verdict"), "action": result.optics.get("action"),
        "in_stated_range": inside, "seconds": seconds,
    }  # fmt: skip


def sr_rows(
    n: int,
    n_samples: int,
    size: int,
    log: Callable[[dict[str, Any]], None],
    name: str = SR_MODEL,
    factors: tuple[float, ...] = FACTORS,
) -> list[dict[str, Any]]:
    """Every SR case × test image: scores, uncertainty, the noise verdict and the time; each row also to ``log``."""
    model = load_model(name)
    rows = []
    for label, factor, optics in sr_cases(factors):
        settings = sr_microscope(**optics)
        stated = {
            "pixel_size_um": settings.wf_pixel_um,
            "wavelength_um": settings.wavelength_um,
            "numerical_aperture": settings.na,
        }
        for k, rng in enumerate(held_out_rngs(SEED_SR, n)):
            wf, sim, info = simulate_sr_pair(settings, size, rng)
            start = time.perf_counter()
            result, inside = run(model, wf, n_samples, k, **stated)
            seconds = time.perf_counter() - start
            baselines = {
                "bicubic": bicubic_upsample(wf, 2),
                "Richardson–Lucy": richardson_lucy(wf, 2, settings, iterations=20),
            }
            scores = {
                name: {"PSNR_dB": psnr(p, sim, normalize="minmax"), "MS-SSIM": ms_ssim(p, sim, normalize="minmax")}
                for name, p in {"CVDM": result.mean, **baselines}.items()
            }
            about = {"structure": info["structure"]}
            rows.append(_row("sr", model, label, factor, k, about, scores, result, (wf, sim), inside, seconds))
            log(rows[-1])
    return rows


def phase_rows(
    n: int,
    n_samples: int,
    size: int,
    log: Callable[[dict[str, Any]], None],
    name: str = PHASE_MODEL,
    factors: tuple[float, ...] = FACTORS,
) -> list[dict[str, Any]]:
    """Every phase case × test image, as :func:`sr_rows`."""
    model = load_model(name)
    rows = []
    for label, factor, d in phase_cases(factors):
        settings = PhaseSimulation(source="mixed", defocus_um=d)
        for k, rng in enumerate(held_out_rngs(SEED_PHASE, n)):
            stack, phase, info = simulate_phase_pair(settings, size, rng)
            truth = phase - phase.mean()
            start = time.perf_counter()
            result, inside = run(model, stack, n_samples, k, pixel_size_um=0.21, wavelength_um=0.521, defocus_um=d)
            seconds = time.perf_counter() - start
            args = (stack, d, settings.wavelength_um, settings.pixel_um)
            estimates = {"CVDM": result.mean - result.mean.mean(), "FFT-TIE": tie_fft(*args), "US-TIE": us_tie(*args)}
            scores = {
                name: {"MAE_rad": mae(p, truth), "MS-SSIM": ms_ssim(p, truth, data_range=settings.max_phase_rad)}
                for name, p in estimates.items()
            }
            about = {"source": info["source"], "noise_xi": info["noise_xi"]}
            rows.append(_row("phase", model, label, factor, k, about, scores, result, (stack, phase), inside, seconds))
            log(rows[-1])
    return rows


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _bars(coverage: float | None, ratio: float | None) -> dict[str, bool | None]:
    return {
        "coverage_in_bar": None if coverage is None else COVERAGE_BAR[0] <= coverage <= COVERAGE_BAR[1],
        "ratio_in_bar": None if ratio is None else RATIO_BAR[0] <= ratio <= RATIO_BAR[1],
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (task, model, case): mean scores, the better baseline, and whether the uncertainty meets
    the bars."""
    out = []
    for key in dict.fromkeys((r["task"], r.get("model"), r["case"]) for r in rows):
        group = [r for r in rows if (r["task"], r.get("model"), r["case"]) == key]
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
                "model": key[1],
                "case": key[2],
                "factor": group[0]["factor"],
                "n": len(group),
                "cvdm": means["CVDM"],
                "best_baseline": best,
                "baseline": means[best],
                "coverage90": coverage,
                "err2_over_sigma2": ratio,
                **_bars(coverage, ratio),
                "in_stated_range": all(g.get("in_stated_range", True) for g in group),
                "noise_check": sorted({str(g["noise_check"]) for g in group}),
                "seconds_per_image": _mean([g["seconds"] for g in group]),
            }
        )
    return out


def by_factor(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, model, factor): the mean of the rows' coverage and err²/σ_cal² (SR: the pixel and the λ_em row),
    and whether that mean meets the bars; a stated range is decided on these."""
    out = []
    for key in dict.fromkeys((s["task"], s["model"], s["factor"]) for s in summary):
        group = [s for s in summary if (s["task"], s["model"], s["factor"]) == key]
        coverage = _mean([g["coverage90"] for g in group])
        ratio = _mean([g["err2_over_sigma2"] for g in group])
        out.append(
            {
                "task": key[0],
                "model": key[1],
                "factor": key[2],
                "rows": len(group),
                "coverage90": coverage,
                "err2_over_sigma2": ratio,
                **_bars(coverage, ratio),
            }
        )
    return sorted(out, key=lambda s: (s["task"], str(s["model"]), s["factor"]))


def _cell(value: float | None, digits: int, ok: bool | None = None) -> str:
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    return text if ok is None or ok else f"**{text}** ✗"


def markdown(summary: list[dict[str, Any]]) -> str:
    """The summary as markdown tables, one per task and model, each followed by the mean per factor; ✗ marks
    uncertainty outside the bench's bars, † optics outside the model's stated range (run with the check lifted)."""
    lines = []
    factors = by_factor(summary)
    for task, name in dict.fromkeys((s["task"], s["model"]) for s in summary):
        rows = [s for s in summary if (s["task"], s["model"]) == (task, name)]
        if task == "sr":
            lines += [
                f"**SR, `{name}`, WF → SIM (n = {rows[0]['n']} per row)**",
                "",
                "| case | PSF width × | CVDM PSNR (dB) | CVDM MS-SSIM | best baseline PSNR / MS-SSIM "
                "| cal. 90 % coverage | err²/σ_cal² | noise check |",
                "|---|---|---|---|---|---|---|---|",
            ]
        else:
            lines += [
                f"**Phase, `{name}` (n = {rows[0]['n']} per row)**",
                "",
                "| case | λ·d/p² × | CVDM MAE (rad) | CVDM MS-SSIM | best baseline MAE / MS-SSIM "
                "| cal. 90 % coverage | err²/σ_cal² | noise check |",
                "|---|---|---|---|---|---|---|---|",
            ]
        for s in rows:
            c, b = s["cvdm"], s["baseline"]
            first, digits = ("PSNR_dB", 2) if task == "sr" else ("MAE_rad", 3)
            mark = "" if s["in_stated_range"] else " †"
            lines.append(
                f"| {s['case']}{mark} | {s['factor']:g} | {_cell(c[first], digits)} | {_cell(c['MS-SSIM'], 3)} | "
                f"{s['best_baseline']}: {_cell(b[first], digits)} / {_cell(b['MS-SSIM'], 3)} | "
                f"{_cell(s['coverage90'], 3, s['coverage_in_bar'])} | "
                f"{_cell(s['err2_over_sigma2'], 2, s['ratio_in_bar'])} | {', '.join(s['noise_check'])} |"
            )
        lines += [
            "",
            f"Mean of the rows at each {'PSF width' if task == 'sr' else 'λ·d/p²'} factor:",
            "",
            "| factor | rows | cal. 90 % coverage | err²/σ_cal² | both bars |",
            "|---|---|---|---|---|",
        ]
        for f in (f for f in factors if (f["task"], f["model"]) == (task, name)):
            ok = f["coverage_in_bar"] and f["ratio_in_bar"]
            lines.append(
                f"| {f['factor']:g} | {f['rows']} | {_cell(f['coverage90'], 3, f['coverage_in_bar'])} | "
                f"{_cell(f['err2_over_sigma2'], 2, f['ratio_in_bar'])} | {'yes' if ok else 'no'} |"
            )
        lines.append("")
    if any(not s["in_stated_range"] for s in summary):
        lines += ["† outside the model's stated range: measured with the range check lifted.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3, help="test images per case")
    ap.add_argument("--n-samples", type=int, default=8)
    ap.add_argument("--sr-size", type=int, default=128, help="WF input side in pixels (the SIM truth is 2×)")
    ap.add_argument("--phase-size", type=int, default=256)
    ap.add_argument("--task", choices=["sr", "phase", "both"], default="both")
    ap.add_argument("--sr-model", nargs="+", default=[SR_MODEL], help="SR model name(s) or file(s)")
    ap.add_argument("--phase-model", default=PHASE_MODEL, help="phase model name or file")
    ap.add_argument(
        "--factors",
        type=float,
        nargs="+",
        default=list(FACTORS),
        help="PSF width (SR) / λ·d/p² (phase) factors besides the nominal, which is always measured",
    )
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

    factors = tuple(args.factors)
    if args.task in ("sr", "both"):
        for name in args.sr_model:
            sr_rows(args.n, args.n_samples, args.sr_size, log, name, factors)
    if args.task in ("phase", "both"):
        phase_rows(args.n, args.n_samples, args.phase_size, log, args.phase_model, factors)
    summary = summarise(rows)
    about = {
        "command": vars(args),
        "seeds": {"sr": SEED_SR, "phase": SEED_PHASE},
        "bars": {"coverage90": COVERAGE_BAR, "err2_over_sigma2": RATIO_BAR},
        "seconds": time.perf_counter() - start,
    }
    result = {"about": about, "summary": summary, "by_factor": by_factor(summary), "rows": rows}
    (out / "tolerance.json").write_text(json.dumps(result, indent=1))
    table = markdown(summary)
    (out / "tolerance.md").write_text(table + "\n")
    print(table)
    print(json.dumps(about))


if __name__ == "__main__":
    main()
