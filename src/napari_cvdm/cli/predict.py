"""``napari-cvdm predict``: a TIFF (or bundled sample) → mean, variance and β map as one ImageJ TIFF."""

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


def cmd_predict(args: argparse.Namespace) -> int:
    from .._runtime import Progress, drive
    from ..inference.reconstruct import iter_reconstruct
    from ..registry import load_model

    settings = checked_settings(args)  # refused here, before the model is loaded or the image read
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

    p = sub.add_parser("predict", help="reconstruct an image: mean, variance and β map")
    p.add_argument("input", nargs="?", help="input TIFF: SR (H, W) or stack; phase (2, H, W) = (I(−d), I(+d))")
    p.add_argument("--sample", help="use bundled sample data instead: 'widefield' or 'defocus-pair'")
    p.add_argument("--model", default="cvdm-sr-widefield", help="registered model name or .cvdm path")
    p.add_argument("-o", "--output", required=True, help="output TIFF (channels: mean, variance, β map)")
    p.add_argument("-q", "--quiet", action="store_true")
    add_model_flags(p, ReconstructSettings)
    p.set_defaults(func=cmd_predict)
