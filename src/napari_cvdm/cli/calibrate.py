"""``napari-cvdm calibrate``: store calibrated uncertainty for one or more sampler settings in a model file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .flags import OPTICS_FLAGS, add_model_flags, add_optics_flags, model_overrides, progress_line
from .predict import checked_device, stated_pixel

if TYPE_CHECKING:
    from ..evaluation.calibrate import CalibrationPairs


def _pairs(args: argparse.Namespace, model: Any) -> CalibrationPairs:
    """The user's validation pairs (``--inputs`` / ``--targets``, matched by file name), each reconstructed with
    the optics stated for them (flags, else the pixel size their files state), or simulated ones."""
    from ..evaluation.calibrate import CalibrationPairs, simulated_calibration_pairs
    from ..settings import PairOptics
    from ..tasks import InputError

    if bool(args.inputs) != bool(args.targets):
        raise InputError("give both --inputs and --targets (folders of matching TIFFs), or neither (simulated pairs)")
    if args.plus and (not args.inputs or model.task != "phase"):
        raise InputError(
            f"--plus (a folder of I(+d) TIFFs) goes with --inputs (the I(−d) ones) of a phase model; "
            f"{'this model is ' + model.task if args.inputs else 'give --inputs and --targets as well'}"
        )
    stated = PairOptics(**model_overrides(args, PairOptics))  # a bad value: one line, by flag
    optics = stated.stated()
    if not args.inputs:
        if optics or stated.camera_offset:
            given = ", ".join(OPTICS_FLAGS[k][0] for k in optics) or "--camera-offset"
            raise InputError(
                f"{given}: for your own pairs (--inputs / --targets) only; simulated pairs have the model's optics"
            )
        return simulated_calibration_pairs(model.task, args.n, optics=args.simulate_optics)
    from ..io.pairs import read_folders
    from ..training.optics import pairs_pixel_um

    raw = read_folders(args.inputs, args.targets, args.plus)
    # the pixel size as predict takes it: stated, else the files', else refused for a model that states its optics
    name = f"the input folder {args.inputs}"
    stated, _ = stated_pixel(stated, model, name, pairs_pixel_um(raw, stated.pixel_size_um), "its files' metadata")
    optics = stated.stated()
    pairs = list(zip(raw.inputs, raw.targets, strict=True))
    folders = f"{args.inputs} + {args.plus}" if args.plus else args.inputs
    about = f"{len(pairs)} validation pairs from {folders} / {args.targets}"
    return CalibrationPairs(
        pairs, about, stated_optics=[dict(optics) for _ in pairs], camera_offset=stated.camera_offset
    )


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .._runtime import Progress, drive
    from ..evaluation.calibrate import SamplerSetting, iter_calibrate, with_calibrations
    from ..model.files import save_model
    from ..registry import load_model
    from ..sampling.calibration import CalibrationError

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite or choose another -o")
    checked_device(args.device)
    model = load_model(args.model)
    start = time.perf_counter()
    if args.from_measurements:
        from ..evaluation.calibrate import fit_measured

        measured, about = load_measurements(Path(args.from_measurements), model.info.name)
        calibrations = [
            c for m in measured for c in fit_measured(m, about, by_condition=not args.no_bins, task=model.info.task)
        ]
    else:
        held_out = _pairs(args, model)
        about = held_out.about
        steps = dict.fromkeys(args.steps or [None])  # each once, in the order given
        settings = [SamplerSetting(steps=s, method=args.method, eta=args.eta) for s in steps]

        def show(event: object) -> None:
            if isinstance(event, Progress) and not args.quiet:
                progress_line(f"{event.stage} ({event.done}/{event.total} reconstructions)")

        measured = []
        job = iter_calibrate(
            model, held_out.pairs, settings, n_samples=args.n_samples, seed=args.seed, data=about, device=args.device,
            by_condition=not args.no_bins, measurements=measured, psf_fwhm_px=held_out.psf_fwhm_px,
            stated_optics=held_out.stated_optics, camera_offset=held_out.camera_offset,
        )  # fmt: skip
        try:
            calibrations = drive(job, show)
        except MemoryError as err:
            kept = (
                f"the reconstructions are saved in {args.save_measurements}: refit them with --from-measurements "
                f"{args.save_measurements} on a machine with more memory"
                if args.save_measurements and measured
                else "pass --save-measurements FILE to keep the reconstructions for a refit"
            )
            pixels = sum(e.size for m in measured for e in m["errors"])
            raise CalibrationError(
                f"ran out of memory fitting the calibration on {pixels:,} pixels (about 110 bytes each); {kept}, or "
                "calibrate on fewer or smaller pairs"
            ) from err
        finally:  # each setting's reconstructions are kept even when its fit (or a later setting) fails
            if not args.quiet:
                sys.stderr.write("\n")
            if args.save_measurements and measured:
                save_measurements(Path(args.save_measurements), measured, about, model.info.name)
    save_model(output, model.network, with_calibrations(model.info, calibrations))
    for c in calibrations:
        ratio = c.calibrated_std[len(c.calibrated_std) // 2] / c.raw_std[len(c.raw_std) // 2]
        which = (
            f"estimated noise ξ {c.noise_xi[0]:.3f}–{c.noise_xi[1]:.3f}" if c.noise_xi is not None
            else f"PSF width {c.psf_factor[0]:.2f}–{c.psf_factor[1]:.2f}×" if c.psf_factor is not None
            else f"set-ups resampled from λ·d/p² {c.fresnel_factor[0]:.2f}–{c.fresnel_factor[1]:.2f}×"
            if c.fresnel_factor is not None
            else "all images"
        )  # fmt: skip
        of = "the raw sample std"
        if c.feature_weight > 0:
            which += f", score blended with the {c.score_feature} (w = {c.feature_weight:g}, {c.feature_px:g} px)"
            of = "the score"
        print(
            f"{c.method}, η = {c.eta:g}, {c.steps} steps, {c.n_samples} samples, {which}: posterior std ≈ "
            f"{ratio:.2f} × {of} at its median, smoothing {c.smoothing_px:g} px, 90 % interval = mean ± "
            f"{c.interval_z['0.9']:.2f} × calibrated std ({c.n_images} images, {c.n_pixels:,} pixels)"
        )
    print(f"wrote {output} in {time.perf_counter() - start:.0f} s")
    return 0


def save_measurements(path: Path, measured: list[dict], about: str, model_name: str) -> None:
    """Per setting and image: the raw variance, the error of the mean, the mean (network units) and the conditions
    (noise ξ estimate, PSF width factor; NaN: none), in one .npz with what the pairs were, so that a calibration can
    be refitted without reconstructing again (``--from-measurements``)."""
    import numpy as np

    from ..sampling.calibration_bins import CONDITIONS

    arrays = {"about": np.array(about), "model": np.array(model_name)}
    for s_idx, m in enumerate(measured):
        key = f"{s_idx}/{m['method']}_eta{m['eta']:g}_steps{m['steps']}_n{m['n_samples']}"
        arrays[f"{key}/variances"] = np.stack(m["variances"]).astype(np.float32)
        arrays[f"{key}/errors"] = np.stack(m["errors"]).astype(np.float32)
        arrays[f"{key}/means"] = np.stack(m["means"]).astype(np.float32)
        for condition in CONDITIONS:
            arrays[f"{key}/{condition}"] = np.array([np.nan if x is None else x for x in m[condition]], float)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def load_measurements(path: Path, model_name: str) -> tuple[list[dict], str]:
    """The records :func:`save_measurements` wrote, and what the pairs were; refuses another model's."""
    import re

    import numpy as np

    from ..sampling.calibration_bins import CONDITIONS
    from ..tasks import InputError

    if not path.is_file():
        raise FileNotFoundError(f"no measurements file {path}: write one with --save-measurements")
    with np.load(path, allow_pickle=False) as data:
        measured_on = str(data["model"]) if "model" in data.files else model_name
        if measured_on != model_name:
            raise InputError(
                f"{path} was measured with the model {measured_on!r}, not {model_name!r}: refit with --model "
                f"{measured_on}, or measure this model (without --from-measurements)"
            )
        keys = sorted({k.rsplit("/", 1)[0] for k in data.files if "/" in k}, key=lambda k: int(k.split("/")[0]))
        measured = []
        for key in keys:
            match = re.fullmatch(r"\d+/(\S+)_eta([\d.e+-]+)_steps(\d+)_n(\d+)", key)
            if match is None or f"{key}/errors" not in data.files:
                raise InputError(f"{path} is not a measurements file of napari-cvdm calibrate (entry {key!r})")
            method, eta, steps, n = match.groups()
            record: dict = {"method": method, "eta": float(eta), "steps": int(steps), "n_samples": int(n)}
            for name in ("variances", "errors", "means"):
                record[name] = list(data[f"{key}/{name}"]) if f"{key}/{name}" in data.files else None
            for condition in CONDITIONS:
                values = data[f"{key}/{condition}"] if f"{key}/{condition}" in data.files else []
                record[condition] = [None if np.isnan(x) else float(x) for x in values]
            measured.append(record)
        about = str(data["about"]) if "about" in data.files else f"measurements from {path}"
    return measured, about


def add_command(sub: argparse._SubParsersAction) -> None:
    from ..settings import PairOptics

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
        help="simulated pairs at the model's optics, or with the randomised optics of train --simulate-optics random "
        "(each phase pair's set-up is stated to its reconstruction)",
    )
    p.add_argument("--inputs", help="folder of the user's validation input TIFFs (never the training pairs)")
    p.add_argument("--targets", help="folder of the matching target TIFFs (same file names)")
    p.add_argument(
        "--plus",
        help="phase: folder of the I(+d) TIFFs (same file names) when the two defocus planes are separate files; "
        "--inputs then holds the I(−d) ones",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument(
        "--device", default="auto", help="'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'"
    )
    p.add_argument(
        "--no-bins",
        "--no-noise-bins",
        dest="no_bins",
        action="store_true",
        help="fit only the pooled calibration, not one per bin of the estimated noise ξ (phase) or of the PSF width "
        "(SR, --simulate-optics random)",
    )
    p.add_argument(
        "--from-measurements",
        help="refit from a --save-measurements file of the same model instead of reconstructing the pairs again",
    )
    p.add_argument(
        "--save-measurements",
        help="also write the per-image raw variances, errors, means (network units) and noise estimates to this .npz "
        "(written even when a fit fails, so --from-measurements can refit without reconstructing again)",
    )
    add_optics_flags(p, PairOptics, "else refused when the model states its optics (--inputs pairs)")
    add_model_flags(p, PairOptics, skip=tuple(OPTICS_FLAGS))  # --camera-offset
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_calibrate)
