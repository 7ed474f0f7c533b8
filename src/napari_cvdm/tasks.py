"""From raw microscope images to network tensors and back, for each task.

* super-resolution: a 2-D widefield image (H, W) → normalised by its percentiles → bicubic up-sampling by the
  model's scale factor → condition (1, 1, sH, sW); the network diffuses the residual SIM − up-sampled widefield.
  The output is mapped back to the input's intensity units with the same percentiles.
* phase: a (2, H, W) stack ordered (I(−d), I(+d)) in raw intensity units → I / mean(I) − 1 → condition
  (1, 2, H, W), optionally with a classical TIE phase estimate (FFT-TIE or US-TIE) as a third channel; the output
  is phase in radians.

Training (:mod:`napari_cvdm.training.data`) and inference (:mod:`napari_cvdm.inference.reconstruct`) use these same
functions, so the two can never disagree about normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .model.metadata import ModelMetadata


class InputError(ValueError):
    """An input image that cannot be reconstructed, with the reason and the fix in its message."""


@dataclass(frozen=True)
class IntensityScale:
    """The affine map between raw intensities and normalised network units: raw = offset + scale · norm."""

    offset: float
    scale: float


def check_image(image: np.ndarray, info: ModelMetadata, min_size: int = 1) -> np.ndarray:
    """Validate one input image for ``info.task`` and return it as float32; raise :class:`InputError`."""
    arr = np.asarray(image)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
        raise InputError(f"the image must be numeric intensities; got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise InputError("the image is complex-valued; pass intensities (|field|²), not a complex field")
    if arr.size == 0:
        raise InputError(f"the image is empty (shape {arr.shape}); load an image with pixels in it")
    if info.task == "phase":
        if arr.ndim != 3 or arr.shape[0] != 2:
            hint = (
                " It looks like an RGB image; phase needs two grayscale defocus planes."
                if arr.ndim == 3 and arr.shape[-1] in (3, 4)
                else ""
            )
            raise InputError(
                f"phase retrieval needs two defocus planes stacked as (2, H, W) in the order (I(−d), I(+d)); "
                f"got shape {arr.shape}.{hint} Stack the two planes, pick two layers as I(−d) and I(+d) (napari), or "
                "give I(+d) with --plus PLUS.tif (napari-cvdm predict); for pairs in folders, the I(+d) files' "
                "folder (train --plus-dir, calibrate --plus, the fine-tuning widget's I(+d) folder)."
            )
    elif arr.ndim != 2:
        hint = " It looks like an RGB image; convert it to one grayscale channel." if arr.shape[-1] in (3, 4) else ""
        raise InputError(
            f"super-resolution expects one 2-D widefield image (H, W); got shape {arr.shape}.{hint} "
            "For a time-lapse or z-stack, reconstruct plane by plane (the widget and CLI do this for you)."
        )
    arr = arr.astype(np.float32, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(
            f"the image contains {int(bad.sum())} NaN or infinite pixels; replace them (for example with the "
            "background value) before reconstructing"
        )
    height, width = arr.shape[-2:]
    out_min = min(height, width) * info.scale_factor
    if out_min < min_size:
        need = -(-min_size // info.scale_factor)
        raise InputError(
            f"the image is {height}×{width} pixels; this model needs at least {need}×{need} input pixels. "
            "Use a larger image or region."
        )
    if float(arr.max()) == float(arr.min()):
        raise InputError(f"the image is constant (every pixel = {float(arr.min()):g}); there is nothing to restore")
    if info.task == "phase":
        means = arr.reshape(2, -1).mean(axis=1)
        if (means <= 0).any():
            raise InputError(
                "phase retrieval needs raw, non-negative intensities (each plane's mean must be > 0); got plane "
                f"means {means.tolist()}. Do not background-subtract or normalise the defocus images."
            )
    return arr


def dark_subtracted(plane: np.ndarray, offset: float) -> np.ndarray:
    """``plane`` less the camera's dark level ``offset`` (image units; 0: as it is).  An offset at or above a plane's
    mean intensity is no dark level: refused, naming it."""
    if not offset:
        return plane
    out = np.asarray(plane, dtype=np.float32) - np.float32(offset)
    means = out.reshape(-1, *out.shape[-2:]).mean(axis=(-2, -1))
    if np.any(means <= 0):
        raise InputError(
            f"the camera offset {offset:g} is not below the image's mean intensity ({float(np.mean(plane)):.4g}); "
            "give the camera's dark level (the mean of a frame with the light off, in the image's units), or 0 "
            "for an offset-subtracted image"
        )
    return out


def input_scale(image: np.ndarray, info: ModelMetadata) -> IntensityScale:
    """The intensity normalisation of one image (computed on the whole image, never per tile)."""
    norm = info.normalization
    if norm.input == "mean":
        mean = float(image.mean())
        return IntensityScale(offset=mean, scale=mean)
    low, high = np.percentile(image, [norm.low_percentile, norm.high_percentile])
    if high <= low:
        low, high = float(image.min()), float(image.max())
    return IntensityScale(offset=float(low), scale=float(high - low))


def normalize(image: np.ndarray, scale: IntensityScale) -> np.ndarray:
    return ((image - scale.offset) / scale.scale).astype(np.float32)


def make_condition(image: np.ndarray, info: ModelMetadata) -> tuple[torch.Tensor, IntensityScale]:
    """Condition tensor (1, C, H_out, W_out) on the output grid and the input's intensity scale."""
    condition, scale = plane_condition(image, info)
    return condition.rows(0, condition.shape[0]), scale


BICUBIC_MARGIN = 3  # input rows beyond a band that bicubic up-sampling reads (its kernel reaches 2 rows out)


@dataclass(frozen=True)
class Condition:
    """One plane's condition on the output grid, handed out row band by row band.

    Super-resolution keeps only the normalised input (1, C, H, W) and up-samples each band from the input rows it
    needs (bicubic reads two rows either side, so a band is bit-identical to the same rows of the whole plane's
    up-sampling) — a huge plane's condition never exists whole.  Phase keeps the whole (1, 2 or 3, H, W)
    condition: its TIE estimate is a whole-plane solve.
    """

    data: torch.Tensor
    factor: int  # output pixels per input pixel along each axis (1: ``data`` is the condition itself)
    shape: tuple[int, int]  # (H_out, W_out)

    def rows(self, first: int, end: int) -> torch.Tensor:
        """The condition's output rows [first, end) at full width, (1, C, end − first, W_out)."""
        if self.factor == 1:
            return self.data[..., first:end, :]
        f, height = self.factor, self.data.shape[-2]
        lo = max(0, first // f - BICUBIC_MARGIN)
        hi = min(height, -(-end // f) + BICUBIC_MARGIN)
        up = F.interpolate(self.data[..., lo:hi, :], scale_factor=f, mode="bicubic", align_corners=False)
        return up[..., first - f * lo : end - f * lo, :]


def plane_condition(image: np.ndarray, info: ModelMetadata) -> tuple[Condition, IntensityScale]:
    """The :class:`Condition` of one input plane and the input's intensity scale."""
    scale = input_scale(image, info)
    norm = torch.from_numpy(normalize(image, scale))
    if info.task == "phase":
        cond = norm[None]  # (1, 2, H, W)
        if info.condition_on_tie:
            tie = tie_estimate(image, info)
            cond = torch.cat([cond, torch.from_numpy(tie)[None, None]], dim=1)
        return Condition(cond, 1, tuple(cond.shape[-2:])), scale
    cond = norm.reshape(1, -1, *norm.shape[-2:])
    f = max(int(info.scale_factor), 1)
    return Condition(cond, f, (cond.shape[-2] * f, cond.shape[-1] * f)), scale


def tie_estimate(stack: np.ndarray, info: ModelMetadata) -> np.ndarray:
    """The model's classical phase estimate (FFT-TIE or US-TIE, ``info.tie_method``) of a raw two-plane stack, in
    normalised target units."""
    from .physics.baselines import tie_fft, us_tie

    solver = us_tie if info.tie_method == "us-tie" else tie_fft
    phase = solver(
        stack,
        defocus_um=info.defocus_um,
        wavelength_um=info.wavelength_um,
        pixel_um=info.input_pixel_um,
        alpha=info.tie_regularization,
    )
    return ((phase - info.normalization.target_offset) / info.normalization.target_scale).astype(np.float32)


def output_scale(info: ModelMetadata, scale: IntensityScale) -> IntensityScale:
    """The map from network output units to physical units (input intensity units for SR, radians for phase)."""
    if info.task == "phase":
        return IntensityScale(info.normalization.target_offset, info.normalization.target_scale)
    return scale


def normalize_target(target: np.ndarray, info: ModelMetadata) -> np.ndarray:
    """Training target in network units.

    SR targets are normalised by their own percentiles (BioSR practice).  Phase targets are made zero-mean first:
    two defocused intensities do not determine a constant phase offset, and the TIE estimate is zero-mean too.
    """
    target = np.asarray(target, dtype=np.float32)
    if info.task == "phase":
        scale = IntensityScale(info.normalization.target_offset, info.normalization.target_scale)
        return normalize(target - target.mean(), scale)
    return normalize(target, input_scale(target, info))


def output_units(info: ModelMetadata) -> str:
    return "rad" if info.task == "phase" else "input intensity units"
