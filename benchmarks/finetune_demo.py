"""Does fine-tuning help?  A measured CPU-sized demonstration for docs/fine-tuning.md.

1. Train a small *base* super-resolution model on condition A (microtubules, NA 1.3).
2. Fine-tune it on a few pairs of condition B (F-actin, NA 1.1: other structures, a coarser optical cutoff).
3. Train the same architecture *from scratch* on the same B pairs for the same number of steps.
4. Compare on held-out B pairs (never seen in training; seeds ≥ 10 000): PSNR and MS-SSIM against the SIM truth
   (per-image min–max normalisation, as ``napari-cvdm bench``), for bicubic, the base model, the fine-tuned model
   and the from-scratch model; and on held-out A pairs for the base and fine-tuned models (what is forgotten).

Usage (about 15–20 min on 2 busy CPU cores under ``nice``; everything is seeded)::

    python benchmarks/finetune_demo.py [--base-steps 1200] [--tune-steps 300] [--n-tune 8] [--out runs/finetune_demo]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_cvdm import load_model
from napari_cvdm._runtime import drive
from napari_cvdm.evaluation.metrics import ms_ssim, psnr
from napari_cvdm.inference.reconstruct import reconstruct
from napari_cvdm.model.cvdm import CVDM
from napari_cvdm.model.files import TrainedModel
from napari_cvdm.physics import SRSimulation, bicubic_upsample
from napari_cvdm.settings import TrainSettings
from napari_cvdm.training import presets
from napari_cvdm.training.data import PairedDataset
from napari_cvdm.training.jobs import finetune_start
from napari_cvdm.training.loop import iter_train

CONDITION_A = SRSimulation(structure="microtubules", na=1.3)
CONDITION_B = SRSimulation(structure="f-actin", na=1.1)
TEST_SEED = 10_005  # held out: training sets use seeds 1 and 2


def run(network: CVDM, info, data: PairedDataset, settings: TrainSettings, out: Path, label: str) -> TrainedModel:
    start = time.perf_counter()

    def log(event) -> None:
        if event.step % 100 == 0 or event.step == event.total:
            val = f", validation {event.val_loss:.4f}" if event.val_loss is not None else ""
            print(f"  {label}: step {event.step}/{event.total}, loss {event.losses['total']:.4f}{val}", flush=True)

    model = drive(iter_train(network, info, data, settings, out), log)
    print(f"  {label}: {time.perf_counter() - start:.0f} s", flush=True)
    return model


def evaluate(estimate, tests: tuple[list, list]) -> np.ndarray:
    """PSNR (dB) and MS-SSIM of ``estimate(wf, k)`` against each SIM truth: shape (n_images, 2)."""
    scores = []
    for k, (wf, sim) in enumerate(zip(*tests, strict=True)):
        est = estimate(wf, k)
        scores.append((psnr(est, sim, normalize="minmax"), ms_ssim(est, sim, normalize="minmax")))
    return np.asarray(scores)


def paired(a: np.ndarray, b: np.ndarray) -> str:
    """Mean ± standard error of the per-image difference a − b, and on how many images a is better (PSNR)."""
    d = a - b
    se = d.std(axis=0, ddof=1) / np.sqrt(len(d))
    wins = int((d[:, 0] > 0).sum())
    return (
        f"ΔPSNR {d[:, 0].mean():+.2f} ± {se[0]:.2f} dB, ΔMS-SSIM {d[:, 1].mean():+.3f} ± {se[1]:.3f} "
        f"(better PSNR on {wins}/{len(d)} images)"
    )


def train_all(args: argparse.Namespace, base_pairs, tune_pairs) -> tuple[TrainedModel, ...]:
    """The base model (A), the fine-tuned model (A → B) and the from-scratch model (B), written to ``args.out``."""
    info_a = presets.default_metadata("sr", "demo-base", CONDITION_A)
    info_b = presets.default_metadata("sr", "demo-scratch", CONDITION_B)
    common = dict(batch_size=8, patch_size=64, val_every=100, val_batches=2, device="cpu", checkpoint_every=10**6)
    print(f"1/3 base model on A ({args.n_base} pairs, {args.base_steps} steps)", flush=True)
    torch.manual_seed(0)
    base_net = CVDM(presets.default_architecture("sr", width=args.width, depth=3))
    base_set = TrainSettings(steps=args.base_steps, learning_rate=4e-4, warmup_steps=50, val_fraction=0.1, **common)
    data_a = PairedDataset.from_arrays(*base_pairs, info_a)
    base = run(base_net, info_a, data_a, base_set, args.out / "base.cvdm", "base")
    data_b = PairedDataset.from_arrays(*tune_pairs, info_b)
    print(f"2/3 fine-tune on B ({args.n_tune} pairs, {args.tune_steps} steps)", flush=True)
    net, info = finetune_start(base, "demo-finetuned")
    info = info.model_copy(update={"numerical_aperture": CONDITION_B.na})  # the new data's optics
    tune_set = TrainSettings(steps=args.tune_steps, learning_rate=1e-4, warmup_steps=30, val_fraction=0.25, **common)
    tuned = run(net, info, data_b, tune_set, args.out / "finetuned.cvdm", "fine-tune")
    print(f"3/3 from scratch on B (same pairs, {args.tune_steps} steps)", flush=True)
    torch.manual_seed(0)
    scratch_net = CVDM(presets.default_architecture("sr", width=args.width, depth=3))
    scratch_set = tune_set.model_copy(update={"learning_rate": 4e-4, "warmup_steps": 50})
    scratch = run(scratch_net, info_b, data_b, scratch_set, args.out / "scratch.cvdm", "scratch")
    return base, tuned, scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-steps", type=int, default=1200)
    parser.add_argument("--tune-steps", type=int, default=300)
    parser.add_argument("--n-base", type=int, default=48, help="condition-A pairs for the base model")
    parser.add_argument("--n-tune", type=int, default=8, help="condition-B pairs for fine-tuning / scratch")
    parser.add_argument("--n-test", type=int, default=16, help="held-out pairs per condition")
    parser.add_argument("--size", type=int, default=64, help="widefield side (pixels); SIM is 2×")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--n-samples", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/finetune_demo"))
    parser.add_argument("--eval-only", action="store_true", help="re-score the models already saved in --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def pairs(physics: SRSimulation, n: int, seed: int) -> tuple[list, list]:
        return presets.simulate_pairs("sr", n, args.size, seed, physics)

    base_pairs, tune_pairs = pairs(CONDITION_A, args.n_base, 1), pairs(CONDITION_B, args.n_tune, 2)
    tests = {"A": pairs(CONDITION_A, args.n_test, TEST_SEED), "B": pairs(CONDITION_B, args.n_test, TEST_SEED + 1)}
    if args.eval_only:
        base, tuned, scratch = (load_model(args.out / f"{n}.cvdm") for n in ("base", "finetuned", "scratch"))
    else:
        base, tuned, scratch = train_all(args, base_pairs, tune_pairs)

    def cvdm(model: TrainedModel):
        return lambda wf, k: reconstruct(model, wf, n_samples=args.n_samples, seed=k, device="cpu").mean

    scores: dict[str, dict[str, np.ndarray]] = {}
    names = {
        "bicubic": "bicubic",
        "base": f"base (A only, {args.base_steps} steps)",
        "finetuned": f"fine-tuned (+{args.tune_steps} steps on {args.n_tune} B pairs)",
        "scratch": f"from scratch ({args.tune_steps} steps on {args.n_tune} B pairs)",
    }
    for key, estimate, conditions in (
        ("bicubic", lambda wf, k: bicubic_upsample(wf, 2), "AB"),
        ("base", cvdm(base), "AB"),
        ("finetuned", cvdm(tuned), "AB"),
        ("scratch", cvdm(scratch), "B"),
    ):
        scores[key] = {cond: evaluate(estimate, tests[cond]) for cond in conditions}
        print(f"  evaluated {names[key]}", flush=True)

    lines = ["| method | B: PSNR (dB) ↑ | B: MS-SSIM ↑ | A: PSNR (dB) ↑ | A: MS-SSIM ↑ |", "|---|---|---|---|---|"]
    for key, name in names.items():
        b, a = scores[key]["B"].mean(0), scores[key]["A"].mean(0) if "A" in scores[key] else None
        a_cells = f"{a[0]:.2f} | {a[1]:.3f}" if a is not None else "– | –"
        lines.append(f"| {name} | {b[0]:.2f} | {b[1]:.3f} | {a_cells} |")
    lines += [
        "",
        f"* fine-tuned − base on B: {paired(scores['finetuned']['B'], scores['base']['B'])}",
        f"* fine-tuned − from scratch on B: {paired(scores['finetuned']['B'], scores['scratch']['B'])}",
        f"* fine-tuned − base on A (forgetting): {paired(scores['finetuned']['A'], scores['base']['A'])}",
    ]
    minutes = (time.perf_counter() - t0) / 60
    print("\n" + "\n".join(lines))
    print(
        f"\n_{args.n_test} held-out pairs per condition, WF {args.size}² → SIM {2 * args.size}², "
        f"{args.n_samples} samples per image; {minutes:.1f} min on this machine_"
    )
    result = {k: {c: v.tolist() for c, v in per.items()} for k, per in scores.items()}
    (args.out / "results.json").write_text(json.dumps({"args": {**vars(args), "out": str(args.out)}, "scores": result}))


if __name__ == "__main__":
    main()
