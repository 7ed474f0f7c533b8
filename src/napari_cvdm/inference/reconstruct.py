"""``reconstruct()``: images in physical units → N CVDM samples → mean, variance and ∫β maps.

Handles what a user's data brings: stacks (leading T/Z axes, processed plane by plane), large images (overlapping
tiles on the output grid, blended with linear ramps so no seams show), devices and precision, progress and
cancellation.  :func:`iter_reconstruct` is a generator — the napari widget runs it in a worker thread and the CLI
drives it with :func:`~napari_cvdm._runtime.drive`; closing it stops the run within one network evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._runtime import CancelToken, Progress, drive, relay
from .._runtime.device import auto_tile_size, default_precision, to_fast_layout
from ..model.files import TrainedModel
from ..sampling.samplers import Partial, Step, iter_sample, sample_seed
from ..settings import ReconstructSettings
from ..tasks import InputError, check_image, make_condition, output_scale, output_units
from .plan import plan_sampler
from .tiling import ramp, tile_starts

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

    Shapes: the input's leading axes + (H_out, W_out); ``samples`` has the sample axis first.  ``mean`` and
    ``samples`` are in ``units``, ``variance`` in units², ``beta_map`` is dimensionless (−log γ(1) if the PDE
    holds).  ``pixel_um`` is the output pixel size when the model knows it.
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

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.variance)


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


def iter_reconstruct(
    model: TrainedModel, image: np.ndarray, settings: ReconstructSettings | None = None
) -> Generator[Progress | RunningMean, None, Reconstruction]:
    """Reconstruct ``image`` (one plane or a stack); yields progress and running means, returns the result."""
    settings = settings or ReconstructSettings()
    device = settings.torch_device()
    precision = default_precision(device) if settings.precision == "auto" else settings.precision
    info, net = model.info, model.network
    plan = plan_sampler(info.sampler, settings)
    method, steps, grid = plan.method, plan.steps, plan.time_grid
    lead, planes = _planes(image, model)
    checked = [check_image(p, info, min_size=net.min_size) for p in planes]
    if settings.tile_size is not None and settings.tile_size < net.min_size:
        raise InputError(f"tile_size {settings.tile_size} is below this model's minimum of {net.min_size} pixels")
    to_fast_layout(net, device)

    conds = [make_condition(p, info) for p in checked]
    out_h, out_w = conds[0][0].shape[-2:]
    tile = settings.tile_size or auto_tile_size(device, out_h, out_w, net.config.widest)
    rows, cols = (
        tile_starts(out_h, tile, settings.tile_overlap),
        tile_starts(out_w, tile, settings.tile_overlap),
    )
    n_tiles = len(rows) * len(cols)
    nfe = (len(grid) - 1) if grid is not None else steps
    total = len(planes) * n_tiles * nfe * settings.n_samples
    n_out = net.config.out_channels
    means, variances, betas, samples = [], [], [], []
    done = 0
    for p_idx, (cond, in_scale) in enumerate(conds):
        out = output_scale(info, in_scale)
        shape = (n_out, out_h, out_w)
        acc_mean, acc_var, acc_beta = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        acc_w = np.zeros((out_h, out_w))
        acc_samples = np.zeros((settings.n_samples, *shape), np.float32) if settings.keep_samples else None
        t_idx = 0
        for r in rows:
            for c in cols:
                th, tw = min(tile, out_h), min(tile, out_w)
                sub = cond[..., r : r + th, c : c + tw].to(device)
                weight = np.outer(
                    ramp(th, settings.tile_overlap if len(rows) > 1 else 0),
                    ramp(tw, settings.tile_overlap if len(cols) > 1 else 0),
                )
                gen = iter_sample(
                    net,
                    sub,
                    n_samples=settings.n_samples,
                    steps=steps,
                    method=method,
                    seed=sample_seed(settings.seed, p_idx * 100_003 + t_idx),
                    batch_size=settings.batch_size,
                    keep_samples=settings.keep_samples,
                    eta=plan.eta,
                    time_grid=grid,
                    grid=plan.grid if plan.grid in ("snr", "uniform") else "snr",
                    precision=precision,
                )
                stage = f"plane {p_idx + 1}/{len(planes)}, tile {t_idx + 1}/{n_tiles}"

                def translate(event: object, done=done, stage=stage, out=out, p_idx=p_idx) -> Iterator[object]:
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
                acc_w[r : r + th, c : c + tw] += weight
                if acc_samples is not None:
                    acc_samples[(slice(None), *win)] += weight * stats.samples.float().numpy()
                t_idx += 1
                if n_tiles > 1:
                    partial = out.offset + out.scale * acc_mean / np.maximum(acc_w, 1e-12)
                    yield RunningMean(p_idx, settings.n_samples, _squeeze(partial.astype(np.float32)))
        means.append(_squeeze(out.offset + out.scale * acc_mean / acc_w))
        variances.append(_squeeze(out.scale**2 * acc_var / acc_w))
        betas.append(_squeeze(acc_beta / acc_w))
        if acc_samples is not None:
            samples.append(out.offset + out.scale * acc_samples[:, 0] / acc_w if n_out == 1 else acc_samples)

    def stack(arrs: list[np.ndarray]) -> np.ndarray:
        return np.stack(arrs).reshape(*lead, *arrs[0].shape).astype(np.float32)

    sample_arr = None
    if settings.keep_samples:
        sample_arr = np.moveaxis(np.stack(samples), 1, 0).reshape(settings.n_samples, *lead, out_h, out_w)
        sample_arr = sample_arr.astype(np.float32)
    return Reconstruction(
        mean=stack(means),
        variance=stack(variances),
        beta_map=stack(betas),
        samples=sample_arr,
        n_samples=settings.n_samples,
        nfe_per_sample=nfe,
        units=output_units(info),
        pixel_um=info.output_pixel_um,
        settings={
            **settings.model_dump(),
            "method": method,
            "steps": nfe,
            "grid": plan.grid,
            "eta": plan.eta,
            "precision": precision,
            "device": str(device),
            "model": model.source,
        },
    )


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
