"""Paired fine-tuning data from napari layers or two folders: gather, check, count, and pick a preview patch.

Qt-free.  Checks need only shapes (layer data, TIFF headers), so the widget can show "N pairs, M patches" live as
the user picks; everything it refuses raises :class:`napari_cvdm.InputError` with the problem and the fix.
Shapes: super-resolution inputs (H, W) or a stack (N, H, W), targets (s·H, s·W) or (N, s·H, s·W) with s the
base model's scale factor; phase inputs (2, H, W) ordered (I(−d), I(+d)) or (N, 2, H, W), targets (H, W) or
(N, H, W) in radians.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._runtime import Progress, drive
from ..io.pairs import iter_read_folders, match_folders, match_plus, tiff_files
from ..io.readers import tiff_pixel_um
from ..model.files import SUFFIX
from ..model.metadata import ModelMetadata
from ..registry import REGISTRY, user_model_dir
from ..settings import PairOptics
from ..tasks import InputError
from ..training.checkpoint import checkpoint_path
from ..training.data import RawPairs, split_indices
from ..training.optics import differs, pairs_pixel_um
from .inputs import check_layer, layer_pixel_um

# The labels of the widget's controls for the pair optics and the training settings.
PAIR_OPTICS_LABELS = {
    "pixel_size_um": "Pixel size (µm)",
    "wavelength_um": "Emission λ (µm)",
    "numerical_aperture": "NA",
    "defocus_um": "Defocus d (µm)",
    "camera_offset": "Camera offset",
}
TRAIN_LABELS = {
    "steps": "Steps",
    "batch_size": "Batch",
    "patch_size": "Patch (px)",
    "learning_rate": "Learning rate",
    "val_fraction": "Validation",
    "alpha": "α (γ smoothness)",
    "ema_decay": "EMA decay",
    "lr_decay": "Rate decay",
    "augment": "augment (flips, 90° rotations)",
    "seed": "Seed",
    "device": "Device",
    "checkpoint_every": "Checkpoint every",
}


@dataclass(frozen=True)
class DataCount:
    """How much data the picked pairs hold for training with ``patch``² patches (output pixels)."""

    pairs: int
    train: int
    validation: int
    train_patches: int
    patch: int

    def text(self) -> str:
        val = f"{self.validation} validation" if self.validation else "no validation (needs ≥ 2 pairs)"
        return (
            f"{self.pairs} pair{'s' if self.pairs != 1 else ''} ({self.train} training, {val}); "
            f"{self.train_patches} training patches of {self.patch}² px"
        )


def is_unset(path: Any) -> bool:
    """True for an empty file or folder field (magicgui's ``FileEdit`` then holds ``Path(".")``)."""
    return path is None or str(path) in ("", ".")


def _planes(shape: Sequence[int], plane_ndim: int) -> list[tuple[int, ...]]:
    """The plane shapes of an image or a stack of images (leading axes flattened)."""
    shape = tuple(int(s) for s in shape)
    count = int(np.prod(shape[: len(shape) - plane_ndim])) if len(shape) > plane_ndim else 1
    return [shape[len(shape) - plane_ndim :]] * count


def _plane_of(arr: Any, k: int, plane_ndim: int) -> np.ndarray:
    """Plane ``k`` (flat index over the leading axes) of an array or a lazy (dask) array, read alone."""
    lead = tuple(arr.shape[: arr.ndim - plane_ndim])
    if not lead:
        return np.asarray(arr, dtype=np.float32)
    return np.asarray(arr[tuple(int(i) for i in np.unravel_index(k, lead))], dtype=np.float32)


def _plane_ndim(info: ModelMetadata) -> int:
    return 3 if info.task == "phase" else 2


def layer_shapes(input_layer: Any, target_layer: Any, info: ModelMetadata) -> list[tuple[tuple, tuple]]:
    """(input plane shape, target plane shape) per pair of two picked Image layers (stacks = several pairs)."""
    a = check_layer(input_layer, "input")
    b = check_layer(target_layer, "target")
    if input_layer is target_layer:
        raise InputError(
            f"input and target are the same layer ({input_layer.name!r}); pick the low-resolution (or defocus) "
            "images as input and the matching high-resolution (or phase) images as target"
        )
    if info.task == "phase" and (a.ndim < 3 or a.shape[-3] != 2):
        raise InputError(
            f"a phase model is fine-tuned on defocus pairs: the input layer must be (2, H, W) ordered (I(−d), I(+d)) "
            f"or a stack (N, 2, H, W), but {input_layer.name!r} has shape {a.shape}"
        )
    ins, outs = _planes(a.shape, _plane_ndim(info)), _planes(b.shape, 2)
    return _paired(ins, outs, f"input layer {input_layer.name!r}", f"target layer {target_layer.name!r}")


def tiff_header(path: Path) -> tuple[tuple[int, ...], float | None]:
    """(shape, stated pixel size in µm or None) of a TIFF file's first series, from its header only; cached by the
    file's path, size and modification time, so the counts line, redrawn on every change of a control, reads each
    header of a folder once."""
    stat = path.stat()
    return _tiff_header(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8192)
def _tiff_header(path: str, _mtime_ns: int, _size: int) -> tuple[tuple[int, ...], float | None]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tuple(tif.series[0].shape), tiff_pixel_um(tif, Path(path))
    except (OSError, ValueError, IndexError, tifffile.TiffFileError) as err:
        raise InputError(f"could not read {path} as a TIFF image ({err}); give readable TIFF files") from err


def folder_shapes(
    input_dir: str | Path, target_dir: str | Path, info: ModelMetadata, plus_dir: str | Path | None = None
) -> list[tuple[tuple, tuple]]:
    """(input plane shape, target plane shape) per matched file pair, read from the TIFF headers only; with
    ``plus_dir`` (phase: the I(+d) files, the input folder holding the I(−d) ones) the two planes' shape."""
    matched = match_folders(input_dir, target_dir)
    plus = match_plus([name for name, _, _ in matched], input_dir, plus_dir) if plus_dir is not None else {}

    def shape(path: Path, name: str) -> tuple:
        try:
            return tiff_header(path)[0]
        except InputError as err:
            raise InputError(f"pair {name!r}: {err}") from err

    shapes = []
    for name, input_path, target_path in matched:
        si, st = shape(input_path, name), shape(target_path, name)
        if plus:
            sp = shape(plus[name], name)
            if len(si) != 2 or si != sp:
                raise InputError(
                    f"pair {name!r}: I(−d) {si}, I(+d) {sp}; with an I(+d) folder each file holds one (H, W) plane "
                    "and the two are the same size (leave the I(+d) folder empty for inputs holding both planes)"
                )
            si = (2, *si)
        shapes.append((si, st, name))
    bad = [(n, si, st) for si, st, n in shapes if len(si) != _plane_ndim(info) or len(st) != 2]
    if bad:
        n, si, st = bad[0]
        want = "(2, H, W)" if info.task == "phase" else "(H, W)"
        separate = info.task == "phase" and len(si) == 2
        hint = " (or, for I(−d) and I(+d) in separate files, pick the I(+d) folder)" if separate else ""
        raise InputError(
            f"pair {n!r}: input {si}, target {st}; each file must hold one image: input {want}{hint}, target (H, W)"
        )
    return [(si, st) for si, st, _ in shapes]


def _paired(ins: list, outs: list, what_in: str, what_out: str) -> list[tuple[tuple, tuple]]:
    if len(ins) != len(outs):
        raise InputError(
            f"{what_in} holds {len(ins)} image(s) but {what_out} holds {len(outs)}; give one target per input "
            "(stacks are paired frame by frame)"
        )
    return list(zip(ins, outs, strict=True))


def check_shapes(
    shapes: list[tuple[tuple, tuple]],
    info: ModelMetadata,
    patch: int,
    batch: int,
    val_fraction: float,
    seed: int,
    min_size: int = 8,
) -> DataCount:
    """Refuse mismatched shapes, a wrong scale ratio, bad patch sizes or too little data; else count pairs/patches."""
    s = info.scale_factor
    if not shapes:
        raise InputError("no image pairs found; pick an input and a target layer, or two folders of TIFF files")
    for k, (si, st) in enumerate(shapes):
        if info.task == "phase" and (len(si) != 3 or si[0] != 2):
            raise InputError(
                f"a phase model is fine-tuned on defocus pairs: the input must be (2, H, W) ordered (I(−d), I(+d)) "
                f"or a stack (N, 2, H, W), but pair {k} has input shape {si}"
            )
        h, w = si[-2:]
        if tuple(st) != (s * h, s * w):
            ratio = f"{st[0] / h:g}×" if st[0] * w == st[1] * h else "a different aspect than"
            raise InputError(
                f"pair {k}: the target ({st[0]}×{st[1]}) is {ratio} the input ({h}×{w}), but the base model "
                f"({info.task}) needs targets exactly {s}× the input: {s * h}×{s * w}. Check the pairing, or pick a "
                f"base model whose scale factor matches your data."
            )
    smallest = min(min(st) for _, st in shapes)
    if patch > smallest:
        raise InputError(
            f"patch size {patch} is larger than the smallest target image ({smallest} px); lower it to at most "
            f"{smallest - smallest % 8} (a multiple of 8)"
        )
    if patch % 8 or patch < min_size:
        raise InputError(f"patch size must be a multiple of 8 and at least {min_size}; got {patch}")
    train_idx, val_idx = split_indices(len(shapes), val_fraction, seed)
    patches = sum((shapes[i][1][0] // patch) * (shapes[i][1][1] // patch) for i in train_idx)
    if patches < batch:
        raise InputError(
            f"too little data: the training pairs hold only {patches} non-overlapping {patch}² patch(es), fewer than "
            f"one batch ({batch}). Add pairs or larger images, or lower the patch size or the batch size."
        )
    return DataCount(len(shapes), len(train_idx), len(val_idx), patches, patch)


def iter_pairs_from_layers(
    input_layer: Any, target_layer: Any, info: ModelMetadata
) -> Generator[Progress, None, RawPairs]:
    """The images of two checked Image layers (stacks split into pairs), read one pair at a time: a lazy (dask)
    layer is computed plane by plane, and a progress event follows each pair (runs in the worker thread)."""
    plane_ndim = _plane_ndim(info)
    a, b = input_layer.data, target_layer.data
    n = len(_planes(a.shape, plane_ndim))
    inputs, targets = [], []
    for k in range(n):
        inputs.append(_plane_of(a, k, plane_ndim))
        targets.append(_plane_of(b, k, 2))
        yield Progress(k + 1, n, f"reading pair {k + 1}/{n}")
    names = [f"{input_layer.name}[{k}]" for k in range(len(inputs))]
    about = f"{len(inputs)} pairs from layers {input_layer.name!r} / {target_layer.name!r}"
    return RawPairs(inputs, targets, names, about, input_pixel_um=input_layer_pixel_um(input_layer))


def input_layer_pixel_um(layer: Any) -> float | None:
    """An input layer's pixel size (µm), as the reconstruction widget reads it (units, samples, file metadata),
    else napari-cvdm's convention of a scale in µm (1.0: napari's "no scale set")."""
    pixel, _ = layer_pixel_um(layer)
    scale = float(layer.scale[-1])
    return pixel or (None if scale == 1.0 else scale)


def typed_pair_optics(values: dict[str, Any]) -> dict[str, Any]:
    """The pair optics typed in the widget as ``prepare_data`` takes them (empty: the files' or layer's pixel size,
    else the base model's) and the camera offset; raises ``ValidationError`` naming a bad value.  A field of the
    other task (the NA for phase, the defocus for SR) is ignored by
    :func:`~napari_cvdm.training.optics.with_data_optics`."""
    optics = PairOptics(**values)
    return {**optics.stated(), "camera_offset": optics.camera_offset}


def counts_text(count: DataCount, info: ModelMetadata, typed_pixel: str, data: Any) -> str:
    """The counts line, with the pixel size the pairs state (``data``: the input layer, or the input folder as a
    ``Path``), unless one is typed, and, where it is not the base model's, that the new model will state it; files
    that disagree on it are refused here already."""
    text = count.text()
    if typed_pixel.strip():
        return text
    if not isinstance(data, Path):
        pixel, where = input_layer_pixel_um(data), "the input layer"
    else:
        pixels = {name: tiff_header(path)[1] for name, path in tiff_files(data).items()}
        pixel, where = pairs_pixel_um(RawPairs([], [], [], str(data), file_pixels=pixels), None), "the files' metadata"
    if pixel is None:
        return text
    text += f"; pixel {pixel * 1000:.1f} nm ({where})"
    base = info.input_pixel_um
    if base is not None and differs(pixel, base):
        text += f": the new model will state it (the base: {base * 1000:.1f} nm)"
    return text


iter_pairs_from_folders = iter_read_folders  # the folders' pairs, one at a time (runs in the worker thread)


def pairs_from_layers(input_layer: Any, target_layer: Any, info: ModelMetadata) -> RawPairs:
    """:func:`iter_pairs_from_layers` run to its end."""
    return drive(iter_pairs_from_layers(input_layer, target_layer, info))


def pairs_from_folders(input_dir: str | Path, target_dir: str | Path, plus_dir: str | Path | None = None) -> RawPairs:
    """:func:`iter_pairs_from_folders` run to its end."""
    return drive(iter_pairs_from_folders(input_dir, target_dir, plus_dir))


def preview_pair(
    raw: RawPairs, val_fraction: float, seed: int, patch: int, scale: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(input crop, target crop, (row, column) of the crop on the target grid) from the first validation image
    (or the first training image if there is no validation).

    Among a 3 × 3 grid of windows the one with the most target structure (variance) is taken; the target window
    is ``patch``² output pixels, the input window the matching ``patch/scale``² input pixels.
    """
    train_idx, val_idx = split_indices(len(raw.inputs), val_fraction, seed)
    k = (val_idx or train_idx)[0]
    image, target = raw.inputs[k], raw.targets[k]
    side = patch // scale
    h, w = image.shape[-2:]
    best, best_var = (0, 0), -1.0
    for r in np.linspace(0, h - side, 3).astype(int):
        for c in np.linspace(0, w - side, 3).astype(int):
            var = float(target[r * scale : r * scale + patch, c * scale : c * scale + patch].var())
            if var > best_var:
                best, best_var = (int(r), int(c)), var
    r, c = best
    crop = image[..., r : r + side, c : c + side]
    target_crop = target[r * scale : r * scale + patch, c * scale : c * scale + patch]
    return np.ascontiguousarray(crop), np.ascontiguousarray(target_crop), (r * scale, c * scale)


def patch_placement(layer: Any | None, row: int, col: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """World (scale, translate) of a patch whose first pixel is (``row``, ``col``) of ``layer``'s last two axes
    (unit scale at the origin when there is no layer, e.g. for data from folders)."""
    if layer is None:
        return (1.0, 1.0), (0.0, 0.0)
    sc = (float(layer.scale[-2]), float(layer.scale[-1]))
    tr = (float(layer.translate[-2]), float(layer.translate[-1]))
    return sc, (tr[0] + row * sc[0], tr[1] + col * sc[1])


def guess_pair(layers: Sequence[Any], info: ModelMetadata | None) -> tuple[Any, Any] | None:
    """The first (input, target) pair of image layers whose shapes fit ``info``'s task and scale factor, else the
    first two layers (so the widget can say what does not fit), else None."""
    scale = info.scale_factor if info is not None else 2
    phase = info is not None and info.task == "phase"
    for a in layers:
        if phase and (a.data.ndim < 3 or a.data.shape[-3] != 2):
            continue
        for b in layers:
            if a is b or b.data.ndim != a.data.ndim - int(phase):
                continue
            if tuple(b.data.shape[-2:]) == tuple(scale * s for s in a.data.shape[-2:]):
                return a, b
    return (layers[0], layers[1]) if len(layers) >= 2 else None  # the counts line then says what does not fit


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def output_path(name: str) -> Path:
    """Where a fine-tuned model called ``name`` is saved: the user model folder (``NAPARI_CVDM_MODELS``)."""
    return user_model_dir() / f"{name}{SUFFIX}"


def check_output_name(name: str, base_value: str, resume: bool) -> Path:
    """The output file for ``name``; refuses unusable names, the base's or a registered name, and overwriting."""
    if not NAME_PATTERN.match(name):
        raise InputError(
            f"model name {name!r} cannot be a file name; use letters, digits, '.', '_' and '-' (e.g. my-sr-model)"
        )
    if name in REGISTRY or name == Path(str(base_value)).stem:
        raise InputError(f"{name!r} is the base model's or a registered model's name; choose a new name")
    path = output_path(name)
    if resume and not checkpoint_path(path).is_file():
        raise InputError(
            f"there is no checkpoint of {name!r} to continue ({checkpoint_path(path)}); untick “continue from "
            "checkpoint” to start a new run"
        )
    if not resume and path.exists():
        raise InputError(
            f"a model named {name!r} already exists ({path}); choose another name, or tick “continue from "
            "checkpoint” (advanced settings) to continue its run"
        )
    return path
