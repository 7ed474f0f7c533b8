"""Paired training data: from arrays (napari layers, or folders of TIFF files read by :mod:`napari_cvdm.io.pairs`)
to batches of patches.

Each pair is normalised once, on the whole image, with exactly the functions inference uses
(:func:`napari_cvdm.tasks.make_condition` and :func:`~napari_cvdm.tasks.normalize_target`), so the model sees the
same statistics in training and in use.  Patches are cut on the output grid, preferring structure over empty
background (foreground-aware), and augmented with flips and 90° rotations.  The validation split is by *image*,
so patches of one image never land on both sides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..model.metadata import ModelMetadata
from ..tasks import InputError, check_image, make_condition, normalize_target


class DataError(ValueError):
    """Paired data that cannot be used, with the reason and the fix in its message."""


@dataclass
class RawPairs:
    """Un-normalised (input, target) images as the user gave them, their names, where they came from, the input
    pixel size (µm) they state in common (None: none, or not all the same) and, for files, what each states."""

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    names: list[str]
    source: str
    input_pixel_um: float | None = None
    file_pixels: dict[str, float | None] = field(default_factory=dict)


@dataclass
class Pair:
    """One normalised image pair on the output grid: condition (C, H, W) and target (1, H, W)."""

    name: str
    condition: np.ndarray
    target: np.ndarray


def prepare_pair(image: np.ndarray, target: np.ndarray, info: ModelMetadata, name: str = "") -> Pair:
    """Validate and normalise one (input, target) pair; the target must be ``scale_factor`` × the input grid."""
    try:
        image = check_image(image, info)
    except InputError as err:
        raise DataError(f"pair {name or '?'}: the input: {err}") from None
    target = np.asarray(target, dtype=np.float32)
    expected = tuple(s * info.scale_factor for s in image.shape[-2:])
    if target.ndim != 2 or target.shape != expected:
        raise DataError(
            f"pair {name or '?'}: the target has shape {target.shape} but must be {expected} "
            f"(input {image.shape[-2:]} × scale factor {info.scale_factor}). Check that the pair matches and that "
            "the target is on the model's output grid."
        )
    if not np.isfinite(target).all():
        raise DataError(f"pair {name or '?'}: the target contains NaN or infinite pixels")
    if info.task != "phase" and float(target.max()) == float(target.min()):  # (a flat phase is a valid target)
        raise DataError(
            f"pair {name or '?'}: the target is constant (every pixel = {float(target.min()):g}), so it cannot be "
            "normalised; remove this pair or pick the matching high-resolution image"
        )
    cond, _ = make_condition(image, info)
    return Pair(name=name, condition=cond[0].numpy(), target=normalize_target(target, info)[None])


def split_indices(n: int, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of the training and validation images of :meth:`PairedDataset.split` (validation may be empty)."""
    if val_fraction <= 0 or n < 2:
        return list(range(n)), []
    n_val = min(max(round(val_fraction * n), 1), n - 1)
    order = [int(i) for i in np.random.default_rng(seed).permutation(n)]
    return order[n_val:], order[:n_val]


class PairedDataset:
    """A list of normalised pairs that hands out random augmented patches.

    ``description`` says where the pairs came from and ``input_pixel_um`` is the input pixel size (µm) when the
    files say it; both end up in the trained model's header.
    """

    def __init__(self, pairs: Sequence[Pair], description: str = "", input_pixel_um: float | None = None) -> None:
        if not pairs:
            raise DataError("no image pairs: give at least one (input, target) pair")
        self.pairs = list(pairs)
        self.description = description
        self.input_pixel_um = input_pixel_um

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def min_side(self) -> int:
        return min(min(p.target.shape[-2:]) for p in self.pairs)

    @classmethod
    def from_arrays(
        cls,
        inputs: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        info: ModelMetadata,
        names: Sequence[str] | None = None,
        description: str | None = None,
        input_pixel_um: float | None = None,
    ) -> PairedDataset:
        """Pairs from lists of arrays (or napari layer data); stacks along a first axis are split into images."""
        inputs, targets = _unstack(inputs, info), _unstack(targets, None)
        if len(inputs) != len(targets):
            raise DataError(f"{len(inputs)} input images but {len(targets)} targets; give one target per input")
        names = list(names) if names is not None else [f"pair {i}" for i in range(len(inputs))]
        if len(names) != len(inputs):
            names = [f"pair {i}" for i in range(len(inputs))]
        pairs = [prepare_pair(x, y, info, n) for x, y, n in zip(inputs, targets, names, strict=True)]
        return cls(pairs, description or f"{len(pairs)} pairs from arrays", input_pixel_um)

    @classmethod
    def from_raw(cls, raw: RawPairs, info: ModelMetadata) -> PairedDataset:
        """Normalised pairs from :class:`RawPairs` (folders read by :mod:`napari_cvdm.io.pairs`, napari layers)."""
        return cls.from_arrays(
            raw.inputs, raw.targets, info, raw.names, description=raw.source, input_pixel_um=raw.input_pixel_um
        )

    def split(self, val_fraction: float, seed: int = 0) -> tuple[PairedDataset, PairedDataset | None]:
        """Split by image into training and validation sets (None when val_fraction is 0 or one image only)."""
        train, val = split_indices(len(self.pairs), val_fraction, seed)
        if not val:
            return self, None
        return PairedDataset([self.pairs[i] for i in train]), PairedDataset([self.pairs[i] for i in val])

    def count_patches(self, patch: int) -> int:
        """Non-overlapping ``patch``² windows (output grid) in all pairs: a rough measure of how much data there is."""
        return sum((p.target.shape[-2] // patch) * (p.target.shape[-1] // patch) for p in self.pairs)

    def fingerprint(self) -> str:
        """SHA-256 of the normalised pairs (order, shapes and values): a checkpoint only resumes on the same data."""
        digest = hashlib.sha256()
        for pair in self.pairs:
            for arr in (pair.condition, pair.target):
                digest.update(str(arr.shape).encode())
                digest.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        """What a model file records about its training data."""
        shapes = sorted({tuple(int(v) for v in p.target.shape[-2:]) for p in self.pairs})
        return {
            "description": self.description,
            "pairs": len(self.pairs),
            "target_shapes": [list(s) for s in shapes[:10]],
            "input_pixel_um": self.input_pixel_um,
            "fingerprint": self.fingerprint(),
        }

    def check_patch_size(self, patch: int, min_size: int) -> None:
        if patch > self.min_side:
            raise DataError(
                f"patch size {patch} is larger than the smallest image ({self.min_side} output pixels); "
                "use a smaller patch size or larger images"
            )
        if patch < min_size or patch % 8:
            raise DataError(f"patch size must be a multiple of 8 and at least {min_size}; got {patch}")

    def sample(
        self, batch: int, patch: int, rng: np.random.Generator, augment: bool = True, candidates: int = 4
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of (condition, target) patches of side ``patch`` on the output grid, as float32 tensors."""
        conds, targets = [], []
        for _ in range(batch):
            pair = self.pairs[int(rng.integers(len(self.pairs)))]
            cond, target = _foreground_crop(pair, patch, rng, candidates)
            if augment:
                k, flip = int(rng.integers(4)), bool(rng.integers(2))
                cond, target = _augment(cond, k, flip), _augment(target, k, flip)
            conds.append(cond)
            targets.append(target)
        return torch.from_numpy(np.stack(conds)), torch.from_numpy(np.stack(targets))


def _foreground_crop(
    pair: Pair, patch: int, rng: np.random.Generator, candidates: int
) -> tuple[np.ndarray, np.ndarray]:
    """Among a few random crops, usually take the one with the most target structure (variance)."""
    height, width = pair.target.shape[-2:]
    best, best_score = None, -np.inf
    pick_structure = rng.random() < 0.8  # keep some plain background patches too
    for _ in range(candidates if pick_structure else 1):
        r, c = int(rng.integers(height - patch + 1)), int(rng.integers(width - patch + 1))
        score = float(pair.target[0, r : r + patch, c : c + patch].var())
        if score > best_score:
            best, best_score = (r, c), score
    r, c = best
    window = (slice(None), slice(r, r + patch), slice(c, c + patch))
    return np.ascontiguousarray(pair.condition[window]), np.ascontiguousarray(pair.target[window])


def _augment(arr: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(arr, k, axes=(-2, -1))
    if flip:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def _unstack(images: Sequence[np.ndarray], info: ModelMetadata | None) -> list[np.ndarray]:
    plane_ndim = 3 if (info is not None and info.task == "phase") else 2
    out: list[np.ndarray] = []
    for img in images:
        arr = np.asarray(img)
        if arr.ndim > plane_ndim:
            out.extend(arr.reshape(-1, *arr.shape[arr.ndim - plane_ndim :]))
        else:
            out.append(arr)
    return out
