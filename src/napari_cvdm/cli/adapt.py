"""``napari-cvdm adapt``: adapt a model to your microscope by simulation, without paired data.

The camera noise is estimated from your own raw image (or stated: ``--photons`` / ``--gain``, ``--read-noise``,
where the image is sampled too coarsely to show it), training pairs are simulated with your optics and that
noise, the model is fine-tuned on them and recalibrated on held-out simulated pairs, and the result is saved as a
user model (listed by ``napari-cvdm models`` and in the napari model picker).  Ctrl-C stops after the current
step and saves; ``--resume`` continues from the checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..settings import ADAPT_PAIRS, ADAPT_SIZE, ADAPT_TRAIN, adapt_train_settings


def cmd_adapt(args: argparse.Namespace) -> int:
    from .._runtime import CancelToken, Progress, drive
    from ..io.readers import open_source
    from ..model.metadata import parse_length_um
    from ..registry import load_model, user_model_dir
    from ..tasks import InputError
    from ..training.adapt import Microscope, iter_adapt, resolution_warning
    from ..training.loop import TrainProgress
    from .flags import progress_line, stop_on_signals

    base = load_model(args.model)
    with open_source(Path(args.image), plane_ndim=3 if base.task == "phase" else 2) as source:
        image, file_pixel = source.plane(0), source.pixel_um
    try:
        pixel = parse_length_um(args.pixel_size, "--pixel-size", 20.0) or file_pixel
        wavelength = parse_length_um(args.wavelength, "--wavelength", 5.0) or base.info.wavelength_um
        defocus = parse_length_um(args.defocus, "--defocus", 1000.0)
    except ValueError as err:
        raise InputError(str(err)) from None
    if pixel is None:
        raise InputError(
            f"{args.image} states no pixel size (no OME-TIFF or ImageJ calibration in µm); give --pixel-size, e.g. "
            "--pixel-size 0.108 or 108nm"
        )
    if wavelength is None:
        raise InputError("give --wavelength (the model states none)")
    scope = Microscope(pixel, wavelength, args.na, defocus if base.task == "phase" else None)
    if base.task == "phase" and scope.defocus_um is None:
        scope = Microscope(pixel, wavelength, None, base.info.defocus_um)
    name = args.name or f"{base.info.name}-adapted"
    output = Path(args.output) if args.output else user_model_dir() / f"{name}.cvdm"
    if output.exists() and not (args.resume or args.overwrite):
        raise FileExistsError(f"{output} exists; give another --name, --resume a stopped run, or --overwrite")
    train = adapt_train_settings(
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        val_fraction=args.val_fraction,
        device=args.device,
        seed=args.seed,
        checkpoint_every=max(1, min(100, args.steps)),
    )
    stop = CancelToken()
    start = time.perf_counter()

    def show(event: object) -> None:
        if args.quiet:
            return
        if isinstance(event, TrainProgress):
            loss = sum(event.losses.values())
            progress_line(f"fine-tuning on the simulated pairs: step {event.step}/{event.total}, loss {loss:.4g}")
        elif isinstance(event, Progress):
            progress_line(f"{event.stage} ({event.done}/{event.total})")

    job = iter_adapt(
        base, image, scope, output, name=name, n_pairs=args.n_pairs, size=args.size, train=train,
        offset=args.offset, photons=args.photons, gain_e_per_unit=args.gain, read_noise_e=args.read_noise,
        seed=args.seed, resume=args.resume, stop=stop,
    )  # fmt: skip
    with stop_on_signals(stop, lambda text: print(text, file=sys.stderr, flush=True)):
        model = drive(job, show)  # the token is the job's own stop signal: it stops after the step and saves
    seconds = time.perf_counter() - start
    if not args.quiet:
        sys.stderr.write("\n")
    adapted = model.info.training.get("adapted", {})
    print(
        f"{name}: {base.info.name} adapted to pixel {pixel * 1000:.1f} nm, λ {wavelength * 1000:.0f} nm"
        + (f", NA {args.na:g}" if args.na else "")
        + (f", d {scope.defocus_um:g} µm" if base.task == "phase" else "")
        + f" in {seconds:.0f} s on {train.device}; noise: {adapted.get('noise', {}).get('note', '')}; "
        f"{model.info.training.get('calibration', '')}; saved {output} (in the model picker)"
    )
    if (warning := resolution_warning(adapted.get("resolution"))) is not None:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adapt", help="adapt a model to your microscope by simulation (no paired data needed)")
    p.add_argument("image", help="one raw image of your microscope (TIFF / OME-TIFF / zarr): its noise is measured")
    p.add_argument("--model", default="cvdm-sr-widefield", help="registered model name or .cvdm path to adapt")
    p.add_argument("--pixel-size", help="input pixel in the sample, µm or with a unit (108nm); default: the file's")
    p.add_argument("--wavelength", help="SR: emission λ, phase: illumination λ (µm or 670nm); default: the model's")
    p.add_argument("--na", type=float, help="SR: detection NA of the objective (required for SR)")
    p.add_argument("--defocus", help="phase: d of the planes at ±d (µm or with a unit); default: the model's")
    p.add_argument(
        "--camera-offset",
        "--offset",
        dest="offset",
        type=float,
        default=0.0,
        help="camera offset (dark level) in image units, as predict's --camera-offset (0: offset-subtracted)",
    )
    stated = p.add_mutually_exclusive_group()
    stated.add_argument(
        "--photons",
        type=float,
        help="SR: mean photo-electrons on the image's foreground, instead of estimating the noise (needed for images "
        "sampled coarser than Nyquist λ/(4·NA), e.g. 108 nm at NA 1.45)",
    )
    stated.add_argument(
        "--gain", type=float, help="SR: camera gain in photo-electrons per image unit (e⁻/ADU), instead of --photons"
    )
    p.add_argument(
        "--read-noise",
        type=float,
        help="SR: read noise σ in e⁻ of the image as given (default: estimated; with --photons/--gain 6 e⁻ assumed)",
    )
    p.add_argument("--name", help="name of the adapted model (default: <model>-adapted)")
    p.add_argument("-o", "--output", help="model file to write (default: the user model folder, <name>.cvdm)")
    p.add_argument("--n-pairs", type=int, default=ADAPT_PAIRS, help="simulated training pairs (a quarter held out)")
    p.add_argument("--size", type=int, default=ADAPT_SIZE, help="input side of each simulated pair (pixels)")
    p.add_argument("--steps", type=int, default=ADAPT_TRAIN["steps"], help="fine-tuning steps")
    p.add_argument("--batch-size", type=int, default=ADAPT_TRAIN["batch_size"])
    p.add_argument("--patch-size", type=int, default=ADAPT_TRAIN["patch_size"])
    held_out = "simulated pairs held out for recalibration"
    p.add_argument("--val-fraction", type=float, default=ADAPT_TRAIN["val_fraction"], help=held_out)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue a stopped run from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file of that name")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_adapt)
