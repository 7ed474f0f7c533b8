"""One plane, a row band at a time: tiles sampled row by row, blended, each finished band of output rows handed on.

:class:`PlaneSampler` samples the tiles of one plane in row-major order.  It holds the accumulators of one row of
tiles (plus the rows the next tile row shares with it) and, once a tile row is done, yields the output rows no
later tile touches as a :class:`Band` — mean, raw variance, ∫β and the kept samples of those rows, in physical
units.  :class:`BandCalibrator` adds the calibrated std and interval bounds band by band; it holds back the few
rows the calibration's variance smoothing still needs from the next band, so the result equals calibrating the
whole plane at once.  A caller that writes bands as they come (:mod:`napari_cvdm.io.stack`) never holds a huge
plane's outputs whole; :func:`~napari_cvdm.inference.reconstruct.iter_reconstruct` assembles them.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from .._runtime import Progress, relay
from ..model.cvdm import CVDM
from ..model.metadata import Calibration
from ..sampling.calibration import error_std_factor, posterior_std, score_of
from ..sampling.plan import SamplerPlan
from ..sampling.samplers import Partial, Step, iter_sample, sample_seed
from ..settings import ReconstructSettings
from ..tasks import Condition, IntensityScale
from .tiling import TileLayout


@dataclass
class RunningMean:
    """The mean so far of plane ``plane`` (flat index into the leading axes), physical units, after n samples."""

    plane: int
    n_done: int
    mean: np.ndarray


@dataclass
class Band:
    """Output rows [first, end) of plane ``plane``, final.  Arrays are ([C,] rows, W) in the run's physical units
    (variance in units²; ∫β dimensionless), ``samples`` (N, [C,] rows, W); the calibrated fields are None until
    :class:`BandCalibrator` fills them (or when the model has no calibration for the sampler)."""

    plane: int
    first: int
    end: int
    mean: np.ndarray
    variance: np.ndarray
    beta_map: np.ndarray
    samples: np.ndarray | None = None
    calibrated_std: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    def maps(self) -> list[np.ndarray]:
        """The band's maps in the order of :meth:`Reconstruction.channels`: mean, [calibrated std, lower,
        upper,] sample variance, ∫β."""
        calibrated = [self.calibrated_std, self.lower, self.upper] if self.calibrated_std is not None else []
        return [self.mean, *calibrated, self.variance, self.beta_map]

    def rows(self, first: int, end: int) -> Band:
        """The output rows [first, end) of this band (absolute row numbers)."""
        cut = slice(first - self.first, end - self.first)

        def take(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else arr[..., cut, :]

        return Band(
            self.plane, first, end, take(self.mean), take(self.variance), take(self.beta_map), take(self.samples),
            take(self.calibrated_std), take(self.lower), take(self.upper),
        )  # fmt: skip

    @staticmethod
    def join(bands: list[Band]) -> Band:
        """Consecutive bands of one plane as one band."""
        if len(bands) == 1:
            return bands[0]

        def cat(name: str) -> np.ndarray | None:
            arrays = [getattr(b, name) for b in bands]
            return None if arrays[0] is None else np.concatenate(arrays, axis=-2)

        first = bands[0]
        return Band(
            first.plane, first.first, bands[-1].end, cat("mean"), cat("variance"), cat("beta_map"), cat("samples"),
            cat("calibrated_std"), cat("lower"), cat("upper"),
        )  # fmt: skip


@dataclass
class PlaneSampler:
    """Samples one plane's tiles row by row and yields its finished row bands (see the module docstring)."""

    network: CVDM
    settings: ReconstructSettings
    plan: SamplerPlan
    precision: str
    device: torch.device
    layout: TileLayout

    def bands(
        self, condition: Condition, out: IntensityScale, plane: int, stage: str, done: int, total: int
    ) -> Generator[Progress | RunningMean | Band, None, None]:
        """Sample plane number ``plane`` (its seed: ``sample_seed(settings.seed, plane)``, one stream per tile)
        from ``condition``; ``out`` maps network units to physical ones; progress counts on from ``done``."""
        settings, plan, layout = self.settings, self.plan, self.layout
        n_out, n_samples = self.network.config.out_channels, settings.n_samples
        th, tw, weight, n_tiles = layout.height, layout.width, layout.weight, layout.n_tiles
        width = layout.shape[1]
        plane_seed = sample_seed(settings.seed, plane)
        keep = settings.keep_samples
        carry: tuple[int, list[np.ndarray]] | None = None  # (first row, accumulators) shared with the next tile row
        for i, top in enumerate(layout.rows):
            acc = [np.zeros((n_out, th, width)) for _ in range(3)] + [np.zeros((th, width))]
            kept = np.zeros((n_samples, n_out, th, width), np.float32) if keep else None
            if keep:
                acc.append(kept)
            if carry is not None:
                start, old = carry
                shared = start + th - top
                for new_arr, old_arr in zip(acc, old, strict=True):
                    new_arr[..., :shared, :] = old_arr[..., top - start :, :]
            owner = layout.owner(top, top + th) if keep else None
            cond_rows = condition.rows(top, top + th)
            for t_idx, r, c in layout.windows():
                if r != top:
                    continue
                gen = iter_sample(
                    self.network,
                    cond_rows[..., :, c : c + tw].to(self.device),
                    n_samples=n_samples,
                    steps=plan.steps,
                    method=plan.method,
                    seed=sample_seed(plane_seed, t_idx),
                    batch_size=settings.batch_size,
                    keep_samples=keep,
                    eta=plan.eta,
                    time_grid=plan.time_grid,
                    grid=plan.grid if plan.grid in ("snr", "uniform") else "snr",
                    precision=self.precision,
                )
                where = f"{stage}, tile {t_idx + 1}/{n_tiles}"
                stats = yield from relay(gen, _translate(done, total, where, n_tiles, plane, out))
                done += stats.nfe_per_sample * stats.n_samples
                cols = slice(c, c + tw)
                acc[0][..., cols] += weight * stats.mean.float().cpu().numpy()
                acc[1][..., cols] += weight * stats.variance.float().cpu().numpy()
                acc[2][..., cols] += weight * stats.beta_map.float().cpu().numpy()
                acc[3][..., cols] += weight
                if kept is not None and owner is not None:
                    mine = owner[:, cols] == t_idx  # pixels this tile owns: copied, never averaged
                    kept[..., cols][:, :, mine] = stats.samples.float().cpu().numpy()[:, :, mine]
            first, end = layout.band(i)
            n = end - first
            w = acc[3][:n]
            band = Band(
                plane, first, end,
                _squeeze(out.offset + out.scale * acc[0][:, :n] / w),
                _squeeze(out.scale**2 * acc[1][:, :n] / w),
                _squeeze(acc[2][:, :n] / w),
                None if kept is None else _samples(out.offset + out.scale * kept[:, :, :n], n_out),
            )  # fmt: skip
            yield _as_float32(band)
            carry = (top, acc)


def _translate(done: int, total: int, stage: str, n_tiles: int, plane: int, out: IntensityScale):
    def translate(event: object) -> Iterator[object]:
        if isinstance(event, Step):
            yield Progress(done + event.done, total, stage)
        elif isinstance(event, Partial) and n_tiles == 1:
            mean_now = event.mean.float().cpu().numpy()
            yield RunningMean(plane, event.n_done, _squeeze(out.offset + out.scale * mean_now).astype(np.float32))

    return translate


def _squeeze(arr: np.ndarray) -> np.ndarray:
    return arr[0] if arr.shape[0] == 1 else arr


def _samples(arr: np.ndarray, n_out: int) -> np.ndarray:
    """(N, C, rows, W) → (N, rows, W) for a one-channel model."""
    return arr[:, 0] if n_out == 1 else arr


def _as_float32(band: Band) -> Band:
    def f32(arr: np.ndarray | None) -> np.ndarray | None:
        return None if arr is None else np.asarray(arr, np.float32)

    return replace(
        band, mean=f32(band.mean), variance=f32(band.variance), beta_map=f32(band.beta_map), samples=f32(band.samples)
    )


class BandCalibrator:
    """Adds the calibrated std (expected RMS error of the mean, σ·√(1+1/N), physical units) and the central
    interval at ``z`` to a plane's bands as they come, exactly as calibrating the whole plane would.

    The calibration's score of a pixel depends on its neighbours within ``radius`` rows (the Gaussian smoothing of
    the raw variance, and the local structure of the mean where the calibration uses it): the last ``radius`` rows
    of a band wait for the next band, and the ``radius`` rows before a band are kept as context.  ``scale`` maps
    network units to physical ones (the calibration works in network units); ``plane_rows`` is the plane's height
    (where its edge lies, for a calibration whose score knows the edge)."""

    def __init__(self, calibration: Calibration, scale: float, n_samples: int, z: float, plane_rows: int) -> None:
        self.calibration, self.scale, self.z, self.plane_rows = calibration, scale, z, plane_rows
        self.factor = error_std_factor(n_samples)
        self.radius = score_of(calibration).reach()
        self.pending: list[Band] = []
        self.context: tuple[np.ndarray, np.ndarray] | None = None  # network-unit (variance, mean) of rows before

    def push(self, band: Band, last: bool) -> list[Band]:
        """Take ``band`` (the plane's last when ``last``); return the bands now final, calibrated."""
        self.pending.append(band)
        merged = Band.join(self.pending)
        emit_end = merged.end if last else merged.end - self.radius
        if emit_end <= merged.first:
            self.pending = [merged]
            return []
        window = (merged.variance / self.scale**2, merged.mean / self.scale)
        n_ctx = 0 if self.context is None else self.context[0].shape[-2]
        if self.context is not None:
            window = tuple(np.concatenate([c, w], axis=-2) for c, w in zip(self.context, window, strict=True))
        sigma = posterior_std(self.calibration, *window, merged.first - n_ctx, self.plane_rows)
        sigma = sigma[..., n_ctx : n_ctx + emit_end - merged.first, :]
        final = merged.rows(merged.first, emit_end)
        final.calibrated_std = (self.scale * self.factor * sigma).astype(np.float32)
        final.lower = final.mean - self.z * final.calibrated_std
        final.upper = final.mean + self.z * final.calibrated_std
        self.pending = [] if last else [merged.rows(emit_end, merged.end)]
        upto = emit_end - merged.first + n_ctx
        start = max(0, upto - self.radius)
        self.context = None if last or self.radius == 0 else tuple(w[..., start:upto, :] for w in window)
        return [final]
