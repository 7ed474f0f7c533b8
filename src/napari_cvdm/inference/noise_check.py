"""Is the user's noise inside what the model was trained on?  Estimated from the image, compared with the header.

A model header states the noise of its training data (:class:`~napari_cvdm.model.metadata.ValidOptics`): SR the
foreground photons per raw frame and the camera read noise (ADU per frame, at the bundled simulator's 0.6026 e⁻ per
ADU; its widefield input sums 9 raw frames), phase the level ξ of the additive N(ξ, ξ) noise.  :func:`check_noise`
estimates the same numbers from the first plane of the user's data (:mod:`napari_cvdm.physics.noise`: SR by the
variance–mean fit of the out-of-band noise, phase from the diagonal Haar coefficients) and compares them.

One image gives an uncertain estimate, and a processed image (denoised, background-subtracted, rescaled) may show
no variance–mean relation at all, so this never refuses and never raises: it returns a short verdict for
``Reconstruction.optics["noise"]``: ``"inside"``, ``"outside"`` (with the numbers and the range), ``"unknown"`` (could
not estimate, and why) or ``"unchecked"`` (the model states no noise range).  "Outside" needs the estimate beyond
the range by more than its tolerance (``PHOTON_TOLERANCE``, twice the read noise's fit error, ``XI_TOLERANCE``).
The SR camera offset is not known to a reconstruction: photons are counted above the image's dark level, and the
read noise is compared only when the offset is given.  Costs ~20 ms (at most the central 512² pixels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..model.metadata import ModelMetadata
from ..physics.noise import N_FRAMES, estimate_phase_noise, header_noise
from .optics import OpticsPlan, used_optics

PHOTON_TOLERANCE = 0.25  # one-image photon estimates are within ~20 % on simulated widefield images
XI_TOLERANCE = 0.25  # ξ is exact on images with flat regions and an upper bound on densely structured ones


def check_noise(
    info: ModelMetadata,
    plane: np.ndarray,
    plan: OpticsPlan | None = None,
    offset: float | None = None,
    shown_cutoff: float | None = None,
) -> dict[str, Any]:
    """The noise verdict for one input plane ((H, W) SR, in raw counts or photo-electrons; (2, H, W) phase).

    ``plan``: the run's optics (the stated or assumed pixel, λ, NA give the SR cutoff; a b×b binning multiplies
    the photons per network pixel by b²).  ``offset``: the camera offset in image units, when known.
    ``shown_cutoff``: SR, the cutoff the image itself shows (the resolution check's), which raises the noise band
    where the image passes more than its optics.  Never raises: any failure is an ``"unknown"`` verdict with its
    reason."""
    verdict = _noise_verdict(info, plane, plan, offset, shown_cutoff)
    try:
        clipped = saturation_note(plane)
    except Exception:  # noqa: BLE001 - advice, never the reason a reconstruction fails
        clipped = None
    if clipped is None:
        return verdict
    return {**verdict, "verdict": "outside", "note": f"{clipped}; {verdict['note']}", "saturated": True}


def with_stack_saturation(verdict: dict[str, Any], planes: Sequence[np.ndarray]) -> dict[str, Any]:
    """``verdict`` (the first plane's, :func:`check_noise`) with the later planes of an in-memory stack that look
    clipped named: the noise estimate needs one plane, but a saturated plane may be any (a bright time point), and
    the check is one pass over each.  Never raises."""
    clipped = []
    for k, plane in enumerate(planes[1:], start=1):
        try:
            if saturation_note(plane) is not None:
                clipped.append(k)
        except Exception:  # noqa: BLE001 - advice, never the reason a reconstruction fails
            continue
    if not clipped:
        return verdict
    shown = ", ".join(str(k + 1) for k in clipped[:5]) + (", …" if len(clipped) > 5 else "")
    note = (
        f"plane{'s' if len(clipped) > 1 else ''} {shown} ({len(clipped)} of {len(planes)}, counting from 1) "
        f"{'look' if len(clipped) > 1 else 'looks'} saturated or clipped at the maximum: the reconstruction and its "
        "error bars do not hold in those regions"
    )
    return {**verdict, "verdict": "outside", "note": f"{note}; {verdict['note']}", "saturated": True,
            "saturated_planes": [k + 1 for k in clipped]}  # fmt: skip


def saturation_note(plane: np.ndarray) -> str | None:
    """A warning when the image looks clipped at its maximum (a saturated camera, or a display conversion), else
    None.  The models assume intensities linear in the light, so clipped regions are reconstructed from a wrong
    forward model and their error bars do not hold there.  Integer images: a spike of at least 16 pixels and
    0.01 % of the image at the maximum, more than twice as many as at the value one count below (a natural tail
    thins out towards its maximum); float images: that many pixels exactly at the maximum (continuous values do
    not tie)."""
    arr = np.asarray(plane)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        return None
    top = arr.max()
    if arr.min() == top:  # constant: nothing to restore (refused elsewhere), not saturated
        return None
    at_top = int(np.count_nonzero(arr == top))
    if at_top < max(16, 1e-4 * arr.size):
        return None
    integer = np.issubdtype(arr.dtype, np.integer) or bool(np.all(arr == np.round(arr)))
    if integer and at_top <= 2 * int(np.count_nonzero(arr == top - 1)):
        return None
    return (
        f"{at_top:,} pixels ({100 * at_top / arr.size:.2g} %) sit at the image's maximum {float(top):g}: the image "
        "looks saturated or clipped, and the model assumes intensities linear in the light, so the reconstruction "
        "and its error bars do not hold in those regions (record with a shorter exposure or lower gain)"
    )


def _noise_verdict(
    info: ModelMetadata, plane: np.ndarray, plan: OpticsPlan | None, offset: float | None, shown: float | None
) -> dict[str, Any]:
    try:
        covered = info.covered_optics()
        if info.task == "super-resolution":
            ranges = {} if covered is None else {"photons_per_frame": covered.photons_per_frame}
            if covered is not None and covered.read_noise_counts is not None:
                ranges["read_noise_counts"] = covered.read_noise_counts
            if not any(ranges.values()):
                return _unchecked()
            return _check_sr(estimate_noise(info, plane, plan, offset, shown), ranges)
        if info.task == "phase" and covered is not None and covered.noise_xi is not None:
            return _check_phase(estimate_noise(info, plane, plan, offset), covered.noise_xi)
        return _unchecked()
    except Exception as err:  # noqa: BLE001 - an estimate is advice, never the reason a reconstruction fails
        return {"verdict": "unknown", "note": f"noise not estimated: {err}"}


def estimated_noise_xi(task: str, plane: np.ndarray) -> float | None:
    """The phase noise level ξ of one input plane ((2, H, W) in raw intensity units, no camera offset), as the
    noise-conditioned calibration uses it: fitted on the calibration inputs and looked up per plane at
    reconstruction time with this same estimator.  None for other tasks or when the image gives no estimate
    (never raises).  An upper bound on densely structured images, so a feature of the image, not its true ξ."""
    if task != "phase":
        return None
    try:
        xi = float(estimate_phase_noise(plane).xi)
    except Exception:  # noqa: BLE001 - no estimate means the pooled calibration, never a failed run
        return None
    return xi if math.isfinite(xi) and xi >= 0 else None


def _unchecked() -> dict[str, Any]:
    return {"verdict": "unchecked", "note": "the model states no noise range, so the noise was not checked"}


def _outside(value: float, span: tuple[float, float], tolerance: float, error: float = 0.0) -> str | None:
    """Which side ("below", "above") ``value`` ± ``error`` lies on beyond ``span`` widened by ``tolerance``."""
    low, high = span
    if value + error < low / (1 + tolerance):
        return "below"
    if value - error > high * (1 + tolerance):
        return "above"
    return None


def estimate_noise(
    info: ModelMetadata,
    plane: np.ndarray,
    plan: OpticsPlan | None = None,
    offset: float | None = None,
    shown_cutoff: float | None = None,
) -> dict[str, Any]:
    """The numbers a header's noise range states, estimated from one input plane with the run's optics
    (``plan``; else the header's): :func:`~napari_cvdm.physics.noise.header_noise`, with ``{"verdict": "unknown",
    "note": why}`` where it gives none.  Never raises."""
    if info.task not in ("super-resolution", "phase"):
        return {"verdict": "unknown", "note": f"no noise model for the task {info.task!r}"}
    used = used_optics(plan, info)
    found = header_noise(
        info.task, plane, offset,
        pixel_um=used["pixel_size_um"], wavelength_um=used["wavelength_um"],
        numerical_aperture=used["numerical_aperture"],
        binning=plan.bin if plan is not None else 1, shown_cutoff=shown_cutoff,
    )  # fmt: skip
    return found if found["estimate"] is not None else {"verdict": "unknown", "note": found["note"]}


def _check_sr(estimated: dict[str, Any], ranges: dict[str, tuple[float, float] | None]) -> dict[str, Any]:
    if "estimate" not in estimated:
        return estimated
    estimate = dict(estimated["estimate"])
    per_frame = estimate["photons_per_frame"]
    problems, parts = [], []
    photons = ranges.get("photons_per_frame")
    parts.append(f"≈ {per_frame:.3g} photons per frame ({N_FRAMES} summed raw frames)")
    if photons is not None:
        parts[-1] += f", the model's {photons[0]:g}–{photons[1]:g}"
        side = _outside(per_frame, photons, PHOTON_TOLERANCE)
        if side is not None:
            problems.append(f"photons {side} the model's {photons[0]:g}–{photons[1]:g}")
    reads = ranges.get("read_noise_counts")
    read_err = estimate.pop("read_noise_error", math.nan)
    if reads is not None and "read_noise_counts" in estimate:
        read = estimate["read_noise_counts"]
        parts.append(f"read noise {read:.3g} ± {read_err:.2g} ADU, the model's {reads[0]:g}–{reads[1]:g}")
        side = _outside(read, reads, PHOTON_TOLERANCE, 2 * read_err if math.isfinite(read_err) else 0.0)
        if side is not None:
            problems.append(f"read noise {side} the model's {reads[0]:g}–{reads[1]:g} ADU")
    elif reads is not None:
        parts.append("read noise not compared (camera offset unknown)")
        estimate.pop("read_noise_counts", None)
    return _verdict(problems, parts, estimate, ranges, estimated["note"])


def _check_phase(estimated: dict[str, Any], xi_range: tuple[float, float]) -> dict[str, Any]:
    if "estimate" not in estimated:
        return estimated
    xi = estimated["estimate"]["noise_xi"]
    parts = [f"ξ ≈ {xi:.3g}, the model's {xi_range[0]:g}–{xi_range[1]:g}"]
    side = _outside(xi, xi_range, XI_TOLERANCE)
    problems = [] if side is None else [f"ξ {side} the model's {xi_range[0]:g}–{xi_range[1]:g}"]
    return _verdict(problems, parts, {"noise_xi": float(xi)}, {"noise_xi": xi_range}, estimated["note"])


def _verdict(
    problems: list[str], parts: list[str], estimate: dict[str, float], ranges: dict[str, Any], method: str
) -> dict[str, Any]:
    if problems:
        note = (
            f"noise outside the model's training range ({'; '.join(problems)}): {'; '.join(parts)}. The "
            "reconstruction and its uncertainty are not validated at this noise (estimated from the image)"
        )
    else:
        note = f"noise inside the model's training range: {'; '.join(parts)} (estimated from the image)"
    return {
        "verdict": "outside" if problems else "inside",
        "note": note,
        "estimate": estimate,
        "range": {k: list(v) for k, v in ranges.items() if v is not None},
        "method": method,
    }
