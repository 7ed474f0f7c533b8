"""A cheaper network?  The shipped full-grid U-Nets against U-Nets on a coarser grid (``pixel_unshuffle``).

1. FLOPs per output megapixel of one denoiser evaluation and of one λ-network pass (``torch.utils.flop_counter``,
   counted on the meta device: convolutions and matrix products, 2 FLOPs per multiply-add), and parameters.
2. A short training run of each architecture: the same simulated pairs (as the shipped models' first run: 256
   pairs, SR 128², phase 192² with the US-TIE condition, seed 0), the same steps, batch, patch, learning rate (4e-4,
   cosine decay), bf16 and seed.  Every run builds its network after ``torch.manual_seed(seed)``, as
   ``napari-cvdm train`` does.
3. Held-out scores (seeds ≥ 10 000, as ``napari-cvdm bench``): SR, WF 128² → 256², every structure family, PSNR and
   MS-SSIM after per-image min–max normalisation, and the PSNR of the mean clipped at 0 (how much of a difference is
   negative undershoot); phase, 256², the bench's four cases (photos / cells, with and
   without noise) and ``skimage.data.cell()``, MAE (rad) and MS-SSIM with the mean removed.  The mean of
   ``--samples`` samples at the shipped default steps (SR 10, phase 20), and the final validation loss.
4. Seconds of ``reconstruct()`` of a 256² input with 8 samples, the architectures alternated ``--repeats`` times
   and the fastest kept.

Usage (one thread; about 50 min for the defaults on one core of a 2-core VM; everything is seeded; the results are
in docs/performance.md, *A cheaper network*)::

    OMP_NUM_THREADS=1 python benchmarks/arch_compare.py [--steps 1000] [--variants full unshuffle2 unshuffle2-fine8] \
        [--out runs/arch_exact]

Trained models are kept in ``--out`` and reused by a rerun (``--retrain`` trains them again); the results are
written to ``--out/results.json`` and ``--out/results.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_cvdm._runtime import drive
from napari_cvdm.evaluation.metrics import mae, ms_ssim, psnr
from napari_cvdm.evaluation.quality import TEST_SEED_SR, held_out_rngs, phase_cases, real_cell_pair
from napari_cvdm.inference.reconstruct import reconstruct
from napari_cvdm.model.cvdm import CVDM
from napari_cvdm.model.files import TrainedModel, load_model_file
from napari_cvdm.physics import STRUCTURES, PhaseSimulation, SRSimulation, simulate_sr_pair
from napari_cvdm.physics import simulate_phase_pair as simulate_phase
from napari_cvdm.settings import TrainSettings
from napari_cvdm.training import data as data_module
from napari_cvdm.training import presets
from napari_cvdm.training.data import PairedDataset
from napari_cvdm.training.loop import iter_train

# keyword arguments of presets.default_architecture (besides the task)
VARIANTS: dict[str, dict[str, int]] = {
    "full": {},  # the shipped architecture: width 32, depth 4, full output grid
    "unshuffle2": {"pixel_unshuffle": 2},  # the same widths on a 2× coarser grid
    "unshuffle2-depth5": {"pixel_unshuffle": 2, "depth": 5},  # … with one more level (larger receptive field)
    "width16": {"width": 16},  # the full grid at half the width
    "unshuffle2-fine8": {"pixel_unshuffle": 2, "fine_head": 8},  # the coarse grid + a thin head on the output grid
}
SIM_SIZE = {"sr": 128, "phase": 192}  # input side of the training pairs, as benchmarks/train_default_models.sh
DEFAULT_STEPS = {"sr": 10, "phase": 20}  # the shipped models' default NFE per sample
METRICS = {"sr": ("PSNR (dB)", "MS-SSIM", "PSNR of max(ŷ, 0) (dB)"), "phase": ("MAE (rad)", "MS-SSIM")}
HIGHER_IS_BETTER = {"PSNR (dB)": True, "MS-SSIM": True, "MAE (rad)": False, "PSNR of max(ŷ, 0) (dB)": True}


def architecture(task: str, variant: str):
    return presets.default_architecture(task, **VARIANTS[variant])


def flops(task: str, variant: str, side: int = 256) -> dict[str, float]:
    """GFLOP per output megapixel of one denoiser call and of one λ pass, and the parameters."""
    with torch.device("meta"):
        net = CVDM(architecture(task, variant))
        c = net.config
        z = torch.randn(1, c.out_channels, side, side)
        x = torch.randn(1, c.cond_channels, side, side)
        g = torch.rand(1, c.out_channels, side, side)
    mp = side * side / 1e6
    with torch.no_grad():
        with FlopCounterMode(display=False) as count:
            net.predict_noise(z, x, g)
        denoiser = count.get_total_flops() / mp / 1e9
        with FlopCounterMode(display=False) as count:
            net.schedule.lam(x)
        lam = count.get_total_flops() / mp / 1e9
    return {"denoiser_gflop_per_mp": denoiser, "lambda_gflop_per_mp": lam, "parameters": net.n_parameters()}


def aligned_crops(step: int) -> None:
    """Training and validation crops at offsets that are multiples of ``step`` on the output grid (the package
    crops at any offset).  With ``step`` = 2 every 2×2 cell of a coarse network is one widefield pixel, as at
    inference, where an image starts at a widefield pixel; flips and 90° rotations of an even patch keep that."""

    def crop(pair, patch: int, rng: np.random.Generator, candidates: int):
        height, width = pair.target.shape[-2:]
        best, best_score = None, -np.inf
        pick_structure = rng.random() < 0.8
        for _ in range(candidates if pick_structure else 1):
            r = step * int(rng.integers((height - patch) // step + 1))
            c = step * int(rng.integers((width - patch) // step + 1))
            score = float(pair.target[0, r : r + patch, c : c + patch].var())
            if score > best_score:
                best, best_score = (r, c), score
        r, c = best
        window = (slice(None), slice(r, r + patch), slice(c, c + patch))
        return np.ascontiguousarray(pair.condition[window]), np.ascontiguousarray(pair.target[window])

    data_module._foreground_crop = crop


def training_data(task: str, n: int, seed: int) -> tuple[PairedDataset, object]:
    info = presets.default_metadata(task, f"arch-{task}", tie_method="us-tie")
    inputs, targets = presets.simulate_pairs(task, n, SIM_SIZE[task], seed)
    about = f"{n} simulated pairs, size {SIM_SIZE[task]}, seed {seed}"
    return PairedDataset.from_arrays(inputs, targets, info, description=about, input_pixel_um=info.input_pixel_um), info


def train(task: str, variant: str, data: PairedDataset, info, args: argparse.Namespace) -> TrainedModel:
    settings = TrainSettings(
        steps=args.steps,
        batch_size=8,
        patch_size=64,
        learning_rate=4e-4,
        lr_decay="cosine",
        precision="bf16",
        device="cpu",
        seed=args.seed,
        val_every=max(1, args.steps // 4),
        checkpoint_every=10**6,
    )
    torch.manual_seed(args.seed)  # the same seed gives the same initial weights, as napari-cvdm train
    network = CVDM(architecture(task, variant))
    label, start = f"{task}/{variant}", time.perf_counter()

    def log(event) -> None:
        if event.step % 100 == 0 or event.step == event.total:
            val = f", validation {event.val_loss:.4f}" if event.val_loss is not None else ""
            spent = time.perf_counter() - start
            print(
                f"  {label}: step {event.step}/{event.total}, loss {event.losses['total']:.4f}{val}, {spent:.0f} s",
                flush=True,
            )

    info = info.model_copy(update={"name": f"arch-{task}-{variant}"})
    return drive(iter_train(network, info, data, settings, args.out / f"{task}-{variant}.cvdm"), log)


def score(task: str, model: TrainedModel, n: int, samples: int) -> list[tuple[float, ...]]:
    """Per held-out image: (PSNR, MS-SSIM, PSNR of max(mean, 0)) for SR, (MAE, MS-SSIM) for phase.

    The third SR score clips the mean at 0 (intensities are never negative) before the min–max normalisation,
    which a few negative pixels otherwise dominate: it says how much of a PSNR difference is undershoot.
    """
    steps, scores = DEFAULT_STEPS[task], []
    if task == "sr":
        for j, kind in enumerate(STRUCTURES):
            for k, rng in enumerate(held_out_rngs(TEST_SEED_SR + 10 * j, n)):
                wf, sim, _ = simulate_sr_pair(SRSimulation(structure=kind), 128, rng)
                est = reconstruct(model, wf, n_samples=samples, steps=steps, seed=k, device="cpu").mean
                scores.append(
                    (
                        psnr(est, sim, normalize="minmax"),
                        ms_ssim(est, sim, normalize="minmax"),
                        psnr(np.clip(est, 0, None), sim, normalize="minmax"),
                    )
                )
        return scores
    cases = phase_cases(n)
    cases.append(("skimage cell()", PhaseSimulation(noise_max=0.0), [None]))
    for _, settings, rngs in cases:
        for k, rng in enumerate(rngs):
            stack, phase = real_cell_pair(settings) if rng is None else simulate_phase(settings, 256, rng)[:2]
            truth = phase - phase.mean()
            est = reconstruct(model, stack, n_samples=samples, steps=steps, seed=k, device="cpu").mean
            est = est - est.mean()
            scores.append((mae(est, truth), ms_ssim(est, truth, data_range=settings.max_phase_rad)))
    return scores


def timing(task: str, models: dict[str, TrainedModel], repeats: int) -> dict[str, float]:
    """Fastest seconds of reconstruct() of a 256² input, 8 samples, default steps; the models alternated."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0.5, 1.5, (2, 256, 256) if task == "phase" else (256, 256)).astype(np.float32)
    best = dict.fromkeys(models, float("inf"))
    for model in models.values():  # warm-up
        reconstruct(model, image[..., :64, :64], n_samples=1, steps=1, device="cpu")
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            reconstruct(model, image, n_samples=8, steps=DEFAULT_STEPS[task], device="cpu")
            best[name] = min(best[name], time.perf_counter() - start)
            print(f"  time {task}/{name}: {time.perf_counter() - start:.1f} s", flush=True)
    return best


def paired(new: np.ndarray, old: np.ndarray, higher_is_better: bool) -> str:
    d = new - old
    se = d.std(ddof=1) / np.sqrt(len(d))
    wins = int((d > 0).sum() if higher_is_better else (d < 0).sum())
    return f"{d.mean():+.3f} ± {se:.3f} (better on {wins}/{len(d)})"


def report(results: dict, args: argparse.Namespace) -> str:
    base, lines = args.variants[0], []
    for task in args.tasks:
        metrics = METRICS[task]
        ref = results[task][base]
        heads = " | ".join(f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics)
        lines += [
            f"| {task}: network | parameters | denoiser GFLOP / output MP | λ GFLOP / output MP | FLOPs ÷ | "
            f"reconstruct() 256², 8 samples (s) | training (s) | final validation loss | {heads} |",
            "|---" * (8 + len(metrics)) + "|",
        ]
        notes = []
        for variant in args.variants:
            r = results[task][variant]
            s = np.asarray(r["scores"])
            ratio = ref["flops"]["denoiser_gflop_per_mp"] / r["flops"]["denoiser_gflop_per_mp"]
            cells = " | ".join(
                f"{s[:, i].mean():.4f}" if "SSIM" in m else f"{s[:, i].mean():.3f}" for i, m in enumerate(metrics)
            )
            lines.append(
                f"| {variant} | {r['flops']['parameters'] / 1e6:.2f} M | {r['flops']['denoiser_gflop_per_mp']:.1f} | "
                f"{r['flops']['lambda_gflop_per_mp']:.1f} | {ratio:.2f} | {r['seconds']:.1f} | "
                f"{r['train_seconds']:.0f} | {r['validation_loss']:.4f} | {cells} |"
            )
            if variant != base:
                old = np.asarray(ref["scores"])
                diffs = "; ".join(
                    f"{m} {paired(s[:, i], old[:, i], HIGHER_IS_BETTER[m])}" for i, m in enumerate(metrics)
                )
                notes.append(f"* {task}, {variant} − {base}, per held-out image (mean ± s.e.): {diffs}")
        lines += ["", *notes, ""]
    return "\n".join(lines).rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sr", "phase"], choices=["sr", "phase"])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["full", "unshuffle2", "unshuffle2-fine8"],
        choices=list(VARIANTS),
        help="the first is the reference",
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--n-train", type=int, default=256, help="simulated training pairs per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-test", type=int, default=4, help="held-out images per SR structure / phase case")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="timing repeats (the fastest is kept)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/arch_exact"))
    parser.add_argument("--flops-only", action="store_true", help="print the FLOP counts and stop")
    parser.add_argument("--retrain", action="store_true", help="train again even where --out has the model")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument(
        "--aligned-crops", type=int, default=1, help="crop training patches at multiples of this (1: any offset)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.aligned_crops > 1:
        aligned_crops(args.aligned_crops)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    results: dict = {task: {v: {"flops": flops(task, v)} for v in args.variants} for task in args.tasks}
    for task in args.tasks:
        for v in args.variants:
            f = results[task][v]["flops"]
            print(
                f"{task}/{v}: {f['parameters'] / 1e6:.2f} M parameters, denoiser "
                f"{f['denoiser_gflop_per_mp']:.1f} GFLOP/MP, λ {f['lambda_gflop_per_mp']:.1f} GFLOP/MP",
                flush=True,
            )
    if args.flops_only:
        return
    for task in args.tasks:
        data, info = None, None
        models = {}
        for v in args.variants:
            path = args.out / f"{task}-{v}.cvdm"
            if path.exists() and not args.retrain:
                models[v] = load_model_file(path)
                print(f"{task}/{v}: reusing {path}", flush=True)
            else:
                if data is None:
                    data, info = training_data(task, args.n_train, args.seed)
                print(f"{task}/{v}: training {args.steps} steps", flush=True)
                models[v] = train(task, v, data, info, args)
            training = models[v].info.training
            results[task][v].update(
                train_seconds=training["seconds"], validation_loss=training["validation_loss"], steps=training["steps"]
            )
        for v, model in models.items():
            start = time.perf_counter()
            results[task][v]["scores"] = score(task, model, args.n_test, args.samples)
            print(f"{task}/{v}: scored in {time.perf_counter() - start:.0f} s", flush=True)
        if not args.no_timing:
            for v, seconds in timing(task, models, args.repeats).items():
                results[task][v]["seconds"] = seconds
        else:
            for v in models:
                results[task][v]["seconds"] = float("nan")
    table = report(results, args)
    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    footer = (
        f"\n\n_{args.steps} steps, batch 8, patch 64, seed {args.seed}; {args.n_test} held-out images per SR "
        f"structure / phase case (+ skimage cell()), {args.samples} samples at {DEFAULT_STEPS['sr']} (SR) / "
        f"{DEFAULT_STEPS['phase']} (phase) steps; {args.threads} thread(s); "
        f"{(time.perf_counter() - t0) / 60:.0f} min in all_"
    )
    print("\n" + table + footer)
    (args.out / "results.md").write_text(table + footer + "\n")
    payload = {
        "args": {**vars(args), "out": str(args.out)},
        "commit": commit,
        "torch": torch.__version__,
        "results": results,
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
