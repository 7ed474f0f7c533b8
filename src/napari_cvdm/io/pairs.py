"""Paired images from two folders of TIFF files (training, fine-tuning, calibration on the user's own data).

Files pair by name (``cell1.tif`` in both folders).  Phase pairs whose two defocus planes are separate files take a
third folder: the input folder then holds I(−d), ``plus_dir`` I(+d), each one (H, W) plane, matched by name too.
Each file is read by :func:`~.readers.open_source`, the reader of every reconstruction, so a pair is refused for
what an input is refused for (a colour TIFF, a napari-cvdm output, non-square pixels) and its pixel size is read
from OME-TIFF or ImageJ metadata in any length unit.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import numpy as np

from .._runtime import Progress, drive
from ..tasks import InputError
from ..training.data import RawPairs
from ..training.optics import AGREE, common_pixel
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


def match_plus(names: list[str], input_dir: str | os.PathLike, plus_dir: str | os.PathLike) -> dict[str, Path]:
    """The I(+d) file of each paired name, from ``plus_dir``; refuses names missing there (or extra ones)."""
    plus = tiff_files(plus_dir)
    missing, extra = sorted(set(names) - plus.keys()), sorted(plus.keys() - set(names))
    if missing or extra:
        raise InputError(
            f"the I(+d) folder {plus_dir} must hold one TIFF per I(−d) file of {input_dir}, with the same names. "
            f"Missing there: {missing[:10] or 'none'}; not in {input_dir}: {extra[:10] or 'none'}"
        )
    return {name: plus[name] for name in names}


def read_defocus_planes(name: str, minus_path: Path, plus_path: Path) -> tuple[np.ndarray, float | None]:
    """The (2, H, W) pair [I(−d), I(+d)] of two single-plane files and the pixel size (µm) they state; refuses
    stacks, unequal shapes and unequal stated pixel sizes."""
    (minus, minus_pixel), (plus, plus_pixel) = read_image(minus_path), read_image(plus_path)
    for what, image, path in (("I(−d)", minus, minus_path), ("I(+d)", plus, plus_path)):
        if image.ndim != 2:
            raise InputError(
                f"pair {name!r}: the {what} file {path} has shape {image.shape}; with an I(+d) folder each file holds "
                "one (H, W) plane (leave the I(+d) folder empty for inputs that hold both planes)"
            )
    if minus.shape != plus.shape:
        raise InputError(
            f"pair {name!r}: I(−d) {minus_path} is {minus.shape[0]}×{minus.shape[1]} but I(+d) {plus_path} is "
            f"{plus.shape[0]}×{plus.shape[1]}; the two defocus planes must be the same size"
        )
    if minus_pixel and plus_pixel and abs(minus_pixel - plus_pixel) > AGREE * minus_pixel:
        raise InputError(
            f"pair {name!r}: I(−d) states {minus_pixel * 1000:.1f} nm pixels but I(+d) {plus_pixel * 1000:.1f} nm; "
            "the two defocus planes come from one camera: check the pairing"
        )
    return np.stack([minus, plus]), minus_pixel or plus_pixel


def iter_read_folders(
    input_dir: str | os.PathLike, target_dir: str | os.PathLike, plus_dir: str | os.PathLike | None = None
) -> Generator[Progress, None, RawPairs]:
    """The pairs of two folders (three with ``plus_dir``: phase inputs as separate I(−d) and I(+d) files), read
    one pair at a time with a progress event after each; the input pixel size when every input file states the
    same one (1 % apart at most), else None, and what each input file states."""
    matched = match_folders(input_dir, target_dir)
    plus = match_plus([name for name, _, _ in matched], input_dir, plus_dir) if plus_dir is not None else {}
    inputs, targets, names, pixels = [], [], [], {}
    for k, (name, input_path, target_path) in enumerate(matched):
        if plus:
            image, pixel = read_defocus_planes(name, input_path, plus[name])
        else:
            image, pixel = read_image(input_path)
        inputs.append(image.astype(np.float32))
        targets.append(read_image(target_path)[0].astype(np.float32))
        names.append(name)
        pixels[name] = pixel
        yield Progress(k + 1, len(matched), f"reading pair {k + 1}/{len(matched)}: {name}")
    folders = f"{input_dir} + {plus_dir}" if plus_dir is not None else f"{input_dir}"
    about = f"{len(names)} pairs from {folders} / {target_dir}"
    return RawPairs(inputs, targets, names, about, common_pixel(pixels), file_pixels=pixels)


def read_folders(
    input_dir: str | os.PathLike, target_dir: str | os.PathLike, plus_dir: str | os.PathLike | None = None
) -> RawPairs:
    """:func:`iter_read_folders` run to its end."""
    return drive(iter_read_folders(input_dir, target_dir, plus_dir))
