"""The optics of the user's own training pairs, and the header of a model trained on them.

A model is run at the optics its header states: reconstruction compares the optics a user states (or a file
states) with them, and a phase model's TIE condition is computed with them.  A model trained or fine-tuned on the
user's pairs has those pairs' optics, so its header must state them: the pixel size the files state (or the
user), and the wavelength, NA and defocus the user states (else the base model's).  Its range is the tolerance
measured for models trained at one optics (SR ±5 % of the PSF width in pixels, phase ±10 % of λ·d/p²), as for an
adapted model (:func:`~napari_cvdm.training.adapt.adapted_range`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..model.metadata import ModelMetadata, ValidOptics, psf_fwhm_px
from ..physics.noise import header_noise, sr_cutoff_cycles_per_px
from ..physics.resolution import ResolutionEstimateError, cutoffs_agree, estimate_cutoff
from ..tasks import InputError, dark_subtracted
from .data import RawPairs

MAX_RESOLUTION_IMAGES = 16  # training inputs whose cutoff is fitted (~0.3 s each)
SAME = 1e-3  # relative difference below which a stated value is the header's own
AGREE = 0.01  # relative difference within which input files state the same pixel size


def common_pixel(pixels: dict[str, float | None]) -> float | None:
    """The one pixel size (µm) every file states (within :data:`AGREE` of the first); None where one states none
    or they differ (:func:`pairs_pixel_um` then names them)."""
    values = list(pixels.values())
    if not values or not all(values):
        return None
    first = values[0]
    return first if all(abs(p - first) <= AGREE * first for p in values) else None


def pairs_pixel_um(raw: RawPairs, stated: float | None) -> float | None:
    """The input pixel size (µm) of ``raw``: ``stated`` (the user's), else what its files state in common (pairs
    from layers: ``raw.input_pixel_um``); files that state different sizes, or some a size and others none, are
    refused (naming two) unless one is stated."""
    if stated is not None:
        return stated
    if not any(raw.file_pixels.values()):
        return raw.input_pixel_um
    if (common := common_pixel(raw.file_pixels)) is not None:
        return common
    named = [(name, p) for name, p in raw.file_pixels.items() if p]
    silent = [name for name, p in raw.file_pixels.items() if not p]
    first, size = named[0]
    if silent:
        problem = f"{first} states {size * 1000:.1f} nm pixels but {silent[0]} states none"
    else:
        other, other_size = next((n, p) for n, p in named if abs(p - size) > AGREE * size)
        problem = f"{first} states {size * 1000:.1f} nm pixels but {other} {other_size * 1000:.1f} nm"
    raise InputError(
        f"the input files do not agree on their pixel size: {problem}. One model has one pixel size: use images of "
        "one pixel size (resample the others), or state it for all of them (--pixel-size)"
    )


def subtract_offset(raw: RawPairs, offset: float) -> RawPairs:
    """``raw`` with the camera's dark level ``offset`` (input units) subtracted from every input, as reconstruction
    subtracts it (:func:`~napari_cvdm.tasks.dark_subtracted`); an offset at or above an input's mean is refused,
    naming the pair."""
    if not offset:
        return raw
    inputs = []
    for name, image in zip(raw.names, raw.inputs, strict=True):
        try:
            inputs.append(dark_subtracted(image, offset))
        except InputError as err:
            raise InputError(f"pair {name}: {err}") from None
    source = f"{raw.source}, camera offset {offset:g} subtracted"
    return RawPairs(inputs, raw.targets, raw.names, source, raw.input_pixel_um, dict(raw.file_pixels))


def differs(stated: float | None, header: float | None) -> bool:
    """True where a stated value is news to the header: it states none, or another (beyond rounding)."""
    return stated is not None and (header is None or abs(stated - header) > SAME * header)


def with_data_optics(info: ModelMetadata, optics: dict[str, Any], about: str) -> ModelMetadata:
    """``info`` stating the optics of the pairs it is trained on: ``optics`` holds what is known of them
    (``pixel_size_um``, ``wavelength_um``, ``numerical_aperture``, ``defocus_um``; absent or None: the header's).
    Unchanged where they are the header's own or the header states no optics; otherwise the nominal optics become
    the pairs', the covered range their tolerance, and ``training["data_optics"]`` records both.  Calibrations
    conditioned on the PSF width (a factor of the header's) are re-expressed in the new optics' width."""
    if info.input_pixel_um is None or info.task == "generic":
        return info
    fields = {"pixel_size_um": "input_pixel_um", "wavelength_um": "wavelength_um"}
    fields.update(
        {"numerical_aperture": "numerical_aperture"}
        if info.task == "super-resolution"
        else {"defocus_um": "defocus_um"}
    )
    update = {
        header: float(optics[name])
        for name, header in fields.items()
        if optics.get(name) is not None and differs(optics[name], getattr(info, header))
    }
    if not update:
        return info
    old = {header: getattr(info, header) for header in fields.values()}
    new = info.model_copy(update=update, deep=True)
    point = {"pixel_um": (new.input_pixel_um,) * 2, "wavelength_um": (new.wavelength_um,) * 2}
    if info.task == "super-resolution":
        new.valid_optics = ValidOptics(
            basis=f"trained on {about} at these optics: their PSF width ±5 %, the tolerance measured for the bundled "
            "SR model trained at one optics (this model's own is not measured)",
            psf_width_factor=(0.95, 1.05),
            numerical_aperture=(new.numerical_aperture,) * 2,
            **point,
        )
        _rescale_psf_bins(new, old)
    else:
        new.valid_optics = ValidOptics(
            basis=f"trained on {about} at these optics: their λ·d/p² ±10 %, the tolerance measured for the bundled "
            "phase model (this model's own is not measured)",
            fresnel_factor=(0.9, 1.1),
            defocus_um=(new.defocus_um,) * 2,
            **point,
        )
    new.training = {
        **new.training,
        "data_optics": {
            "pairs": {h: getattr(new, h) for h in fields.values()},
            "header_before": old,
            "stated": [h for name, h in fields.items() if optics.get(name) is not None],
        },
    }
    return new


def _rescale_psf_bins(info: ModelMetadata, old: dict[str, float | None]) -> None:
    """Re-express the PSF-width bins of ``info``'s calibrations (factors of the old header's width) as factors of
    its new width, so each bin still holds the images it was fitted on."""
    if None in old.values() or info.input_psf_fwhm_px is None:
        return
    before = psf_fwhm_px(old["wavelength_um"], old["numerical_aperture"], old["input_pixel_um"])  # type: ignore[arg-type]
    ratio = before / info.input_psf_fwhm_px
    if math.isclose(ratio, 1.0):
        return
    info.calibrations = [
        c.model_copy(update={"psf_factor": tuple(float(np.float64(f) * ratio) for f in c.psf_factor)})
        if c.psf_factor is not None
        else c
        for c in info.calibrations
    ]


NOISE_FIELDS = {"super-resolution": ("photons_per_frame", "read_noise_counts"), "phase": ("noise_xi",)}
MAX_NOISE_IMAGES = 64  # inputs whose noise is estimated (~20 ms each); more add nothing to a range


def with_data_noise(info: ModelMetadata, inputs: list[np.ndarray], offset_known: bool) -> ModelMetadata:
    """``info`` whose covered noise also spans the noise estimated from the training ``inputs`` (dark-subtracted),
    by the estimator the noise check runs on a user's image (:func:`~napari_cvdm.physics.noise.header_noise`), so
    a model fine-tuned on the user's pairs checks later images' noise against what it was trained on.
    ``offset_known``: a camera offset was given (0 is unknown, as for the noise check), so the SR read noise is
    separable.  The range is the union of the header's and the pairs' (the base's training noise is not forgotten
    at once); where no input gives an estimate (processed images) the header's stays.  ``training["data_noise"]``
    records it."""
    fields = NOISE_FIELDS.get(info.task)
    covered = info.covered_optics()
    if fields is None or covered is None or not inputs:
        return info
    step = max(1, len(inputs) // MAX_NOISE_IMAGES)
    optics = {"pixel_um": info.input_pixel_um, "wavelength_um": info.wavelength_um,
              "numerical_aperture": info.numerical_aperture}  # fmt: skip
    offset = 0.0 if offset_known else None
    estimates = [header_noise(info.task, x, offset, **optics)["estimate"] or {} for x in inputs[::step]]
    found = {f: [e[f] for e in estimates if f in e] for f in fields}
    pairs = {f: (min(v), max(v)) for f, v in found.items() if v}
    if not pairs:
        return info
    union = {
        f: r if getattr(covered, f) is None else (min(r[0], getattr(covered, f)[0]), max(r[1], getattr(covered, f)[1]))
        for f, r in pairs.items()
    }
    basis = f"{covered.basis}; noise: the header's range and that estimated from {len(estimates)} training inputs"
    new = info.model_copy(deep=True)
    new.valid_optics = covered.model_copy(update={**union, "basis": basis})
    record = {
        "pairs": {f: list(r) for f, r in pairs.items()},
        "estimated_on": len(estimates),
        "estimates": {f: len(v) for f, v in found.items()},
        "covered": {f: list(r) for f, r in union.items()},
    }
    new.training = {**new.training, "data_noise": record}
    return new


def with_data_resolution(info: ModelMetadata, inputs: list[np.ndarray]) -> ModelMetadata:
    """SR: ``info`` recording the cutoff its training ``inputs`` show next to the one its header's optics predict
    (:func:`shown_resolution`), in ``training["data_resolution"]``.  The reconstruction's resolution check then
    compares a user's image with what the model was trained on, and :func:`resolution_change` says when the two
    disagree (optics taken from the base that are not the pairs')."""
    if info.task != "super-resolution" or not inputs or None in (info.input_pixel_um, info.wavelength_um,
                                                                   info.numerical_aperture):  # fmt: skip
        return info
    record = shown_resolution(inputs, info.numerical_aperture, info.wavelength_um, info.input_pixel_um)
    if record is None:
        return info
    new = info.model_copy(deep=True)
    new.training = {**new.training, "data_resolution": record}
    return new


def shown_resolution(
    planes: list[np.ndarray], numerical_aperture: float, wavelength_um: float, pixel_um: float
) -> dict[str, Any] | None:
    """The cutoff SR input ``planes`` show (the median of the blind fits of up to :data:`MAX_RESOLUTION_IMAGES`,
    :func:`~napari_cvdm.physics.resolution.estimate_cutoff`), the one the optics predict, whether they agree and
    on how many planes; None where none gives an estimate."""
    step = max(1, len(planes) // MAX_RESOLUTION_IMAGES)
    cutoffs = []
    for image in planes[::step]:
        try:
            cutoffs.append(
                estimate_cutoff(np.asarray(image).reshape(-1, *np.shape(image)[-2:])[0]).cutoff_cycles_per_px
            )
        except ResolutionEstimateError:
            continue
    if not cutoffs:
        return None
    shown = float(np.median(cutoffs))
    expected = sr_cutoff_cycles_per_px(numerical_aperture, wavelength_um, pixel_um)
    return {"cutoff_cycles_per_px": shown, "expected_cycles_per_px": expected, "estimated_on": len(cutoffs),
            "agrees": cutoffs_agree(shown, expected)}  # fmt: skip


def resolution_change(info: ModelMetadata) -> str | None:
    """In words, a disagreement between the cutoff the training inputs showed and their header's optics; None
    where they agree or it was not measured."""
    record = info.training.get("data_resolution")
    if not record or record["agrees"]:
        return None
    return (
        f"your inputs show detail up to {record['cutoff_cycles_per_px']:.2f} cycles per pixel (median of "
        f"{record['estimated_on']}), but the header's optics (pixel {info.input_pixel_um * 1000:.1f} nm, λ "
        f"{info.wavelength_um * 1000:.0f} nm, NA {info.numerical_aperture:g}) pass "
        f"{record['expected_cycles_per_px']:.2f}: state your pixel size, emission λ and NA (--pixel-size "
        "--wavelength --na, or the widget's fields) and train again, else the model states optics not your data's"
    )


def noise_change(info: ModelMetadata) -> str | None:
    """In words, the noise estimated from the user's training pairs and the range the header now states."""
    record = info.training.get("data_noise")
    if not record:
        return None
    words = {"photons_per_frame": ("photons per frame", ""), "read_noise_counts": ("read noise", " ADU"),
             "noise_xi": ("noise ξ", "")}  # fmt: skip
    parts = [
        f"{words[f][0]} {lo:.3g}–{hi:.3g}{words[f][1]} (covered: {record['covered'][f][0]:.3g}–"
        f"{record['covered'][f][1]:.3g}{words[f][1]})"
        for f, (lo, hi) in record["pairs"].items()
    ]
    return f"your pairs' noise, estimated from {record['estimated_on']} inputs: {'; '.join(parts)}"


def optics_change(info: ModelMetadata) -> str | None:
    """In words, the optics a model trained on the user's pairs states and the base's before; None where they are
    the base's."""
    record = info.training.get("data_optics")
    if not record:
        return None
    units = {"input_pixel_um": ("pixel", 1000, " nm"), "wavelength_um": ("λ", 1000, " nm"),
             "numerical_aperture": ("NA", 1, ""), "defocus_um": ("d", 1, " µm")}  # fmt: skip

    def say(values: dict[str, float | None]) -> str:
        return ", ".join(f"{units[k][0]} {v * units[k][1]:g}{units[k][2]}" for k, v in values.items() if v is not None)

    text = f"the header states your pairs' {say(record['pairs'])} (the base's: {say(record['header_before'])})"
    assumed = [units[h][0] for h in record["pairs"] if "stated" in record and h not in record["stated"]]
    if assumed:  # the base's value, taken for the pairs': a wrong one refuses or biases the model later
        them = "them" if len(assumed) > 1 else "it"
        text += f"; {' and '.join(assumed)} not stated, so the base's: state {them} if yours differ"
    return text
