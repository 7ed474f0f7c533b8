"""Adapt a model to the user's microscope without paired data: noise from their image, pairs from their optics.

1. :func:`estimate_camera_noise` (:mod:`napari_cvdm.physics.noise`): a variance–mean fit on the flattest blocks
   of the user's own raw image.  Each 8×8 block gives its mean and a noise variance from neighbouring-pixel
   differences (var(xᵢ − xᵢ₊₁)/2, blind to smooth structure); in each of 12 brightness bins the blocks at the 20th
   variance percentile are the flat ones (corrected for that percentile's χ² bias); a straight line
   var = mean/g + (σ_r² − offset/g) gives the gain g (photo-electrons per unit) and, with the camera offset (0 for
   offset-subtracted data, else the user's value: one image cannot separate offset from read noise), the read
   noise σ_r.  For phase the relative noise ξ = σ/mean of the flat blocks (the simulator's additive N(ξ, ξ) in
   units of the illumination).
2. :func:`simulate_adaptation_pairs`: training pairs simulated with the user's optics (pixel, NA, λ, or λ and d)
   and that noise (photons around the image's own foreground level, one raw frame).
3. :func:`iter_adapt`: fine-tune the chosen model on them with the existing loop (``jobs.finetune_start``,
   ``recalibrate.iter_train_recalibrated``: progress, stop after the current step, resume from the checkpoint),
   recalibrate on the held-out simulated pairs, and save a user model whose header states these optics and a
   narrow valid range around them.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._runtime import CancelToken, Progress
from ..model.files import TrainedModel
from ..model.metadata import ValidOptics
from ..physics.noise import CameraNoise, NoiseEstimateError
from ..physics.noise import estimate_camera_noise as _estimate_camera_noise
from ..settings import TrainSettings
from .data import DataError, PairedDataset
from .jobs import finetune_start
from .loop import TrainProgress
from .recalibrate import iter_train_recalibrated

STOKES_SHIFT_UM = 0.027  # emission − excitation of the nominal BioSR set-up (physics.ranges.STOKES_SHIFT_UM)


def estimate_camera_noise(image: np.ndarray, offset: float = 0.0, additive: bool = False) -> CameraNoise:
    """:func:`napari_cvdm.physics.noise.estimate_camera_noise` (the flat-block fit), raising :class:`DataError`
    for an image that gives no estimate (a processed image, too small, no range of brightness)."""
    try:
        return _estimate_camera_noise(image, offset, additive=additive)
    except NoiseEstimateError as err:
        raise DataError(str(err)) from err


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
