"""Adapt a model to the user's microscope without paired data: noise from their image, pairs from their optics.

1. :func:`estimate_camera_noise`: a variance–mean fit on the flattest blocks of the user's own raw image.  Each
   8×8 block gives its mean and a noise variance from neighbouring-pixel differences (var(xᵢ − xᵢ₊₁)/2, blind
   to smooth structure); in each of 12 brightness bins the blocks at the 20th variance percentile are the flat
   ones (corrected for that percentile's χ² bias); a straight line var = mean/g + (σ_r² − offset/g) gives the
   gain g (photo-electrons per unit) and, with the camera offset (0 for offset-subtracted data, else the user's
   value: one image cannot separate offset from read noise), the read noise σ_r.  For phase the relative noise
   ξ = σ/mean of the flat blocks (the simulator's additive N(ξ, ξ) in units of the illumination).
2. :func:`simulate_adaptation_pairs`: training pairs simulated with the user's optics (pixel, NA, λ, or λ and d)
   and that noise (photons around the image's own foreground level, one raw frame).
3. :func:`iter_adapt`: fine-tune the chosen model on them with the existing loop (``jobs.finetune_start``,
   ``recalibrate.iter_train_recalibrated``: progress, stop after the current step, resume from the checkpoint),
   recalibrate on the held-out simulated pairs, and save a user model whose header states these optics and a
   narrow valid range around them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._runtime import CancelToken, Progress
from ..model.files import TrainedModel
from ..model.metadata import ValidOptics
from ..settings import TrainSettings
from .data import DataError, PairedDataset
from .jobs import finetune_start
from .loop import TrainProgress
from .recalibrate import iter_train_recalibrated

BLOCK = 8
BINS = 12
FLAT_QUANTILE = 0.2
STOKES_SHIFT_UM = 0.027  # emission − excitation of the nominal BioSR set-up (physics.ranges.STOKES_SHIFT_UM)


@dataclass(frozen=True)
class CameraNoise:
    """The noise of the user's camera as the simulators take it, and how well the fit holds."""

    gain_e_per_unit: float  # photo-electrons per image unit (1 for photo-electron images)
    offset: float  # image units
    read_noise_units: float  # σ in image units, per frame
    foreground_photons: float  # mean foreground signal in photo-electrons
    relative_noise: float  # phase: σ/mean of the flat blocks (the simulator's ξ)
    n_blocks: int
    r2: float
    note: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _block_stats(image: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray, int]:
    h, w = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    tiles = image[:h, :w].reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3)
    tiles = tiles.reshape(-1, block, block)
    diffs = np.diff(tiles, axis=2).reshape(len(tiles), -1)
    return tiles.reshape(len(tiles), -1).mean(axis=1), diffs.var(axis=1, ddof=1) / 2, diffs.shape[1]


def estimate_camera_noise(image: np.ndarray, offset: float = 0.0, additive: bool = False) -> CameraNoise:
    """Gain, read noise and signal level from one raw image (SR: counts or photo-electrons; phase: a defocus
    plane), by a variance–mean fit on its flat regions.  Raises :class:`DataError` when the image shows no
    signal-dependent noise (a processed, denoised or background-subtracted image).  ``additive`` (phase): the
    noise is taken as additive, and only its level relative to the mean intensity (ξ) is measured."""
    from scipy import stats

    arr = np.asarray(image, dtype=np.float64)
    arr = arr.reshape(-1, *arr.shape[-2:])[0] if arr.ndim > 2 else arr
    if min(arr.shape) < 4 * BLOCK:
        raise DataError(f"the image is {arr.shape[0]}×{arr.shape[1]} px; the noise fit needs at least 32×32")
    means, variances, dof = _block_stats(arr)
    bias = stats.chi2.ppf(FLAT_QUANTILE, dof) / dof  # the 20th percentile of a variance estimate lies this low
    edges = np.quantile(means, np.linspace(0, 1, BINS + 1))
    xs, ys = [], []
    for lo, hi in itertools.pairwise(edges):
        inside = (means >= lo) & (means <= hi)
        if inside.sum() >= 5:
            xs.append(float(np.median(means[inside])))
            ys.append(float(np.quantile(variances[inside], FLAT_QUANTILE)) / bias)
    x, y = np.array(xs), np.array(ys)
    if len(x) < 3 or np.ptp(x) <= 0:
        raise DataError("the image has too little range of brightness for a variance–mean fit")
    slope, intercept = np.polyfit(x, y, 1)
    fit = slope * x + intercept
    r2 = 1.0 - float(((y - fit) ** 2).sum()) / max(float(((y - y.mean()) ** 2).sum()), 1e-30)
    relative = float(np.sqrt(max(np.median(y), 0.0)) / max(abs(float(arr.mean())), 1e-12))
    if additive:
        note = f"flat-block noise σ = {relative:.3g} × the mean intensity ({len(x)} brightness bins)"
        return CameraNoise(1.0, offset, math.sqrt(max(np.median(y), 0.0)), 0.0, relative, len(means), r2, note)
    if slope <= 0:
        raise DataError(
            "the noise does not grow with the signal (variance–mean slope ≤ 0): the image looks processed "
            "(denoised, deconvolved or normalised); adapt needs a raw camera image"
        )
    gain = 1.0 / slope
    read_var = intercept + slope * offset
    read = math.sqrt(max(read_var, 0.0))
    signal = np.clip(arr - offset, 0, None) * gain
    from ..physics.optics import foreground_mean

    note = (
        f"variance–mean fit on the flattest {BLOCK}×{BLOCK} blocks ({len(x)} brightness bins, R² {r2:.3f}): gain "
        f"{gain:.3g} e⁻/unit, read noise {read:.3g} units at offset {offset:g}"
        + (" (read noise clipped at 0: the offset may be too low)" if read_var < 0 else "")
    )
    return CameraNoise(gain, offset, read, foreground_mean(signal), relative, len(means), r2, note)


@dataclass(frozen=True)
class Microscope:
    """The user's optics (µm): SR needs pixel, NA and emission λ; phase pixel, λ and defocus d."""

    pixel_um: float
    wavelength_um: float
    numerical_aperture: float | None = None
    defocus_um: float | None = None


def simulate_adaptation_pairs(
    task: str, scope: Microscope, noise: CameraNoise, n: int, size: int, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """``n`` pairs simulated with the user's optics and noise (item k from ``SeedSequence(seed).spawn(n)[k]``)."""
    from ..physics import PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair
    from ..physics.ranges import sr_pattern_spacing

    rngs = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(n)]
    if task == "super-resolution":
        photons = max(noise.foreground_photons, 1.0)
        settings = SRSimulation(
            wavelength_um=scope.wavelength_um,
            excitation_wavelength_um=scope.wavelength_um - STOKES_SHIFT_UM,
            na=scope.numerical_aperture,
            wf_pixel_um=scope.pixel_um,
            pattern_spacing_um=sr_pattern_spacing(scope.numerical_aperture, scope.wavelength_um, scope.pixel_um),
            photons=(photons / 2, photons * 2),
            n_raw_frames=1,
            read_noise_counts=noise.read_noise_units,
            gain_photons_per_count=noise.gain_e_per_unit,
        )
        pairs = [simulate_sr_pair(settings, size, rng)[:2] for rng in rngs]
    else:
        settings = PhaseSimulation(
            wavelength_um=scope.wavelength_um,
            pixel_um=scope.pixel_um,
            defocus_um=scope.defocus_um,
            noise_max=min(max(2 * noise.relative_noise, 1e-3), 1.0),
        )
        pairs = [simulate_phase_pair(settings, size, rng)[:2] for rng in rngs]
    inputs, targets = [p[0] for p in pairs], [p[1] for p in pairs]
    return inputs, targets, settings.model_dump(mode="json")


def adapted_range(task: str, scope: Microscope, noise: CameraNoise, simulation: dict[str, Any]) -> ValidOptics:
    """The header range of an adapted model: its optics ±10 % in the deciding quantity, the noise it saw."""
    common = {"pixel_um": (scope.pixel_um,) * 2, "wavelength_um": (scope.wavelength_um,) * 2}
    basis = "adapted to one microscope by simulation (napari-cvdm adapt): its optics ±10 %"
    if task == "super-resolution":
        return ValidOptics(
            basis=basis,
            psf_width_factor=(0.9, 1.1),
            numerical_aperture=(scope.numerical_aperture,) * 2,
            photons_per_frame=tuple(simulation["photons"]),
            read_noise_counts=(noise.read_noise_units,) * 2,
            **common,
        )
    return ValidOptics(
        basis=basis,
        fresnel_factor=(0.9, 1.1),
        defocus_um=(scope.defocus_um,) * 2,
        noise_xi=(0.0, simulation["noise_max"]),
        **common,
    )


def iter_adapt(
    base: TrainedModel,
    image: np.ndarray,
    scope: Microscope,
    output: str | Path,
    *,
    name: str | None = None,
    n_pairs: int = 64,
    size: int = 128,
    train: TrainSettings | None = None,
    offset: float = 0.0,
    seed: int = 0,
    resume: bool = False,
    stop: CancelToken | None = None,
) -> Generator[TrainProgress | Progress, None, TrainedModel]:
    """Estimate the noise of ``image``, simulate ``n_pairs`` pairs with ``scope``, fine-tune ``base`` on them,
    recalibrate on the held-out ones and write ``output``; yields progress, returns the adapted model.

    ``resume`` continues a stopped run from its checkpoint (the pairs are simulated again, identically, from
    ``seed``).  Stopping (``stop``) ends training after the current step and saves, as fine-tuning does.
    """
    task = base.task
    if task == "super-resolution" and scope.numerical_aperture is None:
        raise DataError("adapting a super-resolution model needs the NA of your objective")
    if task == "phase" and scope.defocus_um is None:
        raise DataError("adapting a phase model needs the defocus d of your planes (±d)")
    train = train or TrainSettings(steps=500, batch_size=8, patch_size=64, val_fraction=0.25)
    plane = np.asarray(image)
    yield Progress(0, n_pairs + 1, "estimating the camera noise (variance–mean fit)")
    first = plane if task != "phase" else plane.reshape(-1, *plane.shape[-2:])[0]
    noise = estimate_camera_noise(first, offset, additive=task == "phase")
    inputs, targets = [], []
    for k in range(n_pairs):  # one pair at a time, so progress shows and Stop is heard
        yield Progress(k + 1, n_pairs + 1, f"simulating pair {k + 1}/{n_pairs} with your optics and noise")
        x, y, simulation = simulate_adaptation_pairs(task, scope, noise, 1, size, seed=seed * 1_000_003 + k)
        inputs += x
        targets += y
        if stop is not None and stop.cancelled:
            raise DataError("adaptation stopped while simulating; nothing was written")
    name = name or Path(output).name.split(".")[0]
    network, info = finetune_start(base, name)
    update: dict[str, Any] = {"input_pixel_um": scope.pixel_um, "wavelength_um": scope.wavelength_um}
    if task == "super-resolution":
        update["numerical_aperture"] = scope.numerical_aperture
    else:
        update["defocus_um"] = scope.defocus_um
    update["valid_optics"] = adapted_range(task, scope, noise, simulation)
    update["description"] = f"{base.info.name} adapted by simulation to {scope}"
    info = info.model_copy(update=update)
    info.training = {
        **info.training,
        "adapted": {"microscope": asdict(scope), "noise": noise.as_dict(), "simulation": simulation},
        "data": f"{n_pairs} pairs simulated with the user's optics and estimated noise, size {size}, seed {seed}",
    }
    data = PairedDataset.from_arrays(inputs, targets, info, description=info.training["data"])
    data.input_pixel_um = scope.pixel_um
    return (yield from iter_train_recalibrated(network, info, data, train, output, resume=resume, stop=stop))
