"""``napari-cvdm train``: train or fine-tune from a TrainJob (flags or YAML); Ctrl-C stops and saves."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .flags import OPTICS_FLAGS, add_model_flags, add_optics_flags, model_overrides, progress_line, stop_on_signals


def cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from .._runtime import CancelToken, Progress, drive
    from ..settings import PairOptics, TrainJob, TrainSettings
    from ..training.checkpoint import checkpoint_path
    from ..training.distributed import env_rank
    from ..training.jobs import run_job
    from ..training.loop import TrainProgress
    from ..training.optics import noise_change, optics_change, resolution_change

    config: dict[str, Any] = {}
    if args.config:
        config = yaml.safe_load(Path(args.config).read_text()) or {}
    config.update(model_overrides(args, TrainJob))
    config["train"] = {**config.get("train", {}), **model_overrides(args, TrainSettings)}
    config["optics"] = {**config.get("optics", {}), **model_overrides(args, PairOptics)}
    job = TrainJob.model_validate(config)
    main_process = env_rank() == 0  # under torchrun only rank 0 logs
    quiet = args.quiet or not main_process

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    ckpt = checkpoint_path(job.output)
    if Path(job.output).exists() and not (job.resume or args.overwrite):  # before any data is read or simulated
        raise FileExistsError(
            f"{job.output} exists; choose another -o, --resume a stopped run of it, or add --overwrite to replace it"
        )
    if job.resume:
        say(f"resuming from {ckpt}")
    elif ckpt.is_file():
        say(f"note: starting over; {ckpt} will be overwritten (use --resume to continue it instead)")
    pairs = None
    if job.input_dir is not None:  # the user's pairs: read (and refused) before the model is touched
        from ..io.pairs import read_folders

        pairs = read_folders(job.input_dir, job.target_dir, job.plus_dir)
    token = CancelToken()
    last_val = None

    def log(p: TrainProgress | Progress) -> None:
        nonlocal last_val
        if isinstance(p, Progress):  # the recalibration after training
            if not quiet:
                progress_line(f"{p.stage} ({p.done}/{p.total})")
            return
        last_val = p.val_loss if p.val_loss is not None else last_val
        if not quiet and (p.step % args.log_every == 0 or p.step == p.total or p.val_loss is not None):
            terms = " ".join(f"{k}={v:.4g}" for k, v in p.losses.items())
            val = f" val={last_val:.4g}" if last_val is not None else ""
            eta = f"{p.seconds:.0f} s, eta {p.eta_seconds:.0f} s"
            print(f"step {p.step}/{p.total} {terms}{val} ({eta})", flush=True)

    with stop_on_signals(token, say):
        # the token is the job's own stop signal (it saves and returns the model), so drive() does not watch it
        model = drive(run_job(job, stop=token, pairs=pairs), log)
    if main_process:
        steps = model.info.training["steps"]
        stopped = f" (stopped at step {steps}; --resume continues)" if steps < job.train.steps else ""
        if not quiet:
            sys.stderr.write("\n")
        print(f"wrote {job.output} and {ckpt.name} ({model.network.n_parameters()} parameters){stopped}")
        if (change := optics_change(model.info)) is not None:
            print(f"optics: {change}")
        if (noise := noise_change(model.info)) is not None:
            print(f"noise: {noise}")
        if (resolution := resolution_change(model.info)) is not None:
            print(f"warning: {resolution}", file=sys.stderr)
        if "calibration" in model.info.training:
            print(f"uncertainty: {model.info.training['calibration']}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    from ..settings import PairOptics, TrainJob, TrainSettings

    t = sub.add_parser("train", help="train or fine-tune a model on paired data")
    t.add_argument("--config", help="YAML file with the TrainJob fields (flags override it)")
    t.add_argument("--log-every", type=int, default=100)
    t.add_argument("-q", "--quiet", action="store_true")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model file at -o (and its .ckpt)")
    add_model_flags(t, TrainJob, skip=("train", "optics"), aliases={"output": "-o"})
    add_optics_flags(t, PairOptics, "else the base model's (--input-dir pairs)")
    add_model_flags(t, PairOptics, skip=tuple(OPTICS_FLAGS))  # --camera-offset
    add_model_flags(t, TrainSettings)
    t.set_defaults(func=cmd_train)
