"""Paired images from two folders of TIFF files (training, fine-tuning, calibration on the user's own data).

Files pair by name (``cell1.tif`` in both folders).  Each file is read by :func:`~.readers.open_source`, the reader
of every reconstruction, so a pair is refused for what an input is refused for (a colour TIFF, a napari-cvdm
output, non-square pixels) and its pixel size is read from OME-TIFF or ImageJ metadata in any length unit.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import numpy as np

from .._runtime import Progress, drive
from ..tasks import InputError
from ..training.data import RawPairs
from ..training.optics import common_pixel
from .readers import TIFF_SUFFIXES, open_source


def match_folders(input_dir: str | os.PathLike, target_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(name, input file, target file) for TIFF files with the same name in both folders; refuses unmatched files."""
    inputs, targets = tiff_files(input_dir), tiff_files(target_dir)
    common = sorted(inputs.keys() & targets.keys())
    only_in, only_tg = sorted(inputs.keys() - targets.keys()), sorted(targets.keys() - inputs.keys())
    if only_in or only_tg or not common:
        raise InputError(
            "input and target folders must hold TIFF files with the same names. "
            f"Only in {input_dir}: {only_in[:10] or 'none'}; only in {target_dir}: {only_tg[:10] or 'none'}; "
            f"matched: {len(common)}."
        )
    return [(name, inputs[name], targets[name]) for name in common]


def tiff_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The TIFF files of ``folder`` by name (file name without its last suffix); refuses a missing or empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"folder not found: {folder}")
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.name.lower().endswith(TIFF_SUFFIXES)}
    if not files:
        raise InputError(f"no TIFF files (.tif, .tiff) in {folder}")
    return files


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, float | None]:
    """The whole image of one TIFF file (:meth:`~.readers.PlaneSource.read_all`) and the pixel size in µm it states
    (None: none)."""
    with open_source(Path(path)) as source:
        return source.read_all(), source.pixel_um


def iter_read_folders(
    input_dir: str | os.PathLike, target_dir: str | os.PathLike
) -> Generator[Progress, None, RawPairs]:
    """The pairs of two folders, read one pair at a time with a progress event after each; the input pixel size
    when every input file states the same one (1 % apart at most), else None, and what each input file states."""
    matched = match_folders(input_dir, target_dir)
    inputs, targets, names, pixels = [], [], [], {}
    for k, (name, input_path, target_path) in enumerate(matched):
        image, pixel = read_image(input_path)
        inputs.append(image.astype(np.float32))
        targets.append(read_image(target_path)[0].astype(np.float32))
        names.append(name)
        pixels[name] = pixel
        yield Progress(k + 1, len(matched), f"reading pair {k + 1}/{len(matched)}: {name}")
    about = f"{len(names)} pairs from {input_dir} / {target_dir}"
    return RawPairs(inputs, targets, names, about, common_pixel(pixels), file_pixels=pixels)


def read_folders(input_dir: str | os.PathLike, target_dir: str | os.PathLike) -> RawPairs:
    """:func:`iter_read_folders` run to its end."""
    return drive(iter_read_folders(input_dir, target_dir))
