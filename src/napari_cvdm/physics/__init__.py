"""Physics for napari-cvdm: optics, procedural structures, propagation, simulators and baselines.

NumPy/SciPy/scikit-image only — nothing here imports torch, napari or ``napari_cvdm.model``.
Lengths are in µm, spatial frequencies in µm⁻¹, phases in rad.
"""

from .baselines import bicubic_upsample, richardson_lucy, tie_fft, us_tie
from .optics import camera_noise, incoherent_otf, otf_to_psf, sim_cutoff, sum_bin, widefield_cutoff
from .phase_objects import PHOTO_NAMES, cell_phase, load_photo, photo_phase
from .propagation import angular_spectrum, transfer_function, two_shot
from .ranges import (
    PhaseOpticsRange,
    SROpticsRange,
    draw_phase_settings,
    draw_sr_settings,
    simulate_phase_pair_random,
    simulate_sr_pair_random,
)
from .settings import PhaseSimulation, SRSimulation
from .simulate import read_manifest, simulate_phase_pair, simulate_sr_pair, write_dataset
from .structures import STRUCTURES, render_structure

__all__ = [
    "PHOTO_NAMES",
    "STRUCTURES",
    "PhaseOpticsRange",
    "PhaseSimulation",
    "SROpticsRange",
    "SRSimulation",
    "angular_spectrum",
    "bicubic_upsample",
    "camera_noise",
    "cell_phase",
    "draw_phase_settings",
    "draw_sr_settings",
    "incoherent_otf",
    "load_photo",
    "otf_to_psf",
    "photo_phase",
    "read_manifest",
    "render_structure",
    "richardson_lucy",
    "sim_cutoff",
    "simulate_phase_pair",
    "simulate_phase_pair_random",
    "simulate_sr_pair",
    "simulate_sr_pair_random",
    "sum_bin",
    "tie_fft",
    "transfer_function",
    "two_shot",
    "us_tie",
    "widefield_cutoff",
    "write_dataset",
]
