"""Does the image's own resolution agree with the optics a super-resolution run assumes?

A run takes the pixel size, emission λ and NA that are stated (settings, file metadata) or, where none are, the
model's.  They predict the widefield image's incoherent cutoff 2·NA·p/λ in cycles per pixel; the image shows its
own (:func:`napari_cvdm.physics.resolution.estimate_cutoff`, fitted blind within 0.92–1.03× on the bench's images).
Where the two disagree by more than the fit's error, the network sees a PSF of another width in pixels than the one
it was trained and calibrated on, and the reconstruction and its error bars do not hold: on the bench's held-out
108 nm images, run as if at the model's 62.6 nm, the errors are 2.5× the calibrated std.  The check warns and says
what to state; it never refuses (the fit can be fooled by processed images), and never raises.

The verdict goes to ``Reconstruction.optics["resolution"]``: ``"match"``, ``"mismatch"`` (with the numbers),
``"unknown"`` (no estimate, and why) or ``"unchecked"`` (phase, or a model that states no optics).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model.metadata import ModelMetadata
from ..physics.noise import sr_cutoff_cycles_per_px
from ..physics.resolution import FINER, NYQUIST, CutoffEstimate, cutoff_ratio, cutoffs_agree, estimate_cutoff
from .optics import ASSUMED, OWN_PIXEL, OpticsPlan, used_optics

OPTICS_KEYS = ("pixel_size_um", "wavelength_um", "numerical_aperture")


def check_resolution(
    info: ModelMetadata,
    plane: np.ndarray | None,
    plan: OpticsPlan | None = None,
    found: CutoffEstimate | ValueError | None = None,
) -> dict[str, Any]:
    """The resolution verdict for one SR input plane (H, W) under the run's optics (``plan``; else the model's).
    ``found``: the plane's cutoff estimate (or the error it gave) when already fitted, instead of ``plane`` (the
    widget fits a layer once and checks it against every change of its optics fields).  Never raises."""
    try:
        if info.task != "super-resolution":
            return {"verdict": "unchecked", "note": "the resolution check is for widefield images (super-resolution)"}
        used = (plan.record.get("used") or {}) if plan is not None else {}
        values = used_optics(plan, info)
        if any(values[key] is None for key in OPTICS_KEYS):
            return {
                "verdict": "unchecked",
                "note": "the model states no pixel size, λ and NA to check the image against",
            }
        expected = _cutoff(values)
        described = _described(values, used)
        trained = info.training.get("data_resolution") or {}
        if trained.get("cutoff_cycles_per_px"):  # what the model's own training inputs showed, moved by the optics
            expected *= trained["cutoff_cycles_per_px"] / _cutoff(used_optics(None, info))
            described += f", as the model's training inputs showed them (cutoff {trained['cutoff_cycles_per_px']:.2f})"
        if found is None:
            found = fitted_cutoff(plane)
        if isinstance(found, ValueError):
            return {"verdict": "unknown", "note": f"resolution not checked: {found}"}
        return resolution_verdict(found, expected, described)
    except Exception as err:  # noqa: BLE001 - advice, never the reason a reconstruction fails
        return {"verdict": "unknown", "note": f"resolution not checked: {err}"}


def fitted_cutoff(plane: np.ndarray) -> CutoffEstimate | ValueError:
    """The plane's cutoff estimate, or the error that says why there is none."""
    try:
        return estimate_cutoff(np.asarray(plane))
    except ValueError as err:
        return err


def _cutoff(optics: dict[str, Any]) -> float:
    return sr_cutoff_cycles_per_px(optics["numerical_aperture"], optics["wavelength_um"], optics["pixel_size_um"])


def shown_cutoff(verdict: dict[str, Any]) -> float | None:
    """The cutoff (cycles per pixel) the image showed, for the noise check's noise band; None without an estimate."""
    return verdict.get("cutoff_cycles_per_px")


def qualified_calibration(calibration: str, verdict: dict[str, Any], calibrated: bool) -> str:
    """The sentence on what the calibrated std rests on, with a mismatched resolution said to void it here."""
    if not calibrated or verdict.get("verdict") != "mismatch":
        return calibration
    return (
        f"{calibration}; not valid for this image: its resolution does not match the optics used, so the errors may "
        "be several times the calibrated std (optics['resolution'])"
    )


def resolution_verdict(found: CutoffEstimate, expected: float, optics: str = "the optics used") -> dict[str, Any]:
    """Compare a fitted cutoff with the ``expected`` one (cycles per pixel) of ``optics`` (how they are named).
    Both are compared up to Nyquist (0.5 cycles per pixel): beyond it an image aliases, and its cutoff is not
    measured, so two cutoffs beyond it agree."""
    cutoff = found.cutoff_cycles_per_px
    ratio = cutoff_ratio(cutoff, expected)
    width = expected / cutoff  # the PSF width in pixels relative to the assumed one (≤ where the fit is a bound)
    record = {"cutoff_cycles_per_px": cutoff, "expected_cycles_per_px": expected, "psf_width_factor": width,
              "at_least": found.at_least}  # fmt: skip
    shown = f"{'≥ ' if found.at_least else ''}{cutoff:.2f}"
    if cutoffs_agree(cutoff, expected):
        undersampled = min(cutoff, expected) >= NYQUIST
        beyond = " (both at or beyond Nyquist: undersampled, as the optics predict)" if undersampled else ""
        note = (f"the image's resolution agrees with {optics} (cutoff {shown} cycles per pixel measured, "
                f"{expected:.2f} expected{beyond})")  # fmt: skip
        return {**record, "verdict": "match", "note": note}
    if ratio > FINER:
        what = "finer detail than they pass: a larger camera pixel, a higher NA or a shorter λ than assumed"
    else:
        what = "less detail than they pass: a smaller camera pixel, a lower NA, a longer λ, or a blurred image"
    note = (
        f"the image's resolution does not match {optics}: it shows detail up to {shown} cycles per pixel where "
        f"they pass {expected:.2f}, {what} (its PSF about {'≤ ' if found.at_least else ''}{width:.2f}× as wide in "
        "pixels). The reconstruction and its error bars assume those optics and do not hold here: state your "
        "pixel size, emission λ and NA (predict --pixel-size --wavelength --na, or the widget's optics fields)"
    )
    return {**record, "verdict": "mismatch", "note": note}


def _described(values: dict[str, float], used: dict[str, Any]) -> str:
    """The optics a run used, and which of them were the model's because none were stated."""
    shown = {"pixel_size_um": f"pixel {values['pixel_size_um'] * 1000:.1f} nm",
             "wavelength_um": f"λ {values['wavelength_um'] * 1000:.0f} nm",
             "numerical_aperture": f"NA {values['numerical_aperture']:g}"}  # fmt: skip
    assumed = [k for k in OPTICS_KEYS if (used.get(k) or {}).get("source", ASSUMED) in (ASSUMED, OWN_PIXEL)]
    if len(assumed) == len(OPTICS_KEYS):
        return f"the model's optics, assumed as none were stated ({', '.join(shown.values())})"
    stated = ", ".join(shown[k] for k in OPTICS_KEYS if k not in assumed)
    rest = f"; {', '.join(shown[k] for k in assumed)} the model's, not stated" if assumed else ""
    return f"the optics used ({stated} stated{rest})"
