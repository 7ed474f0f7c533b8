"""``napari-cvdm predict``: a TIFF (or bundled sample) → mean, variance and β map as one ImageJ TIFF; several
inputs, folders, globs, OME-Zarr / OME-TIFF outputs and dask clusters go through :mod:`.batch`."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .flags import (
    OPTICS_FLAGS,
    add_model_flags,
    add_optics_flags,
    flag_name,
    model_overrides,
    progress_line,
    validation_message,
)
from .predict_input import check_plus, read_input

DEFAULT_MODELS = {"super-resolution": "cvdm-sr-widefield", "phase": "cvdm-phase-twoshot"}


def chosen_model(args: argparse.Namespace) -> str:
    """``--model``, or the bundled model of the sample's task (input files: the SR model)."""
    if args.model:
        return args.model
    if args.sample:
        from ..sample_data import SAMPLES

        return DEFAULT_MODELS[SAMPLES[args.sample].task]
    return DEFAULT_MODELS["super-resolution"]


def check_sample_task(args: argparse.Namespace, model: Any) -> None:
    """Refuse a bundled sample of the other task (a defocus pair is not two widefield planes) before any work."""
    if not args.sample:
        return
    from ..sample_data import SAMPLES
    from ..tasks import InputError

    task = SAMPLES[args.sample].task
    if model.info.task not in (task, "generic"):
        what = "a two-shot defocus pair (phase)" if task == "phase" else "a widefield image (super-resolution)"
        raise InputError(
            f"the sample {args.sample!r} is {what}, "
            f"but {model.info.name} is a {model.info.task} model: give --model {DEFAULT_MODELS[task]} (the default "
            f"for this sample when --model is left out) or a {task} model of your own"
        )


def stated_pixel(settings: Any, model: Any, name: str, pixel: float | None, where: str) -> tuple[Any, dict]:
    """``settings`` with the input's own pixel size when ``--pixel-size`` was not given, and the sources; refuses
    (before any work) an input that states none for a model that states its optics: never a guess."""
    from ..tasks import InputError

    if settings.pixel_size_um is not None:
        return settings, {"pixel_size_um": "--pixel-size"}
    if pixel:
        return settings.model_copy(update={"pixel_size_um": pixel}), {"pixel_size_um": where}
    info = model.info
    if info.covered_optics() is None:
        return settings, {}
    raise InputError(
        f"{name} states no pixel size (no OME-TIFF or ImageJ calibration in µm); give it with --pixel-size, e.g. "
        f"--pixel-size 0.108 or --pixel-size 108nm (a 60× objective on a 6.5 µm camera: 0.108). {info.name} "
        f"assumes {info.input_pixel_um * 1000:.1f} nm pixels and checks yours against its range"
    )


def write_result(path: Path, result, keep_samples: bool, model: Any = None) -> list[Path]:
    """Every output map (mean, calibrated std and interval bounds when calibrated, variance, ∫β) as the channels of
    one OME-TIFF with its physical pixel size, channel names, and the model, version, settings and optics in its
    Description (JSON); the samples, when kept, in a second OME-TIFF."""
    import json

    import tifffile

    from .._version import __version__

    channels = result.channels()
    lead = result.mean.ndim - 2
    data = np.stack([array for _, array, _ in channels], axis=lead)  # (..., C, Y, X)
    axes = ("TZ"[2 - lead :] + "CYX") if lead else "CYX"
    about = {
        "napari_cvdm_version": __version__,
        "model": None if model is None else {"name": model.info.name, "source": model.source, "sha256": model.sha256},
        "channels": [{"name": name, "unit": unit} for name, _, unit in channels],
        "pixel_um": result.pixel_um,
        "settings": result.settings,
        "optics": result.optics,
        "calibration": result.calibration,
    }
    meta: dict[str, Any] = {
        "axes": axes,
        "Name": path.name.split(".")[0],
        "Channel": {"Name": [name for name, _, _ in channels]},
        "Description": json.dumps(about, default=str),
    }
    if result.pixel_um:
        meta.update(PhysicalSizeX=result.pixel_um, PhysicalSizeY=result.pixel_um)
        meta.update(PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data.astype(np.float32), ome=True, photometric="minisblack", metadata=meta)
    written = [path]
    if keep_samples and result.samples is not None:
        samples = np.moveaxis(result.samples, 0, lead)  # (..., N, Y, X): the samples as the channels
        names = [f"sample {k + 1}" for k in range(samples.shape[lead])]
        sample_meta = {**meta, "Channel": {"Name": names}}
        tifffile.imwrite(
            samples_path(path), samples.astype(np.float32), ome=True, photometric="minisblack", metadata=sample_meta
        )
        written.append(samples_path(path))
    return written


def samples_path(path: Path) -> Path:
    """Where ``--keep-samples`` writes the samples beside the output ``path``."""
    return path.with_name(path.name.split(".")[0] + "_samples.ome.tif")


def check_output(path: Path, inputs: list[str], overwrite: bool, keep_samples: bool) -> None:
    """Refuse, before any work, an output that would destroy a file: an input (always), or an existing file that
    napari-cvdm did not write (unless ``--overwrite``); and a folder that cannot be written.  An earlier
    napari-cvdm output is replaced, as rerunning a job does."""
    import os

    from ..io.ometiff import read_info
    from ..tasks import InputError

    targets = [path, samples_path(path)] if keep_samples else [path]
    for target in targets:
        for source in map(Path, inputs):
            if target.exists() and source.exists() and os.path.samefile(target, source):
                raise InputError(
                    f"-o {path}: that is the input {source}, which the output would overwrite; choose another -o"
                )
        if target.is_dir():
            raise InputError(f"-o {path}: {target} is a folder; give a file name such as {target / 'out.tif'}")
        info = read_info(target) if target.exists() else None
        ours = isinstance(info, dict) and "napari_cvdm_version" in info
        if target.exists() and not (overwrite or ours):
            raise InputError(
                f"-o {path}: {target} exists and napari-cvdm did not write it; choose another -o, "
                "or add --overwrite to replace it"
            )
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"-o {path}: {parent} is a file, not a folder; choose another -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"-o {path}: cannot write into {parent} (permission denied); choose another -o")


def checked_settings(args: argparse.Namespace):
    """The run's :class:`ReconstructSettings` from the flags; an out-of-range value raises :class:`InputError`
    naming the flag, its limit and the fix (e.g. ``--tile-overlap`` more than half of ``--tile-size``)."""
    from pydantic import ValidationError

    from ..settings import ReconstructSettings
    from ..tasks import InputError

    try:
        return ReconstructSettings(**model_overrides(args, ReconstructSettings))
    except ValidationError as err:
        fields = ReconstructSettings.model_fields
        flags = {name: OPTICS_FLAGS[name][0] if name in OPTICS_FLAGS else flag_name(name) for name in fields}
        raise InputError("invalid setting: " + validation_message(err, flags)) from None


def check_fits_in_memory(shape: tuple[int, ...], model: Any, settings: Any) -> None:
    """Refuse, before reading it, an input whose one-TIFF job (input, every output channel and their stacked copy,
    float32) would not fit in the available memory, pointing to the plane-by-plane outputs."""
    import torch

    from .._runtime.device import free_memory_bytes
    from ..inference.run import output_channels
    from ..tasks import InputError

    in_pixels = math.prod(shape)
    out_pixels = in_pixels * int(model.info.scale_factor) ** 2 // (2 if model.task == "phase" else 1)
    channels = len(output_channels("", settings.interval_level, True)) + (
        settings.n_samples if settings.keep_samples else 0
    )
    needed = 4 * (2 * in_pixels + 2 * channels * out_pixels)
    available = free_memory_bytes(torch.device("cpu"))
    if needed > available:
        raise InputError(
            f"an input of shape {shape} held in memory with all its outputs needs about {needed / 2**30:.1f} GiB and "
            f"{available / 2**30:.1f} GiB are available; write it plane by plane instead: -o out.zarr (OME-Zarr) "
            "or -o out.ome.tif, which hold one plane at a time and resume after a stop"
        )


def checked_device(device: str) -> None:
    """Refuse a device this machine lacks (``--device cuda`` without a CUDA GPU) before the model is loaded."""
    from .._runtime.device import resolve_device
    from ..tasks import InputError

    try:
        resolve_device(device)
    except ValueError as err:
        raise InputError(f"--device {device}: {err}") from None


def is_single_tiff_job(args: argparse.Namespace) -> bool:
    """The original form, kept as it was: one TIFF (or a sample) in memory → one ImageJ TIFF ``-o out.tif``."""
    out = str(args.output).lower()
    one_file = args.sample or not args.input or (len(args.input) == 1 and Path(args.input[0]).is_file())
    plain_tiff = out.endswith((".tif", ".tiff")) and not out.endswith((".ome.tif", ".ome.tiff"))
    return bool(one_file and plain_tiff and "{stem}" not in out and not (args.scheduler or args.workers))


def cmd_predict(args: argparse.Namespace) -> int:
    from .._runtime import Progress, drive
    from ..inference.reconstruct import iter_reconstruct
    from ..registry import load_model
    from ..tasks import InputError

    if args.input and args.sample:
        raise SystemExit("give input files or --sample NAME, not both")
    one_tiff = is_single_tiff_job(args)
    check_plus(args, one_tiff)
    settings = checked_settings(args)  # refused here, before the model is loaded or the image read
    args.model = chosen_model(args)
    checked_device(settings.device)
    if not one_tiff:
        from .batch import run_batch

        return run_batch(args, settings)
    check_output(
        Path(args.output),
        [*(args.input or []), *([args.plus] if args.plus else [])],
        args.overwrite,
        settings.keep_samples,
    )
    model = load_model(args.model)
    check_sample_task(args, model)
    if args.plus and model.task != "phase":
        raise InputError(f"--plus gives the I(+d) plane of a phase pair, but {model.info.name} is a {model.task} model")
    image, source, pixel, where = read_input(args, lambda shape: check_fits_in_memory(shape, model, settings))
    settings, sources = stated_pixel(settings, model, source, pixel, where)
    start = time.perf_counter()

    def show(event: object) -> None:
        if isinstance(event, Progress) and not args.quiet:
            progress_line(f"{event.stage}: {event.done}/{event.total} network evaluations")

    result = drive(iter_reconstruct(model, image, settings, sources), show)
    seconds = time.perf_counter() - start
    written = write_result(Path(args.output), result, settings.keep_samples, model)
    if not args.quiet:
        sys.stderr.write("\n")
    print(
        f"{model.info.name} on {source} {np.shape(image)} → {result.mean.shape} ({result.units}); "
        f"{result.n_samples} samples × {result.nfe_per_sample} steps in {seconds:.1f} s on "
        f"{result.settings['device']}; wrote {', '.join(map(str, written))} (OME-TIFF, channels: "
        f"{', '.join(name for name, _, _ in result.channels())}; {result.pixel_um or '?'} µm pixels); optics: "
        f"{result.optics.get('note', '')}"
    )
    for check, flagged in (("noise", "outside"), ("resolution", "mismatch")):  # estimated from the image: warnings
        if result.optics.get(check, {}).get("verdict") == flagged:
            print(f"warning: {result.optics[check]['note']}", file=sys.stderr)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    from ..settings import ReconstructSettings

    p = sub.add_parser("predict", help="reconstruct images: mean, variance, β map (and calibrated error bars)")
    p.add_argument(
        "input",
        nargs="*",
        help="input TIFF, OME-TIFF or zarr store(s), folders of them, or a quoted glob: SR planes (H, W), phase "
        "planes (2, H, W) = (I(−d), I(+d)), each optionally a T/Z stack",
    )
    p.add_argument(
        "--plus",
        metavar="PLUS.tif",
        help="phase: I(+d) in its own file; the input is then I(−d) (one input, -o out.tif)",
    )
    p.add_argument(
        "--sample",
        choices=["widefield", "defocus-pair"],
        help="use bundled sample data instead: 'widefield' (SR) or 'defocus-pair' (phase)",
    )
    p.add_argument(
        "--model",
        help="registered model name or .cvdm path (default: cvdm-phase-twoshot for --sample defocus-pair, else "
        "cvdm-sr-widefield)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="out.tif: one OME-TIFF (mean, [calibrated std, interval bounds,] variance, β map; one input, held in "
        "memory); out.zarr (OME-Zarr) "
        "or out.ome.tif (OME-TIFF): every channel, written plane by plane, resumable; with several inputs a "
        "folder (one <name>.zarr each) or a pattern with {stem}",
    )
    p.add_argument(
        "--format",
        choices=["zarr", "ome-tif"],
        default="zarr",
        help="format of the outputs when -o is a folder (default zarr)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs of another run, or an existing file napari-cvdm did not write (default: resume the "
        "same run, refuse a different one; an -o out.tif of an earlier run is replaced); an input is never replaced",
    )
    p.add_argument("--scheduler", help="run the planes on the dask.distributed cluster at this address")
    p.add_argument("--workers", type=int, help="run the planes on a local dask cluster of N worker processes")
    p.add_argument("-q", "--quiet", action="store_true")
    add_model_flags(p, ReconstructSettings, skip=tuple(OPTICS_FLAGS))
    add_optics_flags(p, ReconstructSettings, "else refused when the model states its optics")
    p.set_defaults(func=cmd_predict)
