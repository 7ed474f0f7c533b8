"""``napari-cvdm calibrate``: store calibrated uncertainty for one or more sampler settings in a model file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .flags import progress_line


def _pairs(args: argparse.Namespace, task: str) -> tuple[list, str]:
    """The user's validation pairs (``--inputs`` / ``--targets``, matched by file name) or simulated ones."""
    from ..evaluation.calibrate import simulated_calibration_pairs
    from ..tasks import InputError

    if bool(args.inputs) != bool(args.targets):
        raise InputError("give both --inputs and --targets (folders of matching TIFFs), or neither (simulated pairs)")
    if not args.inputs:
        if args.simulate_optics == "random" and task != "super-resolution":
            raise InputError("--simulate-optics random exists for super-resolution models only")
        return simulated_calibration_pairs(task, args.n, optics=args.simulate_optics)
    from ..training.data import match_folders, read_tiff

    matched = match_folders(args.inputs, args.targets)
    pairs = [(read_tiff(i)[0], read_tiff(t)[0]) for _, i, t in matched]
    return pairs, f"{len(pairs)} validation pairs from {args.inputs} / {args.targets}"


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .._runtime import Progress, drive
    from ..evaluation.calibrate import SamplerSetting, iter_calibrate, with_calibrations
    from ..model.files import save_model
    from ..registry import load_model

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite or choose another -o")
    model = load_model(args.model)
    pairs, about = _pairs(args, model.task)
    settings = [SamplerSetting(steps=s, method=args.method, eta=args.eta) for s in (args.steps or [None])]
    start = time.perf_counter()

    def show(event: object) -> None:
        if isinstance(event, Progress) and not args.quiet:
            progress_line(f"{event.stage} ({event.done}/{event.total} reconstructions)")

    measured: list = []
    job = iter_calibrate(
        model, pairs, settings, n_samples=args.n_samples, seed=args.seed, data=about,
        by_noise=not args.no_noise_bins, measurements=measured,
    )  # fmt: skip
    calibrations = drive(job, show)
    if not args.quiet:
        sys.stderr.write("\n")
    save_model(output, model.network, with_calibrations(model.info, calibrations))
    if args.save_measurements:
        _save_measurements(Path(args.save_measurements), measured)
    for c in calibrations:
        ratio = c.calibrated_std[len(c.calibrated_std) // 2] / c.raw_std[len(c.raw_std) // 2]
        which = "all images" if c.noise_xi is None else f"estimated noise ξ {c.noise_xi[0]:.3f}–{c.noise_xi[1]:.3f}"
        print(
            f"{c.method}, η = {c.eta:g}, {c.steps} steps, {c.n_samples} samples, {which}: posterior std ≈ "
            f"{ratio:.2f} × the raw sample std at its median, smoothing {c.smoothing_px:g} px, 90 % interval = mean ± "
            f"{c.interval_z['0.9']:.2f} × calibrated std ({c.n_images} images, {c.n_pixels:,} pixels)"
        )
    print(f"wrote {output} in {time.perf_counter() - start:.0f} s")
    return 0


def _save_measurements(path: Path, measured: list[dict]) -> None:
    """Per setting and image: the raw variance, the error of the mean (network units) and the ξ estimate (NaN:
    none), in one .npz, so that a calibration can be refitted without reconstructing again."""
    import numpy as np

    arrays = {}
    for s_idx, m in enumerate(measured):
        key = f"{m['method']}_eta{m['eta']:g}_steps{m['steps']}_n{m['n_samples']}"
        arrays[f"{s_idx}/{key}/variances"] = np.stack(m["variances"]).astype(np.float32)
        arrays[f"{s_idx}/{key}/errors"] = np.stack(m["errors"]).astype(np.float32)
        arrays[f"{s_idx}/{key}/noise_xi"] = np.array([np.nan if x is None else x for x in m["noise_xi"]], float)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="calibrate a model's uncertainty on held-out pairs and store it in the model file"
    )
    p.add_argument("--model", required=True, help="registered model name or .cvdm path")
    p.add_argument("-o", "--output", required=True, help="the model file to write, with the calibration")
    p.add_argument("--steps", type=int, nargs="+", help="steps to calibrate (default: the model's default)")
    p.add_argument("--method", choices=["gamma", "ancestral", "ancestral-euler"], help="sampler (default: model's)")
    p.add_argument("--eta", type=float, help="γ-sampler η (default: the model's)")
    p.add_argument("--n-samples", type=int, default=8, help="samples per image (as the reconstructions will use)")
    p.add_argument("--n", type=int, default=16, help="simulated held-out pairs when no --inputs/--targets")
    p.add_argument(
        "--simulate-optics",
        choices=["nominal", "random"],
        default="nominal",
        help="simulated pairs at the model's optics, or (SR) with the randomised optics of train --simulate-optics",
    )
    p.add_argument("--inputs", help="folder of the user's validation input TIFFs (never the training pairs)")
    p.add_argument("--targets", help="folder of the matching target TIFFs (same file names)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument(
        "--no-noise-bins",
        action="store_true",
        help="phase: fit only the calibration pooled over all noise levels, not one per bin of the estimated noise ξ",
    )
    p.add_argument(
        "--save-measurements",
        help="also write the per-image raw variances, errors (network units) and noise estimates to this .npz",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_calibrate)
