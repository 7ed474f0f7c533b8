"""Adapt a model to the user's microscope without paired data: noise from their image, pairs from their optics.

1. :func:`estimate_noise` (:mod:`napari_cvdm.physics.noise`).  **SR:** the variance–mean fit of the image's power
   *above* the widefield cutoff 2·NA·p/λ cycles per pixel (the user's pixel, NA and emission λ): only noise reaches
   it, however bright or fine the structure, so 16×16-pixel blocks give their mean and their noise variance, and
   a straight line var = mean/g + (σ_r² − offset/g) gives the gain g (photo-electrons per image unit), the read
   noise σ_r (with the camera offset: 0 for offset-subtracted data, else the user's value; one image cannot separate
   the two) and the foreground photons.  It needs a noise-only band: an image sampled coarser than about Nyquist
   (p > λ/(4·NA), e.g. 108 nm at NA 1.45), a processed image, or a fit less certain than ``MAX_GAIN_ERROR`` is
   refused with a :class:`DataError` that asks for the photons or the camera gain instead (``photons=`` /
   ``gain_e_per_unit=``, ``napari-cvdm adapt --photons / --gain``), never guessed.  **Phase:** ξ of the additive
   N(ξ, ξ) noise of the pair (:func:`~napari_cvdm.physics.noise.estimate_phase_noise`, diagonal Haar coefficients
   of the plane sum; an upper bound where fine structure fills the image).
2. :func:`simulate_adaptation_pairs`: training pairs simulated with the user's optics and that noise.  SR: the
   foreground photons 0.5–2× the image's, and its read noise, written in the model headers' convention (per raw
   frame of a 9-frame sum, ADU at 0.6026 e⁻/ADU, as :mod:`napari_cvdm.inference.noise_check` compares them); the
   summed input then has the user's photons and read noise.  Phase: ξ ~ U(0, 2ξ̂).
3. :func:`iter_adapt`: fine-tune the chosen model on them with the existing loop (``jobs.finetune_start``,
   ``recalibrate.iter_train_recalibrated``: progress, stop after the current step, resume from the checkpoint),
   recalibrate on the held-out simulated pairs, and save a user model whose header states these optics and a
   narrow valid range around them.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._runtime import CancelToken, Progress
from ..model.files import TrainedModel
from ..model.metadata import ValidOptics
from ..physics.noise import (
    MAX_GAIN_ERROR,
    CameraNoise,
    NoiseEstimateError,
    PhaseNoise,
    estimate_camera_noise,
    estimate_phase_noise,
    sr_cutoff_cycles_per_px,
)
from ..physics.optics import foreground_mean
from ..physics.settings import SRSimulation
from ..settings import ADAPT_PAIRS, ADAPT_SIZE, LENGTH_LIMITS_UM, MAX_NA, TrainSettings, adapt_train_settings
from .data import DataError, PairedDataset
from .jobs import finetune_start
from .loop import TrainProgress
from .optics import shown_resolution
from .recalibrate import iter_train_recalibrated

STOKES_SHIFT_UM = 0.027  # emission − excitation of the nominal BioSR set-up (physics.ranges.STOKES_SHIFT_UM)
_HEADER = SRSimulation()  # the headers' noise convention: photons per raw frame of a 9-frame sum, ADU at its gain
ASSUMED_READ_NOISE_E = _HEADER.read_noise_counts * _HEADER.gain_photons_per_count  # 6.0 e⁻: one BioSR sCMOS frame
STATE_NOISE = (
    "state the noise instead: the image's foreground photons (napari-cvdm adapt --photons N; the Photons field of "
    "the Adapt dock) or the camera's gain in photo-electrons per image unit (--gain), and its read noise in e⁻ "
    "(--read-noise)"
)


@dataclass(frozen=True)
class Microscope:
    """The user's optics (µm): SR needs pixel, NA and emission λ; phase pixel, λ and defocus d."""

    pixel_um: float
    wavelength_um: float
    numerical_aperture: float | None = None
    defocus_um: float | None = None

    def __post_init__(self) -> None:
        """Refuse values no microscope has (an NA of 13, a negative pixel) before any noise estimate or training."""
        limits = {  # field: (what the user knows it as, unit, largest plausible value: the settings' own)
            "pixel_um": ("pixel size", " µm", LENGTH_LIMITS_UM["pixel_size_um"]),
            "wavelength_um": ("wavelength", " µm", LENGTH_LIMITS_UM["wavelength_um"]),
            "numerical_aperture": ("NA of the objective", "", MAX_NA),
            "defocus_um": ("defocus d", " µm", LENGTH_LIMITS_UM["defocus_um"]),
        }
        for name, (what, unit, upper) in limits.items():
            value = getattr(self, name)
            if value is not None and not (0 < value <= upper):
                raise DataError(f"the {what} {value}{unit} is no microscope's: give a value in (0, {upper}]{unit}")


def image_resolution(image: np.ndarray, scope: Microscope) -> dict[str, Any] | None:
    """SR: the cutoff the user's image shows against the one the stated optics predict, and whether they agree
    (:func:`~napari_cvdm.training.optics.shown_resolution`); the pairs are simulated at the stated optics, so where
    they disagree the adapted model is trained for another microscope.  None without an estimate."""
    if scope.numerical_aperture is None:
        return None
    return shown_resolution([np.asarray(image)], scope.numerical_aperture, scope.wavelength_um,
                            scope.pixel_um)  # fmt: skip


def resolution_warning(resolution: dict[str, Any] | None) -> str | None:
    """In words, an image whose resolution disagrees with the optics stated for its adaptation; else None."""
    if not resolution or resolution["agrees"]:
        return None
    return (
        f"your image shows detail up to {resolution['cutoff_cycles_per_px']:.2f} cycles per pixel, but the pixel "
        f"size, λ and NA stated pass {resolution['expected_cycles_per_px']:.2f}: the pairs were simulated at the "
        "stated optics, so check them (the pixel size in the sample, the emission λ of your dye, the objective's NA)"
    )


def estimate_noise(
    task: str,
    image: np.ndarray,
    scope: Microscope,
    offset: float = 0.0,
    *,
    photons: float | None = None,
    gain_e_per_unit: float | None = None,
    read_noise_e: float | None = None,
) -> CameraNoise | PhaseNoise:
    """The noise adapt simulates (see the module text): SR a :class:`CameraNoise` from the out-of-band fit, or from
    the stated ``photons`` (foreground photo-electrons of ``image``) or ``gain_e_per_unit``; phase the
    :class:`PhaseNoise` of the (2, H, W) pair.  ``offset``: the camera offset in image units.  ``read_noise_e``
    (SR, e⁻ rms of the image as given) replaces the fitted read noise.  Raises :class:`DataError` when the image
    gives no trustworthy estimate, saying what to state instead."""
    arr = np.asarray(image, dtype=np.float64)
    if task == "phase":
        if photons is not None or gain_e_per_unit is not None or read_noise_e is not None:
            raise DataError("photons, gain and read noise apply to super-resolution; a phase pair's noise is ξ")
        try:
            return estimate_phase_noise(arr, offset)
        except NoiseEstimateError as err:
            raise DataError(f"the noise of the pair gives no estimate: {err}") from err
    plane = arr.reshape(-1, *arr.shape[-2:])[0]
    if photons is not None or gain_e_per_unit is not None:
        return _stated_noise(plane, offset, photons, gain_e_per_unit, read_noise_e)
    if scope.numerical_aperture is None:
        raise DataError("estimating the SR camera noise needs the NA of your objective")
    cutoff = sr_cutoff_cycles_per_px(scope.numerical_aperture, scope.wavelength_um, scope.pixel_um)
    try:
        noise = estimate_camera_noise(plane, offset, cutoff_cycles_per_px=cutoff)
    except NoiseEstimateError as err:
        nyquist = scope.wavelength_um / (4 * scope.numerical_aperture)
        coarse = (
            f" (pixels of {scope.pixel_um * 1000:.0f} nm are coarser than the Nyquist λ/(4·NA) = "
            f"{nyquist * 1000:.0f} nm: the structure fills the whole spectrum)"
            if scope.pixel_um > nyquist
            else ""
        )
        raise DataError(f"the camera noise cannot be estimated from this image: {err}{coarse}; {STATE_NOISE}") from err
    if not noise.gain_rel_error <= MAX_GAIN_ERROR:
        raise DataError(
            f"the camera noise estimate is too uncertain (gain ± {noise.gain_rel_error:.0%}, more than "
            f"± {MAX_GAIN_ERROR:.0%}: too little signal, or a processed image); {STATE_NOISE}"
        )
    if read_noise_e is not None:
        noise = replace(noise, read_noise_units=read_noise_e / noise.gain_e_per_unit, read_noise_error=math.nan,
                        note=f"{noise.note}; read noise stated: {read_noise_e:g} e⁻")  # fmt: skip
    return noise


def _stated_noise(
    plane: np.ndarray, offset: float, photons: float | None, gain: float | None, read_e: float | None
) -> CameraNoise:
    """The SR noise from a stated photon level or gain: the other follows from the image's foreground level."""
    if (photons is None) == (gain is None):
        raise DataError("state either the foreground photons or the camera gain, not both")
    if not (photons or gain or 0) > 0 or (read_e is not None and not read_e >= 0):
        raise DataError("the photons and the gain must be > 0, the read noise ≥ 0")
    level = foreground_mean(np.clip(plane - offset, 0.0, None))  # image units above the offset
    if not level > 0:
        raise DataError(f"the image holds no signal above the camera offset {offset:g}")
    gain = photons / level if photons is not None else gain
    photons = level * gain
    assumed = read_e is None
    read_e = ASSUMED_READ_NOISE_E if read_e is None else read_e
    note = (
        f"stated: {photons:.4g} foreground photo-electrons, gain {gain:.4g} e⁻ per unit (the foreground is "
        f"{level:.4g} units above offset {offset:g}); read noise {read_e:.3g} e⁻ "
        + ("assumed (one BioSR sCMOS frame; state it with --read-noise)" if assumed else "stated")
    )
    relative = math.sqrt(photons + read_e**2) / photons  # σ/mean on the foreground
    return CameraNoise(gain, offset, read_e / gain, photons, relative, 0, math.nan, note, offset_source="given")


def simulate_adaptation_pairs(
    task: str, scope: Microscope, noise: CameraNoise | PhaseNoise, n: int, size: int, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """``n`` pairs simulated with the user's optics and noise (item k from ``SeedSequence(seed).spawn(n)[k]``).

    SR: foreground photons 0.5–2× ``noise.foreground_photons`` and its read noise, per raw frame of the headers'
    9-frame sum (``_HEADER``), so each simulated input (photo-electrons) has the user's image's noise.  Phase:
    ξ ~ U(0, 2ξ̂)."""
    from ..physics import PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair
    from ..physics.ranges import sr_pattern_spacing

    rngs = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(n)]
    if task == "super-resolution":
        if not isinstance(noise, CameraNoise):
            raise TypeError("super-resolution pairs need a CameraNoise")
        frames, gain = _HEADER.n_raw_frames, _HEADER.gain_photons_per_count
        per_frame = max(noise.foreground_photons, 1.0) / frames
        read_e = noise.read_noise_units * noise.gain_e_per_unit  # e⁻ rms in the user's image (a sum, or one frame)
        settings = SRSimulation(
            wavelength_um=scope.wavelength_um,
            excitation_wavelength_um=scope.wavelength_um - STOKES_SHIFT_UM,
            na=scope.numerical_aperture,
            wf_pixel_um=scope.pixel_um,
            pattern_spacing_um=sr_pattern_spacing(scope.numerical_aperture, scope.wavelength_um, scope.pixel_um),
            photons=(per_frame / 2, per_frame * 2),
            n_raw_frames=frames,
            read_noise_counts=read_e / math.sqrt(frames) / gain,  # ADU per frame: the sum has read_e
            gain_photons_per_count=gain,
        )
        pairs = [simulate_sr_pair(settings, size, rng)[:2] for rng in rngs]
    else:
        if not isinstance(noise, PhaseNoise):
            raise TypeError("phase pairs need a PhaseNoise")
        settings = PhaseSimulation(
            wavelength_um=scope.wavelength_um,
            pixel_um=scope.pixel_um,
            defocus_um=scope.defocus_um,
            noise_max=min(max(2 * noise.xi, 1e-3), 1.0),
        )
        pairs = [simulate_phase_pair(settings, size, rng)[:2] for rng in rngs]
    inputs, targets = [p[0] for p in pairs], [p[1] for p in pairs]
    return inputs, targets, settings.model_dump(mode="json")


def adapted_range(
    task: str, scope: Microscope, noise: CameraNoise | PhaseNoise, simulation: dict[str, Any]
) -> ValidOptics:
    """The header range of an adapted model: its optics in the deciding quantity within the tolerance measured for
    models trained at one optics (SR ±5 % of the PSF width in pixels, phase ±10 % of λ·d/p²: docs/your-microscope.md
    §6, measured on the bundled models; an adapted model's own tolerance is not measured), and the noise it saw."""
    common = {"pixel_um": (scope.pixel_um,) * 2, "wavelength_um": (scope.wavelength_um,) * 2}
    if task == "super-resolution":
        return ValidOptics(
            basis="adapted to one microscope by simulation (napari-cvdm adapt): its PSF width ±5 %, the tolerance "
            "measured for the bundled SR model trained at one optics",
            psf_width_factor=(0.95, 1.05),
            numerical_aperture=(scope.numerical_aperture,) * 2,
            photons_per_frame=tuple(simulation["photons"]),
            read_noise_counts=(simulation["read_noise_counts"],) * 2,
            **common,
        )
    return ValidOptics(
        basis="adapted to one microscope by simulation (napari-cvdm adapt): its λ·d/p² ±10 %, the tolerance "
        "measured for the bundled phase model",
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
    n_pairs: int = ADAPT_PAIRS,
    size: int = ADAPT_SIZE,
    train: TrainSettings | None = None,
    offset: float = 0.0,
    photons: float | None = None,
    gain_e_per_unit: float | None = None,
    read_noise_e: float | None = None,
    seed: int = 0,
    resume: bool = False,
    stop: CancelToken | None = None,
) -> Generator[TrainProgress | Progress, None, TrainedModel]:
    """Estimate the noise of ``image`` (SR: one raw plane; phase: the (2, H, W) pair), simulate ``n_pairs`` pairs
    with ``scope``, fine-tune ``base`` on them, recalibrate on the held-out ones and write ``output``; yields
    progress, returns the adapted model.

    SR ``photons`` (foreground photo-electrons of ``image``) or ``gain_e_per_unit`` state the noise instead of
    estimating it (needed where the image is sampled coarser than about Nyquist); ``read_noise_e`` (e⁻ rms) states
    the read noise.  ``resume`` continues a stopped run from its checkpoint (the pairs are simulated again,
    identically, from ``seed``).  Stopping (``stop``) ends training after the current step and saves, as
    fine-tuning does.
    """
    task = base.task
    if task == "super-resolution" and scope.numerical_aperture is None:
        raise DataError("adapting a super-resolution model needs the NA of your objective")
    if task == "phase" and scope.defocus_um is None:
        raise DataError("adapting a phase model needs the defocus d of your planes (±d)")
    train = train or adapt_train_settings()
    stated = photons is not None or gain_e_per_unit is not None
    how = "ξ of the pair" if task == "phase" else "as stated" if stated else "variance–mean fit above the cutoff"
    yield Progress(0, n_pairs + 1, f"estimating the camera noise ({how})")
    noise = estimate_noise(
        task, image, scope, offset, photons=photons, gain_e_per_unit=gain_e_per_unit, read_noise_e=read_noise_e
    )
    resolution = image_resolution(image, scope) if task == "super-resolution" else None
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
        "adapted": {
            "microscope": asdict(scope),
            "noise": noise.as_dict(),
            "simulation": simulation,
            "resolution": resolution,
        },
        "data": f"{n_pairs} pairs simulated with the user's optics and {'stated' if stated else 'estimated'} noise, "
        f"size {size}, seed {seed}",
    }
    data = PairedDataset.from_arrays(inputs, targets, info, description=info.training["data"])
    data.input_pixel_um = scope.pixel_um
    return (yield from iter_train_recalibrated(network, info, data, train, output, resume=resume, stop=stop))
