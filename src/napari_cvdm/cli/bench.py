"""``napari-cvdm bench``: quality against the baselines, speed (``--speed``) or quality vs NFE (``--nfe``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path


def cmd_bench(args: argparse.Namespace) -> int:
    from ..evaluation.quality import phase_benchmark, sr_benchmark
    from ..evaluation.report import save_figure
    from ..registry import load_model
    from ..tasks import InputError

    if args.n is not None and args.n < 1:
        raise InputError(f"--n {args.n}: give at least 1 test image per row")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    if args.nfe:
        from .sampling import cmd_bench_nfe

        return cmd_bench_nfe(args)
    if args.against and not args.speed:
        raise SystemExit("error: --against times models side by side; it needs --speed")
    if args.against:
        return _speed_side_by_side(args, log)
    if args.speed:
        from ..evaluation.speed import speed_benchmark

        for name in (args.sr_model, args.phase_model):
            if args.task in ("both", "phase" if name == args.phase_model else "sr"):
                table = speed_benchmark(
                    load_model(name),
                    sizes=tuple(args.sizes),
                    n_samples=tuple(args.samples or [args.n_samples]),
                    steps=args.steps,
                    device=args.device,
                    precision=args.precision,
                    repeats=args.repeats,
                    log=log,
                )
                print(f"{table.markdown()}\n\nmodel: {name}\n", flush=True)
        return 0
    outputs, used, diagrams = [], [], {}
    for task, model_name, run, figure in (
        ("sr", args.sr_model, sr_benchmark, "bench_sr.png"),
        ("phase", args.phase_model, phase_benchmark, "bench_phase.png"),
    ):
        if args.task not in (task, "both"):
            continue
        model = None if args.baselines_only else load_model(model_name)
        n = args.n if args.n is not None else (4 if task == "sr" else 6)
        table = run(model, n, args.n_samples, args.steps, log)
        print(table.markdown() + "\n", flush=True)
        if model is not None:
            used.append(f"{model_name} ({args.steps or model.info.sampler.steps} steps)")
            diagrams[task] = {
                "model": str(model_name),
                "n_samples": args.n_samples,
                "steps": args.steps or model.info.sampler.steps,
                "calibrated": bool(model.info.calibrations),
                "rows": table.reliability,
            }
            if args.figures:
                outputs.append(str(save_figure(table, Path(args.figures) / figure)))
    if args.reliability_out:
        import json

        path = Path(args.reliability_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(diagrams, indent=1) + "\n")
        outputs.append(str(path))
    settings = f"{args.n_samples} samples per image, {', '.join(used) or 'no model'}"
    print(f"_{time.perf_counter() - start:.0f} s on this machine; CVDM: {settings}; figures: {outputs or 'none'}_")
    return 0


def _speed_side_by_side(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    """``--speed --against MODEL[:STEPS] ...``: the task's model (at ``--steps``) and each other model timed in turn."""
    from ..evaluation.speed import speed_comparison
    from ..registry import load_model

    if args.task == "both":
        raise SystemExit("error: --against compares models of one task; add --task sr or --task phase")
    name = args.sr_model if args.task == "sr" else args.phase_model
    models = [(name, load_model(name), args.steps)]
    for spec in args.against:
        head, sep, tail = spec.rpartition(":")
        other, steps = (head, int(tail)) if sep and tail.isdigit() else (spec, None)
        models.append((spec, load_model(other), steps))
    for label, model, _ in models[1:]:
        if model.task != models[0][1].task:
            raise SystemExit(f"error: --against {label!r} is a {model.task} model, not {models[0][1].task}")
    for size in args.sizes:
        for n in args.samples or [args.n_samples]:
            table = speed_comparison(
                models, size, n, device=args.device, precision=args.precision, repeats=args.repeats, log=log
            )
            print(table.markdown() + "\n", flush=True)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="models vs classical baselines on the held-out simulated test set")
    b.add_argument("--task", choices=["sr", "phase", "both"], default="both")
    b.add_argument("--sr-model", default="cvdm-sr-widefield")
    b.add_argument("--phase-model", default="cvdm-phase-twoshot")
    b.add_argument("--n", type=int, default=None, help="test images per row (default: 4 for SR, 6 for phase)")
    b.add_argument("--n-samples", type=int, default=8, help="CVDM samples per image")
    b.add_argument("--steps", type=int, default=None, help="CVDM steps (default: the model's)")
    b.add_argument("--figures", default="docs/figures", help="folder for the figures ('' for none)")
    b.add_argument(
        "--reliability-out",
        default="",
        help="write the reliability-diagram bins of every CVDM row (predicted std vs RMS error, raw and calibrated) "
        "to this JSON file (benchmarks/reliability_figure.py draws it)",
    )
    b.add_argument("--baselines-only", action="store_true", help="skip the CVDM models")
    b.add_argument("--speed", action="store_true", help="time 256² and 512² inputs instead of measuring quality")
    b.add_argument("--device", default="auto", help="device for --speed")
    b.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="--speed: input sides (pixels)")
    b.add_argument("--samples", type=int, nargs="+", help="--speed: sample counts (default: --n-samples)")
    b.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="--speed: arithmetic")
    b.add_argument("--repeats", type=int, default=1, help="--speed: time each case this often, keep the fastest")
    b.add_argument(
        "--against",
        nargs="+",
        metavar="MODEL[:STEPS]",
        help="--speed: time these models side by side with --sr-model/--phase-model (at --steps), alternating runs; "
        "each at STEPS, or at its own default steps",
    )
    b.add_argument("--nfe", action="store_true", help="quality and calibration vs NFE for every sampler instead")
    b.add_argument("--results", default="runs/nfe_study.jsonl", help="--nfe: results file (resumes from it)")
    b.add_argument(
        "--samplers",
        nargs="+",
        choices=["ancestral", "ancestral-euler", "gamma", "gamma-eta0", "gamma-ld3"],
        help="--nfe: run only these samplers (default: all)",
    )
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=cmd_bench)
