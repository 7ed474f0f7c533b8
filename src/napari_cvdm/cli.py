"""``napari-cvdm`` command line: predict, train, simulate, models.

The same functions and settings objects as the napari widgets; nothing here imports napari or Qt.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from . import __version__


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_model_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    skip: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
) -> None:
    """One optional flag per field of a flat pydantic model (default None = keep the model's default)."""
    aliases = aliases or {}
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        ann = info.annotation
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        kwargs: dict[str, Any] = {"default": None, "help": info.description or "", "metavar": name.upper()}
        if ann is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            del kwargs["metavar"]
        elif origin is typing.Literal:
            kwargs["choices"] = list(args)
            del kwargs["metavar"]
        elif origin is tuple:
            kwargs.update(nargs=len(args), type=args[0], metavar=tuple(a.__name__.upper() for a in args))
        elif ann in (int, float, str):
            kwargs["type"] = ann
        else:  # Optional[...] and friends
            inner = [a for a in args if a is not type(None)]
            kwargs["type"] = inner[0] if inner and inner[0] in (int, float, str) else str
        flags = [_flag(name), *([aliases[name]] if name in aliases else [])]
        parser.add_argument(*flags, dest=f"{model.__name__}.{name}", **kwargs)


def model_overrides(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    prefix = f"{model.__name__}."
    return {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}


def _progress_line(text: str) -> None:
    sys.stderr.write("\r" + text[:150].ljust(150))
    sys.stderr.flush()


# ------------------------------------------------------------------------------------------------ predict
def _read_input(args: argparse.Namespace) -> tuple[np.ndarray, str]:
    if args.sample:
        from .samples import load_sample

        image, _ = load_sample(args.sample)
        return image, f"sample {args.sample!r}"
    if not args.input:
        raise SystemExit("give an input TIFF (napari-cvdm predict IMAGE.tif) or --sample NAME")
    import tifffile

    from .tasks import InputError

    try:
        return tifffile.imread(args.input), str(args.input)
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        raise InputError(f"could not read {args.input} as a TIFF image ({err}); give a .tif/.tiff file") from err


def write_result(path: Path, result, keep_samples: bool) -> list[Path]:
    """Mean, variance and β map as the channels of one ImageJ TIFF (+ the samples in a second file)."""
    import tifffile

    lead = result.mean.ndim - 2
    data = np.stack([result.mean, result.variance, result.beta_map], axis=lead)  # (..., C, Y, X)
    axes = "TZ"[2 - lead :] + "CYX" if lead else "CYX"
    meta: dict[str, Any] = {"axes": axes, "Labels": ["mean", "variance", "beta map"]}
    kwargs: dict[str, Any] = {}
    if result.pixel_um:
        kwargs["resolution"] = (1 / result.pixel_um, 1 / result.pixel_um)
        meta["unit"] = "um"
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data.astype(np.float32), imagej=True, metadata=meta, **kwargs)
    written = [path]
    if keep_samples and result.samples is not None:
        samples_path = path.with_name(path.stem + "_samples.tif")
        tifffile.imwrite(samples_path, result.samples.astype(np.float32), imagej=True, **kwargs)
        written.append(samples_path)
    return written


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import Progress, iter_reconstruct
    from .settings import ReconstructSettings
    from .zoo import load_model

    settings = ReconstructSettings(**model_overrides(args, ReconstructSettings))
    model = load_model(args.model)
    image, source = _read_input(args)
    start = time.perf_counter()
    gen = iter_reconstruct(model, image, settings)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if isinstance(event, Progress) and not args.quiet:
            _progress_line(f"{event.stage}: {event.done}/{event.total} network evaluations")
    seconds = time.perf_counter() - start
    written = write_result(Path(args.output), result, settings.keep_samples)
    if not args.quiet:
        sys.stderr.write("\n")
    print(
        f"{model.info.name} on {source} {np.shape(image)} → {result.mean.shape} ({result.units}); "
        f"{result.n_samples} samples × {result.nfe_per_sample} steps in {seconds:.1f} s on "
        f"{result.settings['device']}; wrote {', '.join(map(str, written))} (channels: mean, variance, β map)"
    )
    return 0


# ------------------------------------------------------------------------------------------------ train
@contextlib.contextmanager
def _stop_on_signals(token: Any, say: Callable[[str], None]) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM, e.g. from torchrun) stops after the current step and saves; the second aborts."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        say("\nstopping after this step; the model and checkpoint are saved (Ctrl-C again to abort)")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from .checkpoint import checkpoint_path
    from .distributed import env_rank
    from .predict import CancelToken
    from .settings import TrainJob, TrainSettings
    from .train import run_job

    config: dict[str, Any] = {}
    if args.config:
        config = yaml.safe_load(Path(args.config).read_text()) or {}
    config.update(model_overrides(args, TrainJob))
    config["train"] = {**config.get("train", {}), **model_overrides(args, TrainSettings)}
    job = TrainJob.model_validate(config)
    main_process = env_rank() == 0  # under torchrun only rank 0 logs
    quiet = args.quiet or not main_process

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    ckpt = checkpoint_path(job.output)
    if job.resume:
        say(f"resuming from {ckpt}")
    elif ckpt.is_file():
        say(f"note: starting over; {ckpt} will be overwritten (use --resume to continue it instead)")
    token = CancelToken()
    last_val = None
    with _stop_on_signals(token, say):
        gen = run_job(job, stop=token)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                model = stop.value
                break
            last_val = p.val_loss if p.val_loss is not None else last_val
            if not quiet and (p.step % args.log_every == 0 or p.step == p.total or p.val_loss is not None):
                terms = " ".join(f"{k}={v:.4g}" for k, v in p.losses.items())
                val = f" val={last_val:.4g}" if last_val is not None else ""
                eta = f"{p.seconds:.0f} s, eta {p.eta_seconds:.0f} s"
                print(f"step {p.step}/{p.total} {terms}{val} ({eta})", flush=True)
    if main_process:
        steps = model.info.training["steps"]
        stopped = f" (stopped at step {steps}; --resume continues)" if steps < job.train.steps else ""
        print(f"wrote {job.output} and {ckpt.name} ({model.network.n_parameters()} parameters){stopped}")
    return 0


# ------------------------------------------------------------------------------------------------ simulate
def cmd_simulate(args: argparse.Namespace) -> int:
    from .physics import PhaseSimulation, SRSimulation, write_dataset

    model = SRSimulation if args.task == "sr" else PhaseSimulation
    settings = model(**model_overrides(args, model))
    out = write_dataset(
        args.task,
        args.n,
        args.size,
        args.output,
        seed=args.seed,
        settings=settings,
        overwrite=args.overwrite,
        progress=None if args.quiet else lambda k, n: _progress_line(f"simulated {k}/{n} pairs"),
    )
    if not args.quiet:
        sys.stderr.write("\n")
    print(f"wrote {args.n} {args.task} pairs to {out} (input/, target/, manifest.json)")
    return 0


# ------------------------------------------------------------------------------------------------ models
def cmd_models(args: argparse.Namespace) -> int:
    from .zoo import list_models, load_model

    names = list_models()
    if not names:
        print("no models installed")
    for name in names:
        info = load_model(name).metadata
        if args.json:
            print(json.dumps({"name": name, **info}))
        else:
            print(f"{name}: {info['task']}, scale ×{info['scale_factor']}, input pixel {info['input_pixel_um']} µm")
    return 0


# ------------------------------------------------------------------------------------------------ bench
def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import phase_benchmark, save_figure, sr_benchmark
    from .zoo import load_model

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    if args.nfe:
        from .cli_sampling import cmd_bench_nfe

        return cmd_bench_nfe(args)
    if args.speed:
        from .bench import speed_benchmark

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
    outputs, used = [], []
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
            if args.figures:
                outputs.append(str(save_figure(table, Path(args.figures) / figure)))
    settings = f"{args.n_samples} samples per image, {', '.join(used) or 'no model'}"
    print(f"_{time.perf_counter() - start:.0f} s on this machine; CVDM: {settings}; figures: {outputs or 'none'}_")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .physics import PhaseSimulation, SRSimulation
    from .settings import ReconstructSettings, TrainJob, TrainSettings

    parser = argparse.ArgumentParser(prog="napari-cvdm", description="CVDM restoration for microscopy")
    parser.add_argument("--version", action="version", version=f"napari-cvdm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="reconstruct an image: mean, variance and β map")
    p.add_argument("input", nargs="?", help="input TIFF: SR (H, W) or stack; phase (2, H, W) = (I(−d), I(+d))")
    p.add_argument("--sample", help="use bundled sample data instead: 'widefield' or 'defocus-pair'")
    p.add_argument("--model", default="cvdm-sr-widefield", help="registered model name or .cvdm path")
    p.add_argument("-o", "--output", required=True, help="output TIFF (channels: mean, variance, β map)")
    p.add_argument("-q", "--quiet", action="store_true")
    add_model_flags(p, ReconstructSettings)
    p.set_defaults(func=cmd_predict)

    t = sub.add_parser("train", help="train or fine-tune a model on paired data")
    t.add_argument("--config", help="YAML file with the TrainJob fields (flags override it)")
    t.add_argument("--log-every", type=int, default=100)
    t.add_argument("-q", "--quiet", action="store_true")
    add_model_flags(t, TrainJob, skip=("train",), aliases={"output": "-o"})
    add_model_flags(t, TrainSettings)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("simulate", help="write a simulated paired TIFF dataset with a manifest")
    sims = s.add_subparsers(dest="task", required=True)
    for task, model in (("sr", SRSimulation), ("phase", PhaseSimulation)):
        sp = sims.add_parser(task, help=f"{task} pairs")
        sp.add_argument("--n", type=int, required=True, help="number of pairs")
        sp.add_argument("--size", type=int, default=128, help="input image side (pixels)")
        sp.add_argument("-o", "--output", required=True, help="output folder")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--overwrite", action="store_true")
        sp.add_argument("-q", "--quiet", action="store_true")
        add_model_flags(sp, model)
        sp.set_defaults(func=cmd_simulate)

    b = sub.add_parser("bench", help="models vs classical baselines on the held-out simulated test set")
    b.add_argument("--task", choices=["sr", "phase", "both"], default="both")
    b.add_argument("--sr-model", default="cvdm-sr-widefield")
    b.add_argument("--phase-model", default="cvdm-phase-twoshot")
    b.add_argument("--n", type=int, default=None, help="test images per row (default: 4 for SR, 6 for phase)")
    b.add_argument("--n-samples", type=int, default=8, help="CVDM samples per image")
    b.add_argument("--steps", type=int, default=None, help="CVDM steps (default: the model's)")
    b.add_argument("--figures", default="docs/figures", help="folder for the figures ('' for none)")
    b.add_argument("--baselines-only", action="store_true", help="skip the CVDM models")
    b.add_argument("--speed", action="store_true", help="time 256² and 512² inputs instead of measuring quality")
    b.add_argument("--device", default="auto", help="device for --speed")
    b.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="--speed: input sides (pixels)")
    b.add_argument("--samples", type=int, nargs="+", help="--speed: sample counts (default: --n-samples)")
    b.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="--speed: arithmetic")
    b.add_argument("--repeats", type=int, default=1, help="--speed: time each case this often, keep the fastest")
    b.add_argument("--nfe", action="store_true", help="quality and calibration vs NFE for every sampler instead")
    b.add_argument("--results", default="runs/nfe_study.jsonl", help="--nfe: results file (resumes from it)")
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=cmd_bench)

    from .cli_sampling import add_commands

    add_commands(sub)

    m = sub.add_parser("models", help="list installed models")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .data import DataError
    from .model.files import ModelFileError
    from .tasks import InputError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        InputError,
        ModelFileError,
        DataError,
        CheckpointError,
        ValidationError,
        FileExistsError,
        FileNotFoundError,
    ) as err:
        print(f"napari-cvdm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nnapari-cvdm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
