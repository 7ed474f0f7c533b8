"""``reconstruct()``: images in physical units → N CVDM samples → mean, variance and ∫β maps.

Handles what a user's data brings: stacks (leading T/Z axes, processed plane by plane, each plane's condition built
when its turn comes), large images (overlapping tiles on the output grid: mean, variance and ∫β blended with linear
ramps so no seams show; each pixel of a kept sample copied from the one tile that owns it, so every sample is a
single draw), devices and precision, progress and cancellation.  :func:`iter_reconstruct` is a generator — the
napari widget runs it in a worker thread and the CLI drives it with :func:`~napari_cvdm._runtime.drive`; closing it
stops the run within one network evaluation.  The caller's model is never changed
(:func:`~napari_cvdm._runtime.device.inference_copy`).  The work itself is :mod:`.run` (checks and plan) and
:mod:`.bands` (one plane, a row band at a time); this module assembles the bands into whole arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._runtime import CancelToken, Progress, drive
from ..model.files import TrainedModel
from ..model.metadata import ModelMetadata
from ..settings import ReconstructSettings, checked_settings
from ..tasks import InputError, check_image
from .bands import Band, RunningMean
from .noise_check import with_stack_saturation
from .optics import OpticsPlan, plan_optics
from .resolution_check import qualified_calibration
from .run import condition_shape, dark_subtracted, output_channels, prepare_run

MAX_STACK_AXES = 2  # leading T and/or Z axes processed plane by plane

__all__ = [
    "MAX_STACK_AXES",
    "Reconstruction",
    "RunningMean",
    "condition_shape",
    "iter_reconstruct",
    "output_shape",
    "planned_output_shape",
    "reconstruct",
]


@dataclass
class Reconstruction:
    """Mean, pixel-wise variance, ∫₀¹β dt and (optionally) the samples, on the output grid.

    Shapes: the input's leading axes + (H_out, W_out) (+ a channel axis before them for multi-channel models);
    ``samples`` has the sample axis first.  ``mean`` and ``samples`` are in ``units``, ``variance`` in units²,
    ``beta_map`` is dimensionless (−log γ(1) if the PDE holds).  ``pixel_um`` is the output pixel size when the
    model knows it.  ``variance`` is the raw (unbiased) sample variance; when the model file holds a calibration
    for the sampler used (:class:`~napari_cvdm.model.metadata.Calibration`), ``calibrated_std`` is the expected
    RMS error of ``mean`` and ``lower`` / ``upper`` bound the central ``interval_level`` interval, all in
    ``units``; ``calibration`` says in words what they rest on (or why they are missing).  ``optics`` records the
    optics the run assumed, where each value came from (stated, file metadata, the model's own), the model's
    range and what was done (run as is, binned, resampled): :func:`~napari_cvdm.inference.optics.plan_optics`.

    With several tiles, ``mean``, ``variance`` and ``beta_map`` are ramp-weighted averages of the tiles covering a
    pixel, while each pixel of a sample comes from one tile only (the one whose blending weight is largest there;
    on ties the one with the nearest centre): every sample pixel is one draw with the reported variance, but
    neighbouring tiles are independent draws, so a sample may change character where its owner tile changes.
    """

    mean: np.ndarray
    variance: np.ndarray
    beta_map: np.ndarray
    samples: np.ndarray | None
    n_samples: int
    nfe_per_sample: int
    units: str
    pixel_um: float | None
    settings: dict[str, Any] = field(default_factory=dict)
    calibrated_std: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    interval_level: float = 0.9
    calibration: str = ""
    optics: dict[str, Any] = field(default_factory=dict)

    @property
    def std(self) -> np.ndarray:
        """The raw sample std (√variance), in ``units``: the spread of the samples, not yet an error bar."""
        return np.sqrt(self.variance)

    def channels(self) -> list[tuple[str, np.ndarray, str]]:
        """(name, array, unit) of every output map, in the order files and layers show them.

        mean; when the model is calibrated for this sampler, the calibrated std (the expected RMS error of the
        mean, ``units``) and the lower and upper bounds of the central ``interval_level`` interval; then the raw
        sample variance (units²) and the ∫β map.
        """
        calibrated = self.calibrated_std is not None and self.lower is not None and self.upper is not None
        arrays = [self.mean, *([self.calibrated_std, self.lower, self.upper] if calibrated else [])]
        arrays += [self.variance, self.beta_map]
        names = output_channels(self.units, self.interval_level, calibrated)
        return [(name, array, unit) for (name, unit), array in zip(names, arrays, strict=True)]


def _planes(image: np.ndarray, model: TrainedModel) -> tuple[tuple[int, ...], np.ndarray]:
    """Split leading (stack) axes from the plane axes: (2, H, W) planes for phase, (H, W) for SR."""
    arr = np.asarray(image)
    plane_ndim = 3 if model.task == "phase" else 2
    if arr.size == 0 or arr.ndim < plane_ndim:
        check_image(arr, model.info)  # raises the task's own message
    if model.task != "phase" and arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        raise InputError(
            f"got shape {arr.shape}, which looks like an RGB image; super-resolution needs one grayscale channel"
        )
    if arr.ndim > plane_ndim + MAX_STACK_AXES:
        planes = "(2, H, W)" if model.task == "phase" else "(H, W)"
        raise InputError(
            f"got a {arr.ndim}-D image of shape {arr.shape}; expected one plane {planes} or a stack of them with "
            f"at most {MAX_STACK_AXES} leading axes (T, Z). Split the data into smaller stacks."
        )
    lead = arr.shape[: arr.ndim - plane_ndim]
    return lead, arr.reshape(-1, *arr.shape[arr.ndim - plane_ndim :])


def output_shape(plane_shape: tuple[int, ...], model: TrainedModel, settings: ReconstructSettings) -> tuple[int, int]:
    """(H_out, W_out) of one plane's outputs with these settings' optics (binning or resampling included)."""
    return planned_output_shape(plane_shape, model.info, plan_optics(model.info, settings))


def planned_output_shape(plane_shape: tuple[int, ...], info: ModelMetadata, optics: OpticsPlan) -> tuple[int, int]:
    """(H_out, W_out) of one plane's outputs under an optics plan already made (:func:`plan_optics`)."""
    net = optics.network_shape(*plane_shape[-2:])
    return tuple(plane_shape[-2:]) if optics.back_to_input else condition_shape(net, info)


def iter_reconstruct(
    model: TrainedModel,
    image: np.ndarray,
    settings: ReconstructSettings | None = None,
    sources: Mapping[str, str] | None = None,
    first_plane: int = 0,
) -> Generator[Progress | RunningMean, None, Reconstruction]:
    """Reconstruct ``image`` (one plane or a stack); yields progress and running means, returns the result.

    Everything that can be checked is checked before the first event: the settings, the sampler plan and every
    plane's input, so a bad run fails at once.  Each plane's condition (for phase, with its TIE estimate) is
    built only when that plane's turn comes, after a ``"plane k/N: condition"`` progress event, so a run can be
    cancelled from its first event and never holds more than one plane's condition.  ``model`` is left exactly
    as it was (device, memory layout, train/eval mode, weights): the run uses
    :func:`~napari_cvdm._runtime.device.inference_copy`.

    The optics in ``settings`` (pixel size, wavelength, NA, defocus; None: the model's own, which the caller
    vouches for) are checked against the model's range first (:func:`~napari_cvdm.inference.optics.plan_optics`):
    the run goes ahead as is, on exactly resampled planes, or is refused with :class:`OpticsMismatch` before any
    work.  ``sources`` says where each stated value came from, for ``result.optics``.  Plane ``p`` of ``image``
    is seeded as plane ``first_plane + p`` of its stack (:meth:`.run.ReconstructionRun.iter_plane`).
    """
    settings = settings or ReconstructSettings()
    lead, planes = _planes(image, model)
    run = prepare_run(model, tuple(planes.shape[-2:]), settings, sources)
    net_hw = run.optics.network_shape(*run.in_hw)
    for plane in planes:  # every plane's input, cheaply, before any work
        check_image(
            dark_subtracted(plane, settings.camera_offset),
            model.info,
            min_size=model.network.min_size if net_hw == run.in_hw else 1,
        )
    total = len(planes) * run.evaluations_per_plane
    per_plane: list[Band] = []
    for p_idx, plane in enumerate(planes):
        stage = f"plane {p_idx + 1}/{len(planes)}"
        done = p_idx * run.evaluations_per_plane
        parts: list[Band] = []
        preview: np.ndarray | None = None  # a tiled plane's mean so far: the finished rows, zeros below
        for event in run.iter_plane(plane, first_plane + p_idx, stage, done, total):
            if not isinstance(event, Band):
                yield event
                continue
            parts.append(event)
            if event.end < run.out_hw[0]:  # a band of a tiled plane: show the rows finished so far
                if preview is None:
                    preview = np.zeros((*event.mean.shape[:-2], *run.out_hw), np.float32)
                preview[..., event.first : event.end, :] = event.mean
                yield RunningMean(p_idx, settings.n_samples, preview.copy())
        per_plane.append(Band.join(parts))

    def stack(name: str) -> np.ndarray | None:
        arrs = [getattr(b, name) for b in per_plane]
        return None if arrs[0] is None else np.stack(arrs).reshape(*lead, *arrs[0].shape).astype(np.float32)

    optics = run.image_checks(planes[0])  # the first plane's noise and resolution; never raises
    optics["noise"] = with_stack_saturation(optics["noise"], planes)  # saturation from every plane
    calibrated = stack("calibrated_std")
    sample_arr = None
    if settings.keep_samples:  # planes × (N, [C,] H, W) → (N, *lead, [C,] H, W)
        samples = [b.samples for b in per_plane]
        sample_arr = np.moveaxis(np.stack(samples), 1, 0)
        sample_arr = sample_arr.reshape(settings.n_samples, *lead, *samples[0].shape[1:]).astype(np.float32)
    return Reconstruction(
        mean=stack("mean"),
        variance=stack("variance"),
        beta_map=stack("beta_map"),
        samples=sample_arr,
        n_samples=settings.n_samples,
        nfe_per_sample=run.nfe,
        units=run.units,
        pixel_um=run.optics.output_pixel_um,
        settings=run.resolved_settings(),
        calibrated_std=calibrated,
        lower=stack("lower"),
        upper=stack("upper"),
        interval_level=settings.interval_level,
        calibration=qualified_calibration(
            run.calibration_summary([first_plane + p for p in range(len(planes))]),
            optics["resolution"],
            calibrated is not None,
        ),
        optics=optics,
    )


def reconstruct(
    model: TrainedModel,
    image: np.ndarray,
    n_samples: int = 8,
    steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> Reconstruction:
    """Reconstruct ``image`` with ``model``: see :class:`ReconstructSettings` for ``options``.

    ``progress(done, total)`` is called after every network evaluation; setting ``cancel`` stops the run within
    one network evaluation and raises :class:`Cancelled`.  A bad or unknown option raises
    :class:`~napari_cvdm.settings.SettingsError` (an :class:`InputError`) naming it, before any work.
    """
    settings = checked_settings(
        ReconstructSettings, n_samples=n_samples, steps=steps, seed=seed, device=device, **options
    )
    events = iter_reconstruct(model, image, settings)

    def report(event: object) -> None:
        if progress is not None and isinstance(event, Progress):
            progress(event.done, event.total)

    return drive(events, report, cancel=cancel, cancelled_message="reconstruction cancelled; nothing was changed")
