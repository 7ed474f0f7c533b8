"""After training or fine-tuning: recalibrate the uncertainty on the validation pairs that training never used.

A model's :class:`~napari_cvdm.model.metadata.Calibration` belongs to its weights; after fine-tuning, the base
model's calibration no longer describes the new model.  :func:`iter_recalibrate` samples every validation pair
(network units, as the loop holds them: the condition and the normalised target; a central crop of at most
``crop`` output pixels per side) with each sampler setting to calibrate — the model's default and every setting
the base model was calibrated for — and fits a new calibration.  With too few validation images or pixels it keeps
the base model's calibration and says so.  Never the training pairs: their errors are smaller than a new image's.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._runtime import CancelToken, Progress, relay
from .._runtime.device import default_precision, inference_copy, resolve_device
from ..model.cvdm import CVDM
from ..model.files import TrainedModel, save_model
from ..model.metadata import Calibration, ModelMetadata, SamplerDefaults
from ..sampling.calibration import MIN_IMAGES, MIN_PIXELS, CalibrationError, fit_calibration
from ..sampling.plan import plan_sampler
from ..sampling.samplers import iter_sample, sample_seed
from ..settings import ReconstructSettings, TrainSettings
from .data import PairedDataset
from .loop import TrainProgress, iter_train

DEFAULT_CROP = 256  # output pixels per side: enough pixels per image, bounded time and memory


@dataclass(frozen=True)
class Recalibration:
    """The model's new metadata and one sentence for the user saying what the calibration rests on."""

    info: ModelMetadata
    message: str
    recalibrated: bool


def settings_to_calibrate(info: ModelMetadata) -> list[tuple[str, float, int]]:
    """(method, η, steps): the model's default sampler, then every setting it already holds a calibration for."""
    defaults = info.sampler
    wanted = [(defaults.method, defaults.eta if defaults.method == "gamma" else 1.0, defaults.steps)]
    for c in info.calibrations:
        key = (c.method, c.eta, c.steps)
        if key not in wanted:
            wanted.append(key)
    return wanted


def _time_grid(defaults: SamplerDefaults, method: str, eta: float, steps: int) -> torch.Tensor | None:
    """The grid a reconstruction at these settings uses (:func:`~napari_cvdm.sampling.plan.plan_sampler`): at
    the model's default steps, the run that gives no steps (its explicit default grid, when it has one)."""
    asked = ReconstructSettings(method=method, eta=eta, steps=None if steps == defaults.steps else steps)
    return plan_sampler(defaults, asked).time_grid


def _crop(arr: np.ndarray, side: int) -> np.ndarray:
    h, w = arr.shape[-2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return arr[..., top : top + side, left : left + side]


def iter_recalibrate(
    model: TrainedModel,
    validation: PairedDataset | None,
    n_samples: int = 8,
    crop: int = DEFAULT_CROP,
    device: str = "auto",
    seed: int = 0,
    stop: CancelToken | None = None,
) -> Generator[Progress, None, Recalibration]:
    """Recalibrate ``model`` on ``validation`` (pairs training never used); yields progress, returns the result.
    ``stop`` (checked before each validation image) ends it early, keeping the calibration the model has."""
    info = model.info
    pairs = list(validation.pairs) if validation is not None else []
    side = max(model.network.min_size, crop - crop % model.network.min_size)
    n_pixels = sum(int(np.prod(_crop(p.target, side).shape[-2:])) for p in pairs)
    if len(pairs) < MIN_IMAGES or n_pixels < 2 * MIN_PIXELS:
        base = info.calibrations
        kept = (
            f"kept the base model's calibration ({base[0].data or 'its own held-out pairs'}), which describes the "
            "base weights, not these"
            if base
            else "the model has no calibrated uncertainty (its layers show the raw sample spread)"
        )
        return Recalibration(
            info,
            f"not recalibrated: {len(pairs)} validation image(s), {n_pixels:,} pixels; a calibration needs at least "
            f"{MIN_IMAGES} images and {2 * MIN_PIXELS:,} pixels. Give more pairs or a larger validation fraction; "
            f"{kept}",
            False,
        )
    torch_device = resolve_device(device)
    precision = default_precision(torch_device)
    network = inference_copy(model.network, torch_device)
    wanted = settings_to_calibrate(info)
    calibrations: list[Calibration] = []
    total = len(wanted) * len(pairs)
    phase = info.task == "phase"
    for s_idx, (method, eta, steps) in enumerate(wanted):
        variances, errors = [], []
        for k, pair in enumerate(pairs):
            if stop is not None and stop.cancelled:
                note = _kept_note("not recalibrated: stopped during the recalibration", info)
                return Recalibration(info, note, False)
            done = s_idx * len(pairs) + k
            stage = f"recalibrating {method}, η = {eta:g}, {steps} steps: validation image {k + 1}/{len(pairs)}"
            yield Progress(done, total, stage)
            cond = torch.from_numpy(np.ascontiguousarray(_crop(pair.condition, side)))[None].to(torch_device)
            target = _crop(pair.target, side)[0].astype(np.float64)
            job = iter_sample(
                network,
                cond,
                n_samples=n_samples,
                steps=steps,
                method=method,  # type: ignore[arg-type]
                eta=eta,
                seed=sample_seed(seed, k),
                time_grid=_time_grid(info.sampler, method, eta, steps),
                precision=precision,
            )
            stats = yield from relay(job, lambda _e, done=done, stage=stage: [Progress(done, total, stage)])
            mean = stats.mean.float().cpu().numpy()[0].astype(np.float64)
            err = (mean - mean.mean()) - (target - target.mean()) if phase else mean - target
            variances.append(stats.variance.float().cpu().numpy()[0])
            errors.append(err)
        about = f"{len(pairs)} validation pairs of the training data (never trained on), central {side}² crops"
        try:
            calibrations.append(  # the raw spread only: a fine-tune's few validation pairs cannot choose a blend
                fit_calibration(variances, errors, n_samples, method, eta, steps, data=about, feature_candidates=())
            )
        except CalibrationError as err:
            return Recalibration(info, f"not recalibrated: {err}", False)
    yield Progress(total, total, "recalibrated")
    new = info.model_copy(update={"calibrations": calibrations}, deep=True)
    return Recalibration(
        new,
        f"recalibrated on {len(pairs)} validation images ({n_pixels:,} pixels) that training never used",
        True,
    )


def _kept_note(note: str, info: ModelMetadata) -> str:
    if info.calibrations:
        note += "; the model keeps the calibration it started with, which describes other weights"
    return note


def iter_train_recalibrated(
    network: CVDM,
    info: ModelMetadata,
    data: PairedDataset,
    settings: TrainSettings | None = None,
    output: str | Path | None = None,
    *,
    resume: bool = False,
    stop: CancelToken | None = None,
    n_samples: int = 8,
) -> Generator[TrainProgress | Progress, None, TrainedModel]:
    """:func:`~napari_cvdm.training.loop.iter_train`, then :func:`iter_recalibrate` on its validation pairs.

    Yields the training's :class:`TrainProgress` events, then the recalibration's :class:`Progress`; writes the
    recalibrated model to ``output``.  ``training["calibration"]`` in the returned model's header says what the
    calibration rests on.  A run that was stopped, or a worker process other than the first of a DDP run, keeps the
    calibration it started with (a stopped run says so).
    """
    settings = settings or TrainSettings()
    model = yield from iter_train(network, info, data, settings, output, resume=resume, stop=stop)
    if model is None or int(os.environ.get("RANK", "0")) != 0:
        return model
    if model.info.training.get("stopped_early"):
        model.info.training["calibration"] = _kept_note("not recalibrated: training was stopped early", model.info)
        if output is not None:
            save_model(output, model.network, model.info)
        return model
    _, validation = data.split(settings.val_fraction, settings.seed)  # the loop's own split
    out = yield from iter_recalibrate(model, validation, n_samples=n_samples, device=settings.device, stop=stop)
    new_info = out.info.model_copy(deep=True)
    new_info.training["calibration"] = out.message
    if output is not None:
        save_model(output, model.network, new_info)
    return TrainedModel(network=model.network, info=new_info, source=model.source)
