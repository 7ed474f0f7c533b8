"""Is the model valid for the user's microscope?  Optics in, a plan out: run, resample exactly, or refuse.

A model's header states the optics it covers (:meth:`~napari_cvdm.model.metadata.ModelMetadata.covered_optics`),
relative to its nominal optics, in the quantity its network actually sees:

* super-resolution: the widefield PSF width in input pixels, ∝ λ_em / (NA · p).  An image whose PSF is wider
  than the model's range by an integer factor b (an oversampled image) is **binned** b×b first: exact for photon
  counts (the b×b sum is what a camera with b-times larger pixels records; the network sees the percentile-
  normalised image, so the mean of the block is used and the output stays in the input's units per pixel).  A
  narrower PSF (an undersampled image) cannot be made exact: refused, unless ``resample="approximate"``
  interpolates it to the model's width at the user's own risk.
* phase: λ·d/p².  In pixel units the paraxial two-shot intensities depend on it only (the Fresnel kernel
  exp(−iπλd|f|²), f in cycles per pixel / p), so resampling the pair to the pixel p' = p·√(q/q₀) gives the
  model's q₀ exactly for band-limited fields; the phase (rad, unchanged by resampling) is resampled back onto the
  input grid.  A model conditioned on a TIE estimate gets it computed with the user's optics on that grid.

Nothing here runs a network: :func:`plan_optics` is cheap and raises :class:`OpticsMismatch` (an
:class:`~napari_cvdm.tasks.InputError`) naming the mismatch, the model's range and the fixes before any work.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..model.metadata import ModelMetadata, fresnel_q, psf_fwhm_px
from ..settings import ReconstructSettings
from ..tasks import InputError

Action = Literal["run", "bin", "resample", "interpolate", "unchecked"]
MAX_BIN = 8
FIELDS = {  # settings field → (header field, what it is)
    "pixel_size_um": ("input_pixel_um", "pixel size"),
    "wavelength_um": ("wavelength_um", "wavelength"),
    "numerical_aperture": ("numerical_aperture", "NA"),
    "defocus_um": ("defocus_um", "defocus d"),
}
ASSUMED = "the model's own (not stated: taken to be the model's)"
OWN_PIXEL = "the model's own: pixel_size_um=None, the caller vouches the data are at it"
WIDE = (
    "a model for these optics: cvdm-sr-widefield-wide-optics covers NA 1.2–1.49, emission 0.45–0.70 µm and 60–110 "
    "nm pixels (0.6–1.6× the nominal PSF width in pixels); napari-cvdm train --simulate-optics random trains one"
)
COARSER_NOTE = (  # what docs/your-microscope.md §6 measured of the wide-optics model on the coarser side
    "; on images coarser than nominal its calibrated error bars were measured too narrow at 0.9× the nominal PSF "
    "width (docs/your-microscope.md §6)"
)
FINE_TUNE = (
    "fine-tune this model on pairs of your own (napari-cvdm train --base-model, or CVDM fine-tuning): the new model "
    "states their optics"
)
ADAPT = (
    "no pairs? adapt it by simulation (napari-cvdm adapt, or Adapt to my microscope in napari), which also "
    "recalibrates its error bars for your optics"
)
UNDERSAMPLED = (
    " (below Nyquist, λ/(4·NA), the noise cannot be estimated from the image: give adapt --photons or --gain)"
)
INTERPOLATE = "interpolate at your own risk (resample='approximate'; CLI --resample approximate)"


def fixes(task: str, coarser: bool = False, wide_note: bool = False) -> str:
    """The ways out of an optics refusal, one per line: another model, fine-tuning, adaptation, the stated values,
    and (SR) interpolation."""
    if task == "super-resolution":
        ways = [WIDE + (COARSER_NOTE if wide_note else ""), FINE_TUNE, ADAPT + (UNDERSAMPLED if coarser else "")]
        ways += ["check the pixel size and optics you stated", INTERPOLATE]
    else:
        ways = ["a model trained for this set-up", FINE_TUNE, ADAPT]
        ways.append("check the pixel size, wavelength and defocus you stated")
    return "Fix, any of:" + "".join(f"\n  • {way}" for way in ways)


class OpticsMismatch(InputError):
    """The user's optics lie outside what the model covers and no exact resampling reaches it."""


@dataclass(frozen=True)
class OpticsPlan:
    """How a plane goes from the user's grid to the network's and back.

    ``zoom``: network pixels per input pixel along each axis (1: none; 1/b for b×b binning); the network's pixel is
    ``pixel_um / zoom``.  ``condition``: header fields the condition is built with (a phase model's TIE estimate
    gets the user's optics on the network grid).  ``back_to_input``: outputs are resampled onto the input grid
    (phase).  ``record``: what was assumed, where each value came from and what was done, for the result.
    """

    action: Action
    zoom: float = 1.0
    bin: int = 1
    swap_planes: bool = False
    back_to_input: bool = False
    pixel_um: float | None = None
    output_pixel_um: float | None = None
    condition: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    def network_shape(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of a plane on the network's grid."""
        if self.bin > 1:
            return height // self.bin, width // self.bin
        if self.zoom != 1.0:
            return max(1, round(height * self.zoom)), max(1, round(width * self.zoom))
        return height, width

    def output_factor(self, scale_factor: int) -> float:
        """Output pixels per input pixel along each axis (the model's scale factor after any resampling)."""
        return 1.0 if self.back_to_input else scale_factor * self.zoom

    def to_network(self, plane: np.ndarray) -> np.ndarray:
        """One input plane ((H, W), or (2, H, W) for phase) on the network's grid, planes in (I(−d), I(+d))."""
        arr = np.asarray(plane, dtype=np.float32)
        if self.swap_planes:
            arr = arr[::-1]
        if self.bin > 1:
            b = self.bin
            h, w = (arr.shape[-2] // b) * b, (arr.shape[-1] // b) * b
            arr = arr[..., :h, :w].reshape(*arr.shape[:-2], h // b, b, w // b, b).mean(axis=(-3, -1))
        elif self.zoom != 1.0:
            out = self.network_shape(*arr.shape[-2:])
            arr = np.stack([resample(p, self.zoom, out) for p in arr.reshape(-1, *arr.shape[-2:])])
            arr = arr.reshape(*plane.shape[:-2], *out)
        return np.ascontiguousarray(arr, dtype=np.float32)

    def to_input(self, arr: np.ndarray, shape: tuple[int, int], non_negative: bool = False) -> np.ndarray:
        """An output map (…, h, w) on the network grid back on the input grid ``shape`` (phase outputs)."""
        if not self.back_to_input or self.zoom == 1.0:
            return arr
        flat = arr.reshape(-1, *arr.shape[-2:])
        out = np.stack([resample(p, 1.0 / self.zoom, shape) for p in flat]).reshape(*arr.shape[:-2], *shape)
        return np.clip(out, 0.0, None) if non_negative else out.astype(np.float32)


def resampled_fresnel_factor(record: Mapping[str, Any]) -> float | None:
    """Phase: λ·d/p² of the stated set-up as a factor of the model's, for a run that resamples the pair to the
    model's set-up (the condition of set-up calibrations); None for a run at the model's own set-up."""
    check = record.get("check") or {}
    if record.get("action") != "resample" or "model_q" not in check:
        return None
    return float(check["value"])


def network_psf_factor(record: Mapping[str, Any]) -> float | None:
    """SR: the PSF width the network sees, in its input pixels, as a factor of the model's own — the user's factor
    when run as is, divided by the binning, 1 when interpolated to the model's.  None where it is not known: phase,
    unchecked optics, or none of pixel, wavelength and NA stated (the model's own optics are then an assumption, not
    a fact about the image).  ``record`` is an :class:`OpticsPlan`'s record (also a reconstruction's ``optics``)."""
    check = record.get("check") or {}
    if "fwhm_px" not in check:
        return None
    used = record.get("used") or {}
    keys = ("pixel_size_um", "wavelength_um", "numerical_aperture")
    if all((used.get(k) or {}).get("source", ASSUMED) in (ASSUMED, OWN_PIXEL) for k in keys):
        return None
    action = record.get("action")
    if action == "interpolate":
        return 1.0
    return float(check["value"]) / (int(record.get("bin", 1)) if action == "bin" else 1)


def resample(image: np.ndarray, zoom: float, shape: tuple[int, int]) -> np.ndarray:
    """``image`` on a grid of pixel ``1/zoom`` input pixels, ``shape`` pixels, first pixel edge on the input's
    first pixel edge (pixel centres as in napari and ``align_corners=False``).  Cubic splines (exact to
    interpolation error for band-limited images, mirrored at the borders); when the new pixels are larger, first a
    Gaussian with the variance a camera of the larger pixel adds by integrating over it ((1/zoom² − 1)/12 px²)."""
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    if zoom < 1.0:
        img = ndimage.gaussian_filter(img, math.sqrt((1.0 / zoom**2 - 1.0) / 12.0), mode="mirror")
    rows = (np.arange(shape[0]) + 0.5) / zoom - 0.5
    cols = (np.arange(shape[1]) + 0.5) / zoom - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(img, grid, order=3, mode="mirror").astype(np.float32)


def _stated(info: ModelMetadata, settings: ReconstructSettings, sources: Mapping[str, str]) -> dict[str, Any]:
    """Each optics value used: the stated one (with its source) or the model's (assumed)."""
    used: dict[str, Any] = {}
    for key, (header, _) in FIELDS.items():
        value = getattr(settings, key)
        if value is not None:
            used[key] = {"value": value, "source": sources.get(key, "stated in the settings")}
        else:
            default = getattr(info, header)
            src = ASSUMED
            if key == "pixel_size_um":
                src = sources.get(key, OWN_PIXEL)
            used[key] = {"value": default, "source": src}
    return used


def _model_optics(info: ModelMetadata) -> dict[str, float | None]:
    return {key: getattr(info, header) for key, (header, _) in FIELDS.items()}


def used_optics(plan: OpticsPlan | None, info: ModelMetadata) -> dict[str, float | None]:
    """Each optics value (settings field → value) a run used: the plan's (stated, or the model's it assumed),
    else the header's; None where neither has one."""
    used = (plan.record.get("used") or {}) if plan is not None else {}
    values: dict[str, float | None] = {}
    for key, header in _model_optics(info).items():
        value = (used.get(key) or {}).get("value")
        value = header if value is None else value
        values[key] = None if value is None else float(value)
    return values


def _fmt(values: Mapping[str, Any], task: str) -> str:
    px = values.get("pixel_size_um")
    parts = [f"pixel {px * 1000:.1f} nm" if px else "pixel ?"]
    if values.get("wavelength_um"):
        parts.append(f"λ {values['wavelength_um'] * 1000:.0f} nm")
    if task == "super-resolution" and values.get("numerical_aperture"):
        parts.append(f"NA {values['numerical_aperture']:g}")
    if task == "phase" and values.get("defocus_um"):
        parts.append(f"d {values['defocus_um']:g} µm")
    return ", ".join(parts)


def plan_optics(
    info: ModelMetadata, settings: ReconstructSettings, sources: Mapping[str, str] | None = None
) -> OpticsPlan:
    """The plan for running a ``info`` model on data with the optics in ``settings`` (None: the model's).

    ``sources`` says where each stated value came from (``"pixel_size_um": "OME-TIFF metadata"``…), for the
    record.  Raises :class:`OpticsMismatch` when the optics lie outside the model's range and
    ``settings.resample`` allows no way in.
    """
    sources = dict(sources or {})
    used = _stated(info, settings, sources)
    values = {k: v["value"] for k, v in used.items()}
    model = _model_optics(info)
    swap = info.task == "phase" and settings.plane_order == "plus-minus"
    pixel = values["pixel_size_um"]
    scale = 1 if info.task == "phase" else info.scale_factor
    record: dict[str, Any] = {
        "used": used,
        "model": {k: v for k, v in model.items() if v is not None},
        "plane_order": settings.plane_order if info.task == "phase" else None,
        "resample": settings.resample,
    }
    covered = info.covered_optics()
    if covered is not None:
        record["valid_optics"] = covered.model_dump(mode="json")
    if covered is None or pixel is None or info.input_pixel_um is None:
        record.update(action="unchecked", note="the model states no optics, so none were checked")
        out_px = None if pixel is None else pixel / scale
        return OpticsPlan("unchecked", swap_planes=swap, pixel_um=pixel, output_pixel_um=out_px, record=record)
    if info.task == "super-resolution":
        return _plan_sr(info, settings, values, model, covered.psf_width_factor or (0.9, 1.1), record)
    return _plan_phase(info, settings, values, model, covered.fresnel_factor or (0.9, 1.1), record, swap)


def _basis(record: dict[str, Any]) -> str:
    """How the model's range was set, without the command that measured it (the model card has that)."""
    return re.sub(r" \(benchmarks/[^()]*\)", "", record.get("valid_optics", {}).get("basis", ""))


def _ratio(user: float | None, own: float | None) -> float:
    return 1.0 if user is None or own is None else user / own


def _plan_sr(info, settings, values, model, limits, record) -> OpticsPlan:
    pixel, scale = values["pixel_size_um"], info.scale_factor
    factor = _ratio(values["wavelength_um"], model["wavelength_um"]) / _ratio(
        values["numerical_aperture"], model["numerical_aperture"]
    )
    factor *= model["pixel_size_um"] / pixel
    low, high = limits
    lam, na = values["wavelength_um"] or 0.515, values["numerical_aperture"] or 1.3
    lam0, na0 = model["wavelength_um"] or lam, model["numerical_aperture"] or na
    check = {
        "quantity": "PSF FWHM in input pixels (0.514·λ/(NA·p)), as a factor of the model's",
        "value": factor,
        "fwhm_px": psf_fwhm_px(lam, na, pixel),
        "model_fwhm_px": psf_fwhm_px(lam0, na0, model["pixel_size_um"]),
        "model_range": [low, high],
    }
    record["check"] = check
    if low <= factor <= high:
        record.update(action="run", note=f"in the model's range (PSF width {factor:.2f}× its own, {low:g}–{high:g}×)")
        return OpticsPlan("run", pixel_um=pixel, output_pixel_um=pixel / scale, record=record)
    where = (
        f"the PSF is {check['fwhm_px']:.2f} px wide in your pixels ({_fmt(values, info.task)}), "
        f"{factor:.2f}× the model's {check['model_fwhm_px']:.2f} px ({_fmt(model, info.task)}); "
        f"{info.name} covers {low:.2f}–{high:.2f}× ({_basis(record)})"
    )
    if settings.resample != "never" and factor > high:
        bins = [b for b in range(2, MAX_BIN + 1) if low <= factor / b <= high]
        if bins:
            b = min(bins, key=lambda k: abs(math.log(factor / k)))
            record.update(
                action="bin",
                bin=b,
                note=f"oversampled: binned {b}×{b} (exact for photon counts) so the PSF is {factor / b:.2f}× the "
                f"model's; outputs on a {pixel * b / scale * 1000:.1f} nm grid",
            )
            return OpticsPlan(
                "bin", zoom=1.0 / b, bin=b, pixel_um=pixel, output_pixel_um=pixel * b / scale, record=record
            )
    if settings.resample == "approximate":
        zoom = 1.0 / factor  # the network pixel p/zoom makes the PSF width in pixels the model's
        record.update(
            action="interpolate",
            zoom=zoom,
            note=f"outside the model's range; interpolated by {zoom:.3f}× to its PSF width at your own risk "
            "(resample='approximate'): not exact, the result is not validated",
        )
        return OpticsPlan("interpolate", zoom=zoom, pixel_um=pixel, output_pixel_um=pixel / zoom / scale, record=record)
    if settings.resample == "never":
        why = "resampling is switched off (resample='never')"
    elif factor < low:
        why = (
            "your image is coarser than the model's (fewer pixels per PSF width): no resampling restores what the "
            "camera did not sample, so nothing exact applies"
        )
    else:
        why = f"no integer binning 2–{MAX_BIN} brings it into the range"
    coarser = factor < low
    ways = fixes(info.task, coarser, wide_note=coarser and info.name != "cvdm-sr-widefield-wide-optics")
    raise OpticsMismatch(f"{info.name} does not cover these optics: {where}.\n{why[0].upper()}{why[1:]}.\n{ways}")


def _plan_phase(info, settings, values, model, limits, record, swap) -> OpticsPlan:
    pixel = values["pixel_size_um"]
    lam, d = values["wavelength_um"], values["defocus_um"]
    q, q0 = fresnel_q(lam, d, pixel), fresnel_q(model["wavelength_um"], model["defocus_um"], model["pixel_size_um"])
    factor, (low, high) = q / q0, limits
    record["check"] = {"quantity": "λ·d/p² as a factor of the model's", "value": factor, "q": q, "model_q": q0}
    record["check"]["model_range"] = [low, high]
    optics = {"wavelength_um": lam, "defocus_um": d}
    if low <= factor <= high:
        record.update(action="run", note=f"in the model's range (λ·d/p² {factor:.2f}× its own, {low:g}–{high:g}×)")
        return OpticsPlan(
            "run",
            swap_planes=swap,
            pixel_um=pixel,
            output_pixel_um=pixel,
            condition={**optics, "input_pixel_um": pixel},
            record=record,
        )
    if settings.resample == "never":
        raise OpticsMismatch(
            f"{info.name} does not cover these optics: λ·d/p² = {q:.1f} ({_fmt(values, 'phase')}) is {factor:.2f}× "
            f"the model's {q0:.1f} ({_fmt(model, 'phase')}); it covers {low:.2f}–{high:.2f}×, and resampling (exact "
            f"here) is switched off (resample='never').\n{fixes('phase')}\n  • allow resample='exact' (the default)"
        )
    zoom = 1.0 / math.sqrt(factor)  # network pixel p' = p·√(q/q₀): λ·d/p'² = q₀
    record.update(
        action="resample",
        zoom=zoom,
        note=f"λ·d/p² {factor:.2f}× the model's: the pair resampled to {pixel / zoom * 1000:.1f} nm pixels, where it "
        "equals the model's (exact for band-limited fields), and the phase resampled back onto the input grid",
    )
    return OpticsPlan(
        "resample",
        zoom=zoom,
        swap_planes=swap,
        back_to_input=True,
        pixel_um=pixel,
        output_pixel_um=pixel,
        condition={**optics, "input_pixel_um": pixel / zoom},
        record=record,
    )
