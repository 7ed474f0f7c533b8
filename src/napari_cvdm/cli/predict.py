"""``napari-cvdm predict``: a TIFF (or bundled sample) → mean, variance and β map as one ImageJ TIFF; several
inputs, folders, globs, OME-Zarr / OME-TIFF outputs and dask clusters go through :mod:`.batch`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .flags import add_model_flags, model_overrides, progress_line


def _read_input(args: argparse.Namespace) -> tuple[np.ndarray, str]:
    if args.sample:
        from ..sample_data import load_sample

        image, _ = load_sample(args.sample)
        return image, f"sample {args.sample!r}"
    if not args.input:
        raise SystemExit("give an input TIFF (napari-cvdm predict IMAGE.tif) or --sample NAME")
    import tifffile

    from ..tasks import InputError

    path = args.input[0]
    try:
        return tifffile.imread(path), str(path)
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        raise InputError(f"could not read {path} as a TIFF image ({err}); give a .tif/.tiff file") from err


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


def checked_settings(args: argparse.Namespace):
    """The run's :class:`ReconstructSettings` from the flags; an out-of-range value raises :class:`InputError`
    naming the flag, its limit and the fix (e.g. ``--tile-overlap`` more than half of ``--tile-size``)."""
    from pydantic import ValidationError

    from ..settings import ReconstructSettings
    from ..tasks import InputError

    try:
        return ReconstructSettings(**model_overrides(args, ReconstructSettings))
    except ValidationError as err:
        problems = []
        for e in err.errors():
            message = e["msg"].removeprefix("Value error, ").replace("tile_overlap", "--tile-overlap")
            message = message.replace("tile_size", "--tile-size")
            flag = "--" + "-".join(map(str, e["loc"])).replace("_", "-") if e["loc"] else ""
            problems.append(f"{flag}: {message}" if flag else message)
        raise InputError("invalid setting: " + "; ".join(problems)) from None


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

    if args.input and args.sample:
        raise SystemExit("give input files or --sample NAME, not both")
    settings = checked_settings(args)  # refused here, before the model is loaded or the image read
    if not is_single_tiff_job(args):
        from .batch import run_batch

        return run_batch(args, settings)
    model = load_model(args.model)
    image, source = _read_input(args)
    start = time.perf_counter()

    def show(event: object) -> None:
        if isinstance(event, Progress) and not args.quiet:
            progress_line(f"{event.stage}: {event.done}/{event.total} network evaluations")

    result = drive(iter_reconstruct(model, image, settings), show)
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


def add_command(sub: argparse._SubParsersAction) -> None:
    from ..settings import ReconstructSettings

    p = sub.add_parser("predict", help="reconstruct images: mean, variance, β map (and calibrated error bars)")
    p.add_argument(
        "input",
        nargs="*",
        help="input TIFF, OME-TIFF or zarr store(s), folders of them, or a quoted glob: SR planes (H, W), phase "
        "planes (2, H, W) = (I(−d), I(+d)), each optionally a T/Z stack",
    )
    p.add_argument("--sample", help="use bundled sample data instead: 'widefield' or 'defocus-pair'")
    p.add_argument("--model", default="cvdm-sr-widefield", help="registered model name or .cvdm path")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="out.tif: one ImageJ TIFF (mean, variance, β map; one input, held in memory); out.zarr (OME-Zarr) "
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
        help="replace outputs of another run (default: resume the same run, refuse a different one)",
    )
    p.add_argument("--scheduler", help="run the planes on the dask.distributed cluster at this address")
    p.add_argument("--workers", type=int, help="run the planes on a local dask cluster of N worker processes")
    p.add_argument("-q", "--quiet", action="store_true")
    add_model_flags(p, ReconstructSettings)
    p.set_defaults(func=cmd_predict)
