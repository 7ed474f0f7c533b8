"""``reconstruct()``: images in physical units → N CVDM samples → mean, variance and ∫β maps.

Handles what a user's data brings: stacks (leading T/Z axes, processed plane by plane, each plane's condition built
when its turn comes), large images (overlapping tiles on the output grid: mean, variance and ∫β blended with linear
ramps so no seams show; each pixel of a kept sample copied from the one tile that owns it, so every sample is a
single draw), devices and precision, progress and cancellation.  :func:`iter_reconstruct` is a generator — the
napari widget runs it in a worker thread and the CLI drives it with :func:`~napari_cvdm._runtime.drive`; closing it
stops the run within one network evaluation.  The caller's model is never changed
(:func:`~napari_cvdm._runtime.device.inference_copy`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._runtime import CancelToken, Progress, drive, relay
from .._runtime.device import auto_tile_size, default_precision, inference_copy
from ..model.cvdm import CVDM
from ..model.files import TrainedModel
from ..model.metadata import ModelMetadata
from ..sampling.calibration import error_std_factor, interval_multiplier, posterior_std, select_calibration
from ..sampling.samplers import Partial, Step, iter_sample, sample_seed
from ..settings import ReconstructSettings, overlap_message
from ..tasks import InputError, IntensityScale, check_image, make_condition, output_scale, output_units
from .noise_check import check_noise
from .optics import OpticsPlan, plan_optics
from .plan import SamplerPlan, plan_sampler
from .tiling import ramp, tile_owners, tile_starts

MAX_STACK_AXES = 2  # leading T and/or Z axes processed plane by plane


@dataclass
class RunningMean:
    """The mean so far of plane ``plane`` (flat index into the leading axes), physical units, after n samples."""

    plane: int
    n_done: int
    mean: np.ndarray


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
        out = [("mean", self.mean, self.units)]
        if self.calibrated_std is not None and self.lower is not None and self.upper is not None:
            level = f"{round(100 * self.interval_level):d} %"
            out += [
                ("calibrated std", self.calibrated_std, self.units),
                (f"{level} interval lower bound", self.lower, self.units),
                (f"{level} interval upper bound", self.upper, self.units),
            ]
        out += [("sample variance", self.variance, f"({self.units})²"), ("beta map", self.beta_map, "1")]
        return out


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
    optics = plan_optics(model.info, settings)
    net = optics.network_shape(*plane_shape[-2:])
    return tuple(plane_shape[-2:]) if optics.back_to_input else condition_shape(net, model.info)


def iter_reconstruct(
    model: TrainedModel,
    image: np.ndarray,
    settings: ReconstructSettings | None = None,
    sources: Mapping[str, str] | None = None,
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
    work.  ``sources`` says where each stated value came from, for ``result.optics``.
    """
    settings = settings or ReconstructSettings()
    device = settings.torch_device()
    precision = default_precision(device) if settings.precision == "auto" else settings.precision
    info, net = model.info, model.network
    plan = plan_sampler(info.sampler, settings)
    lead, planes = _planes(image, model)
    optics = plan_optics(info, settings, sources)
    in_hw = tuple(planes.shape[-2:])
    net_hw = optics.network_shape(*in_hw)
    for plane in planes:  # every plane's input, cheaply, before any work
        check_image(plane, info, min_size=net.min_size if net_hw == in_hw else 1)
    if net_hw != in_hw and min(net_hw) * (1 if info.task == "phase" else info.scale_factor) < net.min_size:
        raise InputError(
            f"after {optics.record['action']} for your optics the image is {net_hw[0]}×{net_hw[1]} pixels, below this "
            f"model's minimum of {net.min_size} output pixels; use a larger image or region"
        )
    run_info = info.model_copy(update=optics.condition) if optics.condition else info
    if settings.tile_size is not None and settings.tile_size < net.min_size:
        raise InputError(
            f"tile_size {settings.tile_size} is below this model's minimum of {net.min_size} pixels; use a tile "
            f"size of at least {net.min_size}, or none (automatic)"
        )
    out_h, out_w = condition_shape(net_hw, info)
    tile = settings.tile_size or auto_tile_size(device, out_h, out_w, net.config.widest)
    overlap = settings.overlap_for(tile)
    if tile < max(out_h, out_w) and overlap > tile // 2:
        raise InputError(overlap_message(overlap, tile, f"automatic tile size on {device}, which is"))
    layout = TileLayout.plan(out_h, out_w, tile, overlap)
    nfe = (len(plan.time_grid) - 1) if plan.time_grid is not None else plan.steps
    total = len(planes) * layout.n_tiles * nfe * settings.n_samples
    calibration, calibration_note = select_calibration(info.calibrations, plan.method, plan.eta, nfe)
    if settings.n_samples < 2:
        calibration, calibration_note = None, "not calibrated: one sample has no spread; draw at least 2 samples"
    network = inference_copy(net, device)
    means, variances, betas, samples, error_stds = [], [], [], [], []
    done = 0
    for p_idx, plane in enumerate(planes):
        yield Progress(done, total, f"plane {p_idx + 1}/{len(planes)}: condition")
        on_grid = optics.to_network(plane)
        cond, in_scale = make_condition(check_image(on_grid, run_info, min_size=net.min_size), run_info)
        if tuple(cond.shape[-2:]) != (out_h, out_w):
            raise RuntimeError(f"the condition is {tuple(cond.shape[-2:])}, expected {(out_h, out_w)}")
        out = output_scale(info, in_scale)  # network units → physical units of this plane
        run = _PlaneRun(network, settings, plan, precision, device, layout, out)
        mean, variance, beta, kept = yield from relay(
            run.tiles(cond, p_idx, len(planes), done, total), _on_input_grid(optics, in_hw)
        )
        if optics.back_to_input:  # phase resampled to the model's λ·d/p²: every map back onto the input grid
            mean, beta = optics.to_input(mean, in_hw), optics.to_input(beta, in_hw)
            variance = optics.to_input(variance, in_hw, non_negative=True)
            kept = None if kept is None else optics.to_input(kept, in_hw)
        done += layout.n_tiles * nfe * settings.n_samples
        means.append(mean)
        variances.append(variance)
        if calibration is not None:  # the map works in network units: variance / scale², std × scale
            sigma = posterior_std(calibration, variance / out.scale**2)
            error_stds.append((out.scale * error_std_factor(settings.n_samples) * sigma).astype(np.float32))
        betas.append(beta)
        if kept is not None:
            samples.append(kept)
        del cond

    def stack(arrs: list[np.ndarray]) -> np.ndarray:
        return np.stack(arrs).reshape(*lead, *arrs[0].shape).astype(np.float32)

    sample_arr = None
    if settings.keep_samples:  # planes × (N, [C,] H, W) → (N, *lead, [C,] H, W)
        sample_arr = np.moveaxis(np.stack(samples), 1, 0)
        sample_arr = sample_arr.reshape(settings.n_samples, *lead, *samples[0].shape[1:]).astype(np.float32)
    mean = stack(means)
    calibrated = lower = upper = None
    if calibration is not None:
        calibrated = stack(error_stds)
        z = interval_multiplier(calibration, settings.interval_level)
        lower, upper = mean - z * calibrated, mean + z * calibrated
    return Reconstruction(
        mean=mean,
        variance=stack(variances),
        beta_map=stack(betas),
        samples=sample_arr,
        n_samples=settings.n_samples,
        nfe_per_sample=nfe,
        units=output_units(info),
        pixel_um=optics.output_pixel_um,
        settings={
            **settings.model_dump(),
            "tile_size": tile,
            "tile_overlap": overlap,
            "method": plan.method,
            "steps": nfe,
            "grid": plan.grid,
            "eta": plan.eta,
            "precision": precision,
            "device": str(device),
            "model": model.source,
        },
        calibrated_std=calibrated,
        lower=lower,
        upper=upper,
        interval_level=settings.interval_level,
        calibration=calibration_note,
        optics={
            **optics.record,
            "output_pixel_um": optics.output_pixel_um,
            "noise": check_noise(info, planes[0], optics),  # advice from the first plane; never raises
        },
    )


def _on_input_grid(optics: OpticsPlan, shape: tuple[int, int]) -> Callable[[object], Iterator[object]]:
    """Relay a plane's events, its running means resampled onto the input grid when the outputs are."""

    def translate(event: object) -> Iterator[object]:
        if isinstance(event, RunningMean) and optics.back_to_input:
            yield RunningMean(event.plane, event.n_done, optics.to_input(event.mean, shape))
        else:
            yield event

    return translate


def condition_shape(plane_shape: tuple[int, ...], info: ModelMetadata) -> tuple[int, int]:
    """(H_out, W_out) of a plane's condition, known without building it: SR up-samples by the model's scale
    factor (``tasks.make_condition``: bicubic, ``scale_factor``), phase stays on the input grid."""
    height, width = plane_shape[-2:]
    factor = 1 if info.task == "phase" else info.scale_factor
    return height * factor, width * factor


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of one plane lie on the output grid, their blending weight and who owns each pixel."""

    rows: list[int]
    cols: list[int]
    height: int  # of every tile
    width: int
    weight: np.ndarray  # (height, width) linear ramps
    owner: np.ndarray  # (H_out, W_out) index of the tile each kept sample's pixel is taken from

    @classmethod
    def plan(cls, out_h: int, out_w: int, tile: int, overlap: int) -> TileLayout:
        rows, cols = tile_starts(out_h, tile, overlap), tile_starts(out_w, tile, overlap)
        th, tw = min(tile, out_h), min(tile, out_w)
        weight = np.outer(ramp(th, overlap if len(rows) > 1 else 0), ramp(tw, overlap if len(cols) > 1 else 0))
        return cls(rows, cols, th, tw, weight, tile_owners(rows, cols, weight, (out_h, out_w)))

    @property
    def n_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    def windows(self) -> Iterator[tuple[int, int, int]]:
        """(tile index, first row, first column) of every tile, row-major."""
        for index, (r, c) in enumerate(itertools.product(self.rows, self.cols)):
            yield index, r, c


@dataclass
class _PlaneRun:
    """One plane: sample every tile, blend mean, variance and ∫β with the ramps, copy kept samples from owners."""

    network: CVDM
    settings: ReconstructSettings
    plan: SamplerPlan
    precision: str
    device: torch.device
    layout: TileLayout
    out: IntensityScale

    def tiles(
        self, cond: torch.Tensor, p_idx: int, n_planes: int, done: int, total: int
    ) -> Generator[Progress | RunningMean, None, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
        settings, plan, layout, out = self.settings, self.plan, self.layout, self.out
        n_out = self.network.config.out_channels
        shape = (n_out, *cond.shape[-2:])
        acc_mean, acc_var, acc_beta = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        acc_w = np.zeros(shape[-2:])
        kept = np.zeros((settings.n_samples, *shape), np.float32) if settings.keep_samples else None
        th, tw, weight, n_tiles = layout.height, layout.width, layout.weight, layout.n_tiles
        for t_idx, r, c in layout.windows():
            gen = iter_sample(
                self.network,
                cond[..., r : r + th, c : c + tw].to(self.device),
                n_samples=settings.n_samples,
                steps=plan.steps,
                method=plan.method,
                seed=sample_seed(settings.seed, p_idx * 100_003 + t_idx),
                batch_size=settings.batch_size,
                keep_samples=settings.keep_samples,
                eta=plan.eta,
                time_grid=plan.time_grid,
                grid=plan.grid if plan.grid in ("snr", "uniform") else "snr",
                precision=self.precision,
            )
            stage = f"plane {p_idx + 1}/{n_planes}, tile {t_idx + 1}/{n_tiles}"

            def translate(event: object, done=done, stage=stage) -> Iterator[object]:
                if isinstance(event, Step):
                    yield Progress(done + event.done, total, stage)
                elif isinstance(event, Partial) and n_tiles == 1:
                    mean_now = event.mean.float().cpu().numpy()
                    yield RunningMean(p_idx, event.n_done, _squeeze(out.offset + out.scale * mean_now))

            stats = yield from relay(gen, translate)
            done += stats.nfe_per_sample * stats.n_samples
            win = (slice(None), slice(r, r + th), slice(c, c + tw))
            acc_mean[win] += weight * stats.mean.float().cpu().numpy()
            acc_var[win] += weight * stats.variance.float().cpu().numpy()
            acc_beta[win] += weight * stats.beta_map.float().cpu().numpy()
            acc_w[win[1:]] += weight
            if kept is not None:
                mine = layout.owner[win[1:]] == t_idx  # pixels this tile owns: copied, never averaged
                kept[:, :, win[1], win[2]][:, :, mine] = stats.samples.float().cpu().numpy()[:, :, mine]
            if n_tiles > 1:
                partial = out.offset + out.scale * acc_mean / np.maximum(acc_w, 1e-12)
                yield RunningMean(p_idx, settings.n_samples, _squeeze(partial.astype(np.float32)))
        mean = _squeeze(out.offset + out.scale * acc_mean / acc_w)
        variance = _squeeze(out.scale**2 * acc_var / acc_w)
        beta = _squeeze(acc_beta / acc_w)
        if kept is not None:  # (N, C, H, W) in network units → physical units, (N, H, W) for one channel
            kept = out.offset + out.scale * kept
            kept = kept[:, 0] if n_out == 1 else kept
        return mean, variance, beta, kept


def _squeeze(arr: np.ndarray) -> np.ndarray:
    return arr[0] if arr.shape[0] == 1 else arr


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
    one network evaluation and raises :class:`Cancelled`.
    """
    settings = ReconstructSettings(n_samples=n_samples, steps=steps, seed=seed, device=device, **options)
    events = iter_reconstruct(model, image, settings)

    def report(event: object) -> None:
        if progress is not None and isinstance(event, Progress):
            progress(event.done, event.total)

    return drive(events, report, cancel=cancel, cancelled_message="reconstruction cancelled; nothing was changed")
