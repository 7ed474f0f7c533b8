"""CLI commands about sampling speed: ``learn-grid`` (LD3 grids stored in a model) and ``bench --nfe``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..tasks import InputError


def _log(quiet: bool):
    return (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def _training_images(args: argparse.Namespace, task: str) -> list:
    """The user's input TIFFs (``--inputs``), or simulated inputs from the training seed."""
    if args.inputs:
        import tifffile

        folder = Path(args.inputs)
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".tif", ".tiff"))
        if not files:
            raise InputError(f"no .tif/.tiff files in {folder}; point --inputs at a folder of input images")
        return [tifffile.imread(p) for p in files]
    from ..training.presets import simulate_pairs

    size = 128 if task == "super-resolution" else 192  # the default models' training image sizes
    inputs, _ = simulate_pairs("sr" if task == "super-resolution" else "phase", args.simulate_n, size, args.seed)
    return inputs


def cmd_learn_grid(args: argparse.Namespace) -> int:
    from ..model.files import save_model
    from ..registry import load_model
    from ..sampling.ld3_fit import learn_grids

    model = load_model(args.model)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite or choose another -o")
    images = _training_images(args, model.task)
    start = time.perf_counter()
    fits = learn_grids(
        model,
        images,
        args.steps,
        n_patches=args.patches,
        patch=args.patch_size,
        iterations=args.iterations,
        teacher_steps=args.teacher_steps,
        slack=args.slack,
        seed=args.seed,
        log=_log(args.quiet),
    )
    defaults = {}  # the benchmarked defaults (docs/performance.md, `bench --nfe`)
    if args.default_steps is not None:
        defaults |= {"steps": args.default_steps, "time_grid": None}
    if args.default_eta is not None:
        defaults["eta"] = args.default_eta
    model.info.sampler = model.info.sampler.model_copy(update=defaults)
    save_model(output, model.network, model.info)
    for fit in fits:
        gain = 100 * (1 - fit.val_loss / fit.val_loss_start) if fit.val_loss_start > 0 else 0.0
        grid = ", ".join(f"{t:.4f}" for t in fit.grid)
        print(
            f"{fit.steps} steps: held-out MSE to the {args.teacher_steps}-step teacher {fit.val_loss_start:.3g} → "
            f"{fit.val_loss:.3g} ({gain:.0f} % lower); grid [{grid}]"
        )
    print(f"wrote {output} in {time.perf_counter() - start:.0f} s")
    return 0


def cmd_bench_nfe(args: argparse.Namespace) -> int:
    from ..evaluation.nfe import run_study, summarize
    from ..registry import load_model

    results = Path(args.results)
    for task, name in (("sr", args.sr_model), ("phase", args.phase_model)):
        if args.task not in (task, "both"):
            continue
        samplers = tuple(args.samplers) if args.samplers else None
        model = load_model(name)
        records = run_study(model, task, results, n_samples=args.n_samples, log=_log(args.quiet), samplers=samplers)
        table, picks = summarize(records, task)
        print(f"{table.markdown()}\n\nmodel: {name}; smallest NFE within 1 % MS-SSIM of 200 NFE: {picks}\n")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("learn-grid", help="learn few-step time grids (LD3) and store them in a model file")
    g.add_argument("--model", required=True, help="registered model name or .cvdm path")
    g.add_argument("-o", "--output", required=True, help="the model file to write, with the learned grids")
    g.add_argument("--steps", type=int, nargs="+", default=[5, 10], help="step counts to learn grids for")
    g.add_argument("--inputs", help="folder of input TIFFs to learn on (default: simulated training inputs)")
    g.add_argument("--simulate-n", type=int, default=8, help="simulated input images when no --inputs")
    g.add_argument("--patches", type=int, default=16, help="patches (a quarter validate)")
    g.add_argument("--patch-size", type=int, default=96, help="patch side on the output grid")
    g.add_argument("--iterations", type=int, default=120)
    g.add_argument("--teacher-steps", type=int, default=200)
    g.add_argument("--slack", type=float, default=0.0, help="LD3 slack radius r (relative to ‖z₁‖)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--default-steps", type=int, help="also make this the model's default number of steps")
    g.add_argument("--default-eta", type=float, help="also set the model's default η (1 stochastic, 0 deterministic)")
    g.add_argument("--overwrite", action="store_true")
    g.add_argument("-q", "--quiet", action="store_true")
    g.set_defaults(func=cmd_learn_grid)
