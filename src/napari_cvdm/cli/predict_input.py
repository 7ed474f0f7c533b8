"""The input of a one-TIFF ``predict`` job, read into memory: a TIFF, a bundled sample, or a phase pair whose two
planes are in two files (``--plus``)."""

from __future__ import annotations

import argparse
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
    path = Path(args.input[0])
    if not getattr(args, "plus", None):
        image, pixel = _read_file(path, fits)
        return image, str(path), pixel, _metadata_of(path)
    from ..tasks import InputError

    plus = Path(args.plus)
    shapes = [_file_shape(path), _file_shape(plus)]
    if shapes[0] != shapes[1]:
        raise InputError(f"I(−d) {path} has shape {shapes[0]} but I(+d) {plus} has {shapes[1]}; give the same size")
    stacked = (*shapes[0][:-2], 2, *shapes[0][-2:])
    (minus_image, minus_pixel), (plus_image, plus_pixel) = _read_file(path, fits, stacked), _read_file(plus)
    if minus_pixel and plus_pixel and not math.isclose(minus_pixel, plus_pixel, rel_tol=0.01):
        raise InputError(f"{path} states {minus_pixel:g} µm pixels and {plus} {plus_pixel:g} µm; the planes must match")
    image = np.stack([minus_image, plus_image], axis=-3)
    pixel, where = (minus_pixel, _metadata_of(path)) if minus_pixel else (plus_pixel, _metadata_of(plus))
    return image, f"{path} + {plus}", pixel, where


def _file_shape(path: Path) -> tuple[int, ...]:
    from ..io.readers import open_source

    with open_source(path) as source:
        return tuple(source.shape)


def _read_file(
    path: Path, fits: Callable[[tuple[int, ...]], None] | None = None, shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, float | None]:
    """One file's pixels and the pixel size it states; ``fits(shape or its own shape)`` first."""
    from ..io.readers import open_source

    with open_source(path) as source:
        if fits is not None:
            fits(shape or source.shape)
        image = np.asarray(source.array[...])
        image = image.squeeze(source.squeeze) if source.squeeze else image
        return np.asarray(image), source.pixel_um


def _metadata_of(path: Path) -> str:
    kind = "OME-TIFF" if path.name.lower().endswith((".ome.tif", ".ome.tiff")) else "ImageJ TIFF"
    return f"{kind} metadata of {path.name}"
