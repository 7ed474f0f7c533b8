"""A learned diagonal error covariance of the mean, against the shipped calibrated sample spread.

The lever: instead of rescaling the raw sample spread with a monotone map, a small network
(:mod:`napari_cvdm.sampling.variance_head`) predicts the error variance of the reconstruction's mean per pixel,
log σ²(x), from what a reconstruction has in hand: the input on the output grid (phase: both defocus planes as
contrast; SR: the widefield image), the CVDM mean, the raw sample variance and, for phase, the stated λ·d/p².  It
is trained by moment matching: the Gaussian negative log-likelihood of the mean's error, whose minimiser is
σ² = E[err² | inputs], the diagonal of the error covariance (the target of optimal covariance matching, arXiv
2406.10808, regressed directly on the residual of the final mean rather than estimated from the score's Jacobian
at every step).  Its interval multipliers are split-conformal quantiles of |err|/σ on its validation images.

Seeds: the head trains on simulated pairs like the calibration pairs, but from seeds 30 000+ (nominal optics) and
31 000+ (randomised optics or set-ups, :class:`~napari_cvdm.physics.SROpticsRange` /
:class:`~napari_cvdm.physics.PhaseOpticsRange`), which neither training (small seeds), the bench (10 000+) nor the
shipped calibration (20 000+) uses; each 4th image validates.  It is scored on the bench's own held-out rows
(``evaluation.quality.sr_cases``; ``phase_cases`` and ``phase_optics_cases`` plus the real
``skimage.data.cell()``), against the shipped calibrated std of the same reconstructions.

Usage, as measured for docs/uncertainty.md (``measure`` about 25 s per 256²-output pair on one thread, two sets
side by side on a 2-core VM; ``train`` 6–20 min on one thread; ``score`` under a minute)::

    OMP_NUM_THREADS=1 python benchmarks/posterior_variance.py measure --set nominal --n 56 --out runs/pv/nominal.npz
    OMP_NUM_THREADS=1 python benchmarks/posterior_variance.py measure --set random --n 56 --out runs/pv/random.npz
    python benchmarks/posterior_variance.py measure --set bench --n 4 --out runs/pv/bench.npz
    OMP_NUM_THREADS=1 python benchmarks/posterior_variance.py train runs/pv/nominal.npz runs/pv/random.npz \
        --out runs/pv/head.pt --steps 1500
    python benchmarks/posterior_variance.py score runs/pv/bench.npz --head runs/pv/head.pt

and for SR the same with ``--task sr`` and ``--n 48`` on ``measure`` (model ``cvdm-sr-widefield``; the bench rows
are run told no optics, as ``napari-cvdm bench`` runs them) and ``--steps 1000`` on ``train``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_cvdm.evaluation.calibrate import (
    network_scale,
    network_units_error,
    network_units_mean,
    simulated_calibration_pairs,
)
from napari_cvdm.evaluation.quality import bench_pairs
from napari_cvdm.evaluation.uncertainty_scores import CALIBRATED_LEVELS, Uncertainty
from napari_cvdm.inference.reconstruct import reconstruct
from napari_cvdm.model.metadata import Calibration
from napari_cvdm.registry import load_model
from napari_cvdm.sampling.calibration import interval_multiplier
from napari_cvdm.sampling.calibration_bins import select_calibration
from napari_cvdm.sampling.variance_head import HeadInputs, VarianceHead, fit_variance_head, predict_std
from napari_cvdm.tasks import input_scale

TASKS = {"phase": "phase", "sr": "super-resolution"}
MODELS = {"phase": "cvdm-phase-twoshot", "sr": "cvdm-sr-widefield"}
HEAD_SEED_OFFSET = 10_000  # simulated_calibration_pairs(seed_offset=…): seeds 30 000+ / 31 000+


def _pairs(task: str, which: str, n: int) -> list[tuple[str, np.ndarray, np.ndarray, dict[str, float]]]:
    """(label, input, truth, stated set-up) of one measured set."""
    if which in ("nominal", "random"):
        got = simulated_calibration_pairs(TASKS[task], n, seed_offset=HEAD_SEED_OFFSET, optics=which)
        stated = got.stated_optics or [{}] * len(got.pairs)
        return [(which, s, t, told) for (s, t), told in zip(got.pairs, stated, strict=True)]
    return list(bench_pairs("phase" if task == "phase" else "sr", n))  # the bench's rows


def _planes_and_condition(task: str, image: np.ndarray, told: dict[str, float], info) -> tuple[np.ndarray, list]:
    """The input as the head sees it, on the output grid, and the per-image condition.  Phase: both planes as
    contrast I/Ī − 1 (Ī over both) and log(λ·d/p² over the model's); SR: the widefield image in network units
    (its percentile offset and scale), repeated onto the 2× grid, no condition."""
    image = np.asarray(image, np.float64)
    if task == "sr":
        scale = input_scale(image, info)
        up = np.repeat(np.repeat((image - scale.offset) / scale.scale, 2, axis=-2), 2, axis=-1)
        return up[None].astype(np.float32), []
    nominal = info.wavelength_um * info.defocus_um / info.input_pixel_um**2
    f = (told["wavelength_um"] * told["defocus_um"] / told["pixel_size_um"] ** 2) if told else nominal
    planes = (image / max(float(image.mean()), 1e-12) - 1).astype(np.float32)
    return planes, [float(np.log(f / nominal))]


def measure(task: str, which: str, n: int, out: Path, n_samples: int, steps: int | None, first: int = 0) -> None:
    """Reconstruct each pair as the bench does (seed k within a row) and keep what the head sees, in network
    units (:func:`~napari_cvdm.evaluation.calibrate.network_units_error`); a simulated set from its pair
    ``first`` on (its first pairs are the same for every ``n``, so a set can be extended)."""
    model = load_model(MODELS[task])
    pairs = _pairs(task, which, n)
    if first:
        if which == "bench":
            raise SystemExit("--first extends a simulated set (nominal or random), not the bench rows")
        pairs = pairs[first:]
    keys = ("label", "index", "planes", "condition", "mean", "variance", "error", "sigma_cal")
    rec: dict[str, list] = {k: [] for k in keys}
    start, row_index = time.perf_counter(), {which: first}
    for label, image, truth, told in pairs:
        k = row_index.get(label, 0)
        row_index[label] = k + 1
        rec["index"].append(k)  # the pair's place in its set or row (simulated sets take their sources in turn)
        result = reconstruct(model, image, n_samples=n_samples, steps=steps, seed=k, device="cpu", **told)
        variance, err = network_units_error(result, image, truth, model.info)
        planes, condition = _planes_and_condition(task, image, told, model.info)
        rec["label"].append(label)
        rec["planes"].append(planes)
        rec["condition"].append(condition)
        rec["mean"].append(network_units_mean(result, image, model.info).astype(np.float32))
        rec["variance"].append(variance.astype(np.float32))
        rec["error"].append(err.astype(np.float32))
        rec["sigma_cal"].append((result.calibrated_std / network_scale(image, model.info)).astype(np.float32))
        print(f"{which}: {len(rec['label'])}/{len(pairs)} {time.perf_counter() - start:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v, {"label": None, "index": np.int64}.get(k, np.float32)) for k, v in rec.items()}
    np.savez_compressed(out, **arrays, n_samples=n_samples, task=task)


LEVELS = CALIBRATED_LEVELS  # the bench's calibrated interval levels


def _load(path: Path) -> dict[str, np.ndarray]:
    """A measured set's arrays, each read once (indexing an ``NpzFile`` reads the whole array every time)."""
    with np.load(path) as data:
        return dict(data)


def head_inputs(data: dict[str, np.ndarray], k: int) -> tuple[HeadInputs, np.ndarray]:
    """Image ``k`` of a measured set as the head sees it (:func:`_planes_and_condition`), and its error."""
    inputs = HeadInputs(data["planes"][k], data["mean"][k], data["variance"][k], list(data["condition"][k]))
    return inputs, data["error"][k]


def train(files: list[Path], out: Path, steps: int, width: int) -> None:
    """Fit the head on every measured image but each 4th, which validates (best-NLL weights kept) and gives the
    split-conformal interval multipliers |err|/σ at 50 / 90 / 95 %."""
    images = [head_inputs(d, k) for d in map(_load, files) for k in range(len(d["label"]))]
    valid = images[3::4]
    fit = [x for k, x in enumerate(images) if k % 4 != 3]
    start = time.perf_counter()
    head, history = fit_variance_head(fit, valid, steps=steps, width=width)
    ratio = np.concatenate([np.abs(e).ravel() / predict_std(head, i).ravel() for i, e in valid])
    z = {f"{q:g}": float(np.quantile(ratio, q)) for q in LEVELS}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": head.state_dict(), "in_channels": head.in_channels, "log_var_channel": head.log_var_channel,
                "width": width, "interval_z": z, "history": history}, out)  # fmt: skip
    best = min(history["valid"])
    curve = ", ".join(f"{st}: {v:.3f}" for st, v in zip(history["step"][::5], history["valid"][::5], strict=True))
    print(f"validation NLL by step: {curve}")
    print(f"{len(fit)} training, {len(valid)} validation images, {time.perf_counter() - start:.0f} s; "
          f"validation NLL {history['valid'][0]:.4f} → {best:.4f}; z {z}")  # fmt: skip


def _row_scores(errors, variances, sigmas, z: dict[str, float], n_samples: int) -> dict[str, float]:
    """A bench row's calibrated scores of one σ, as ``napari-cvdm bench`` scores σ_cal (its ``Uncertainty``), with
    intervals z_q·σ; and the Gaussian NLL per pixel (constant left out)."""
    row = Uncertainty(n_samples)
    for e, v, s in zip(errors, variances, sigmas, strict=True):
        row.add(e, v, s, {q: z[f"{q:g}"] * s for q in LEVELS})
    nll = [np.mean(np.log(s) + 0.5 * (e / s) ** 2) for e, s in zip(errors, sigmas, strict=True)]
    return {
        "err2/σ²": float(np.mean(row.cal_ratio)),
        **{f"cov{int(q * 100)}": float(np.mean(row.cal_coverage[q])) for q in LEVELS},
        "spearman": float(np.nanmean(row.cal_spearman)),
        "nll": float(np.mean(nll)),
    }


def shipped_calibration(task: str) -> Calibration:
    """The pooled calibration the task's bundled model applies at its default sampler (no condition known)."""
    info = load_model(MODELS[task]).info
    cal, _ = select_calibration(info.calibrations, info.sampler.method, info.sampler.eta, info.sampler.steps, None)
    if cal is None:
        raise SystemExit(f"{info.name} holds no calibration for its default sampler")
    return cal


def score(bench: Path, head_file: Path) -> None:
    """Per bench row: err²/σ², calibrated 50/90/95 % coverage, Spearman(σ, |err|) and NLL of the shipped
    calibrated std and of the head's."""
    saved = torch.load(head_file, weights_only=True)
    head = VarianceHead(saved["in_channels"], saved["log_var_channel"], saved["width"])
    head.load_state_dict(saved["state"])
    data = _load(bench)
    cal = shipped_calibration(str(data["task"]))
    z_cal = {f"{q:g}": interval_multiplier(cal, q) for q in LEVELS}
    z_head = saved["interval_z"]
    labels = list(dict.fromkeys(data["label"]))
    table = {}
    for label in labels:
        ks = [k for k, lab in enumerate(data["label"]) if lab == label]
        errors, variances, n = [data["error"][k] for k in ks], [data["variance"][k] for k in ks], int(data["n_samples"])
        table[label] = {
            "shipped σ_cal": _row_scores(errors, variances, [data["sigma_cal"][k] for k in ks], z_cal, n),
            "head σ": _row_scores(
                errors, variances, [predict_std(head, head_inputs(data, k)[0]) for k in ks], z_head, n
            ),
        }
    for name in ("shipped σ_cal", "head σ"):
        print(f"\n{name}")
        print("| row | err²/σ² | cov50 | cov90 | cov95 | Spearman | NLL |\n|---|---|---|---|---|---|---|")
        for label, rows in table.items():
            r = rows[name]
            print(f"| {label} | {r['err2/σ²']:.2f} | {r['cov50']:.2f} | {r['cov90']:.2f} | {r['cov95']:.2f} | "
                  f"{r['spearman']:.3f} | {r['nll']:.3f} |")  # fmt: skip
        print(f"Spearman averaged over rows: {np.mean([rows[name]['spearman'] for rows in table.values()]):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="reconstruct a set of pairs and keep what the head sees")
    m.add_argument("--task", choices=list(TASKS), default="phase")
    m.add_argument("--set", choices=["nominal", "random", "bench"], required=True)
    m.add_argument("--n", type=int, required=True, help="pairs (bench: per row)")
    m.add_argument("--first", type=int, default=0, help="start at this pair of a simulated set (to extend it)")
    m.add_argument("--n-samples", type=int, default=8)
    m.add_argument("--steps", type=int, default=None)
    m.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("train", help="fit the head on measured sets")
    t.add_argument("files", nargs="+", type=Path)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--width", type=int, default=24)
    c = sub.add_parser("score", help="score the head and the shipped calibration on the measured bench rows")
    c.add_argument("bench", type=Path)
    c.add_argument("--head", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "measure":
        measure(args.task, args.set, args.n, args.out, args.n_samples, args.steps, args.first)
    elif args.command == "train":
        train(args.files, args.out, args.steps, args.width)
    else:
        score(args.bench, args.head)
    print(json.dumps({"done": args.command}))


if __name__ == "__main__":
    main()
