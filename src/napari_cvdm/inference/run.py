"""A checked reconstruction run: one model, one set of settings, planes of one shape — then plane after plane.

:func:`prepare_run` checks everything that does not need the pixels (settings, the sampler plan, the optics
against the model's range, tile sizes) and fixes the tile layout, the calibration and the output channels;
:meth:`ReconstructionRun.iter_plane` reconstructs one plane and yields its output a row band at a time
(:mod:`.bands`).  A job over many planes (:func:`~napari_cvdm.inference.reconstruct.iter_reconstruct`, the
plane-by-plane job of :mod:`napari_cvdm.io.stack`) prepares one run and reuses its network copy for every plane.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._runtime import Progress
from .._runtime.device import auto_tile_size, default_precision, inference_copy
from ..model.cvdm import CVDM
from ..model.files import TrainedModel
from ..model.metadata import Calibration, ModelMetadata
from ..sampling.calibration import interval_multiplier
from ..sampling.calibration_bins import conditioned_on, select_calibration
from ..sampling.plan import SamplerPlan, plan_sampler
from ..settings import ReconstructSettings, overlap_message
from ..tasks import InputError, check_image, dark_subtracted, output_scale, output_units, plane_condition
from .bands import Band, BandCalibrator, PlaneSampler, RunningMean
from .noise_check import check_noise, estimated_noise_xi
from .optics import OpticsPlan, network_psf_factor, plan_optics, resampled_fresnel_factor
from .resolution_check import check_resolution, shown_cutoff
from .tiling import TileLayout


def condition_shape(plane_shape: tuple[int, ...], info: ModelMetadata) -> tuple[int, int]:
    """(H_out, W_out) of a plane's condition, known without building it: SR up-samples by the model's scale
    factor (``tasks.make_condition``: bicubic, ``scale_factor``), phase stays on the input grid."""
    height, width = plane_shape[-2:]
    factor = 1 if info.task == "phase" else info.scale_factor
    return height * factor, width * factor


def output_channels(units: str, interval_level: float, calibrated: bool) -> list[tuple[str, str]]:
    """(name, unit) of every output map, in the order files and layers show them: mean; when calibrated, the
    calibrated std and the central interval's bounds; the raw sample variance and the ∫β map."""
    out = [("mean", units)]
    if calibrated:
        level = f"{round(100 * interval_level):d} %"
        out += [
            ("calibrated std", units),
            (f"{level} interval lower bound", units),
            (f"{level} interval upper bound", units),
        ]
    return [*out, ("sample variance", f"({units})²"), ("beta map", "1")]


@dataclass
class ReconstructionRun:
    """A run checked by :func:`prepare_run`; :meth:`iter_plane` does the work, plane by plane."""

    model: TrainedModel
    settings: ReconstructSettings
    device: torch.device
    precision: str
    plan: SamplerPlan
    optics: OpticsPlan
    run_info: ModelMetadata
    in_hw: tuple[int, int]
    layout: TileLayout
    tile: int  # tile side on the output grid (px)
    overlap: int  # pixels neighbouring tiles share
    nfe: int
    calibration: Calibration | None  # the run's: pooled, or its PSF width's; a noise-conditioned model picks per plane
    calibration_note: str
    plane_notes: dict[int, str] = field(default_factory=dict)  # the calibration sentence of each plane run
    _network: CVDM | None = field(default=None, repr=False)

    @property
    def out_hw(self) -> tuple[int, int]:
        """(H_out, W_out) of the outputs: the network's grid, or the input's when phase was resampled."""
        return self.in_hw if self.optics.back_to_input else self.layout.shape

    @property
    def evaluations_per_plane(self) -> int:
        return self.layout.n_tiles * self.nfe * self.settings.n_samples

    @property
    def units(self) -> str:
        return output_units(self.model.info)

    @property
    def channels(self) -> list[tuple[str, str]]:
        return output_channels(self.units, self.settings.interval_level, self.calibration is not None)

    def image_checks(self, plane: np.ndarray) -> dict[str, Any]:
        """The run's optics record with the checks of one input plane: the resolution it shows against the optics
        used, and its noise against the model's training noise (the noise band above the cutoff it shows).  Advice
        for the result's ``optics``; never raises."""
        info = self.model.info
        resolution = check_resolution(info, plane, self.optics)
        offset = self.settings.camera_offset or None
        noise = check_noise(info, plane, self.optics, offset, shown_cutoff(resolution))
        record = {**self.optics.record, "output_pixel_um": self.optics.output_pixel_um}
        return {**record, "noise": noise, "resolution": resolution}

    @property
    def network(self) -> CVDM:
        """The run's own copy of the model's network on the run's device (made once, on first use)."""
        if self._network is None:
            self._network = inference_copy(self.model.network, self.device)
        return self._network

    def resolved_settings(self) -> dict[str, Any]:
        """The settings as run: the user's, with every automatic choice resolved."""
        return {
            **self.settings.model_dump(),
            "tile_size": self.tile,
            "tile_overlap": self.overlap,
            "method": self.plan.method,
            "steps": self.nfe,
            "grid": self.plan.grid,
            "eta": self.plan.eta,
            "precision": self.precision,
            "device": str(self.device),
            "model": self.model.source,
        }

    def iter_plane(
        self, plane: np.ndarray, index: int, stage: str, done: int = 0, total: int | None = None
    ) -> Generator[Progress | RunningMean | Band, None, None]:
        """Reconstruct one input plane (phase: (2, H, W); SR: (H, W)); yields progress, running means and its
        output bands in row order, calibrated when the model is.  ``index`` is the plane's number in its stack,
        which seeds it (``sample_seed(settings.seed, index)``), so a plane gives the same numbers whether its
        stack runs whole, plane by plane, resumed or on a cluster."""
        total = self.evaluations_per_plane if total is None else total
        info, optics, run_info = self.model.info, self.optics, self.run_info
        yield Progress(done, total, f"{stage}: condition")
        plane = dark_subtracted(plane, self.settings.camera_offset)
        on_grid = optics.to_network(plane)
        condition, in_scale = plane_condition(
            check_image(on_grid, run_info, min_size=self.model.network.min_size), run_info
        )
        if condition.shape != self.layout.shape:
            raise RuntimeError(f"the condition is {condition.shape}, expected {self.layout.shape}")
        out = output_scale(info, in_scale)  # network units → physical units of this plane
        sampler = PlaneSampler(self.network, self.settings, self.plan, self.precision, self.device, self.layout)
        bands = sampler.bands(condition, out, index, stage, done, total)
        calibrator = None
        calibration, self.plane_notes[index] = self.plane_calibration(plane)
        height = self.out_hw[0]
        if calibration is not None:
            z = interval_multiplier(calibration, self.settings.interval_level)
            calibrator = BandCalibrator(calibration, out.scale, self.settings.n_samples, z, height)
        for event in self._on_input_grid(bands) if optics.back_to_input else bands:
            if not isinstance(event, Band) or calibrator is None:
                yield event
            else:
                yield from calibrator.push(event, last=event.end == height)

    def plane_calibration(self, plane: np.ndarray) -> tuple[Calibration | None, str]:
        """The calibration of one input plane and its sentence: when the model holds noise-conditioned
        calibrations for the run's sampler, the one for the plane's estimated noise ξ (pooled without an
        estimate); otherwise the run's."""
        cals = self.model.info.calibrations
        chosen = self.calibration
        if chosen is None or chosen.fresnel_factor is not None or conditioned_on(cals, chosen) != "noise_xi":
            return self.calibration, self.calibration_note  # a resampled set-up's calibration is not by noise
        xi = estimated_noise_xi(self.model.info.task, plane)
        calibration, note = select_calibration(cals, self.plan.method, self.plan.eta, self.nfe, xi)
        return calibration, note if xi is not None else f"this plane's noise could not be estimated: {note}"

    def calibration_summary(self, planes: list[int]) -> str:
        """One sentence on what the calibrated std of these planes rests on (planes that used different
        noise-conditioned calibrations are counted per calibration)."""
        notes = [self.plane_notes.get(p, self.calibration_note) for p in planes]
        if len(set(notes)) <= 1:
            return notes[0] if notes else self.calibration_note
        counts = {note: notes.count(note) for note in dict.fromkeys(notes)}
        return "by each plane's estimated noise: " + "; ".join(
            f"{n} of {len(notes)} planes {note}" for note, n in counts.items()
        )

    def _on_input_grid(self, bands: Generator[Any, None, None]) -> Generator[Any, None, None]:
        """Phase resampled to the model's λ·d/p²: the whole plane's maps back onto the input grid, one band."""
        optics, shape, parts = self.optics, self.in_hw, []
        for event in bands:
            if isinstance(event, Band):
                parts.append(event)
            elif isinstance(event, RunningMean):
                yield RunningMean(event.plane, event.n_done, optics.to_input(event.mean, shape))
            else:
                yield event
        whole = Band.join(parts)
        yield Band(
            whole.plane, 0, shape[0],
            optics.to_input(whole.mean, shape),
            optics.to_input(whole.variance, shape, non_negative=True),
            optics.to_input(whole.beta_map, shape),
            None if whole.samples is None else optics.to_input(whole.samples, shape),
        )  # fmt: skip


def prepare_run(
    model: TrainedModel,
    plane_hw: tuple[int, int],
    settings: ReconstructSettings | None = None,
    sources: Mapping[str, str] | None = None,
) -> ReconstructionRun:
    """Check a run of ``model`` on input planes of ``plane_hw`` pixels and plan it; raises :class:`InputError`
    (or :class:`~napari_cvdm.inference.optics.OpticsMismatch`) before any work.  The pixels of each plane are
    checked when it runs (:meth:`ReconstructionRun.iter_plane`)."""
    settings = settings or ReconstructSettings()
    device = settings.torch_device()
    precision = default_precision(device) if settings.precision == "auto" else settings.precision
    info, net = model.info, model.network
    plan = plan_sampler(info.sampler, settings)
    optics = plan_optics(info, settings, sources)
    in_hw = (int(plane_hw[-2]), int(plane_hw[-1]))
    net_hw = optics.network_shape(*in_hw)
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
    nfe = (len(plan.time_grid) - 1) if plan.time_grid is not None else plan.steps
    psf_factor = network_psf_factor(optics.record)  # SR models calibrated per PSF width pick theirs
    setup = resampled_fresnel_factor(optics.record)  # a phase pair resampled from another set-up
    calibration, note = select_calibration(
        info.calibrations, plan.method, plan.eta, nfe, psf_factor=psf_factor, fresnel_factor=setup
    )
    if settings.n_samples < 2:
        calibration, note = None, "not calibrated: one sample has no spread; draw at least 2 samples"
    return ReconstructionRun(
        model, settings, device, precision, plan, optics, run_info, in_hw,
        TileLayout.plan(out_h, out_w, tile, overlap), tile, overlap, nfe, calibration, note,
    )  # fmt: skip
