"""The input of a one-TIFF ``predict`` job, read into memory: a TIFF, a bundled sample, or a phase pair whose two
planes are in two files (``--plus``)."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np


def check_plus(args: argparse.Namespace, one_tiff_job: bool) -> None:
    """``--plus`` (I(+d) in its own file) needs exactly one input, I(−d), an -o out.tif and no --plane-order."""
    from ..tasks import InputError

    if not args.plus:
        return
    if args.sample or not args.input or len(args.input) != 1 or not Path(args.input[0]).is_file():
        raise InputError(
            "--plus I(+d).tif goes with one input file, I(−d): napari-cvdm predict minus.tif --plus plus.tif"
        )
    if not Path(args.plus).is_file():
        raise InputError(f"--plus {args.plus} does not exist; give the TIFF of the plane at +d")
    if not one_tiff_job:
        raise InputError(
            "--plus reads both planes into memory and writes one -o out.tif; for plane-by-plane outputs (.zarr, "
            ".ome.tif) stack the two planes into one file as (…, 2, H, W) first"
        )
    if getattr(args, "ReconstructSettings.plane_order", None) not in (None, "minus-plus"):
        raise InputError("--plus gives the order (the input is I(−d), --plus I(+d)); leave --plane-order out")


def read_input(
    args: argparse.Namespace, fits: Callable[[tuple[int, ...]], None] | None = None
) -> tuple[np.ndarray, str, float | None, str]:
    """The image, its name, the pixel size (µm) it states and where that was read (None, "" when it states none);
    ``fits(shape)`` is called with the file's shape before its pixels are read.  With ``--plus`` the input is
    I(−d) and ``--plus`` I(+d), each in its own file, stacked as (…, 2, H, W)."""
    if args.sample:
        from ..sample_data import load_sample

        image, meta = load_sample(args.sample)
        return image, f"sample {args.sample!r}", meta.get("pixel_um"), "the bundled sample's metadata"
    if not args.input:
        raise SystemExit("give an input TIFF (napari-cvdm predict IMAGE.tif) or --sample NAME")
    from ..io.readers import open_source
    from ..tasks import InputError

    paths = [Path(args.input[0]), *([Path(args.plus)] if getattr(args, "plus", None) else [])]
    with contextlib.ExitStack() as files:  # every check on the metadata, before any pixel is read
        sources = [files.enter_context(open_source(path)) for path in paths]
        shape = tuple(sources[0].shape)
        if len(sources) == 2:
            (minus, plus), (a, b) = paths, sources
            if tuple(b.shape) != shape:
                raise InputError(
                    f"I(−d) {minus} has shape {shape} but I(+d) {plus} has {tuple(b.shape)}; give the same size"
                )
            if a.pixel_um and b.pixel_um and not math.isclose(a.pixel_um, b.pixel_um, rel_tol=0.01):
                raise InputError(
                    f"{minus} states {a.pixel_um:g} µm pixels and {plus} {b.pixel_um:g} µm; the planes must match"
                )
            shape = (*shape[:-2], 2, *shape[-2:])
        if fits is not None:
            fits(shape)
        planes = [source.read_all() for source in sources]
    image = planes[0] if len(planes) == 1 else np.stack(planes, axis=-3)
    stating = next((k for k, source in enumerate(sources) if source.pixel_um), 0)
    name = " + ".join(map(str, paths))
    return image, name, sources[stating].pixel_um, _metadata_of(paths[stating])


def _metadata_of(path: Path) -> str:
    kind = "OME-TIFF" if path.name.lower().endswith((".ome.tif", ".ome.tiff")) else "ImageJ TIFF"
    return f"{kind} metadata of {path.name}"
