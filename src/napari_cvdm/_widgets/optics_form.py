"""The "your microscope" controls of the reconstruction widget: pixel size and optics, remembered per layer.

The pixel size is filled in from what the picked layer states (:func:`.inputs.layer_pixel_um`: the value stated
for it before, its napari scale in µm, the samples' metadata, the OME-TIFF / ImageJ metadata of its file); what no
file can tell (SR: NA and emission λ; phase: λ, the defocus d and which plane is −d) is typed here, empty meaning
the model's own.  A line under the fields shows the model's optics next to the user's and what a run would do
(run, bin, resample, refuse: :func:`napari_cvdm.inference.optics.plan_optics`).  Values are written into the input
layers' metadata only when a run finishes, so a refused or cancelled run leaves the layers as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Label, LineEdit
from pydantic import ValidationError

from ..inference.optics import OpticsPlan, plan_optics
from ..inference.resolution_check import check_resolution, fitted_cutoff
from ..model.metadata import ModelMetadata
from ..settings import ReconstructSettings
from ..tasks import InputError
from .inputs import MEMORY_KEY, layer_pixel_um

FIELDS = ("pixel_size_um", "wavelength_um", "numerical_aperture", "defocus_um")
TYPED = "typed in the widget"
PLANE_ORDERS = [("(I(−d), I(+d))", "minus-plus"), ("(I(+d), I(−d)): swap", "plus-minus")]
RESAMPLING = [
    ("resample when exact, else refuse", "exact"),
    ("also interpolate (at my own risk)", "approximate"),
    ("refuse", "never"),
]


def _text(value: float | None, nm: bool = False) -> str:
    if value is None:
        return ""
    return f"{value * 1000:g}nm" if nm else f"{value:g}"


class OpticsControls:
    """The optics fields, their per-layer memory and the model-vs-yours line."""

    def __init__(self) -> None:
        self.pixel_size = LineEdit(label="Pixel size (µm)", value="")
        self.wavelength = LineEdit(label="Emission λ (µm)", value="")
        self.numerical_aperture = LineEdit(label="NA", value="")
        self.defocus = LineEdit(label="Defocus d (µm)", value="")
        self.plane_order = ComboBox(label="Plane order", choices=PLANE_ORDERS, value="minus-plus")
        self.resample = ComboBox(label="Other optics", choices=RESAMPLING, value="exact")
        self.info = Label(label="")
        self.pixel_size.tooltip = (
            "the input pixel in the sample: µm (0.108) or with a unit (108nm). Filled in from the layer's scale "
            "when it is in µm, or from the file's OME-TIFF / ImageJ metadata; never guessed"
        )
        self.wavelength.tooltip = "µm or with a unit (670nm); empty: the model's own"
        self.numerical_aperture.tooltip = "detection NA of the objective; empty: the model's own"
        self.defocus.tooltip = "the planes are at −d and +d; µm or with a unit; empty: the model's own"
        self.resample.tooltip = (
            "outside the model's optics: resample where that is exact (phase: to the model's λ·d/p²; SR: binning "
            "an oversampled image), interpolate SR images too at your own risk, or refuse"
        )
        self._filled: dict[str, tuple[str, str]] = {}  # field → (text filled in, where it came from)
        self._phase = False
        self._fitted: tuple[tuple, Any] | None = None  # (which layer data, its cutoff estimate)

    @property
    def widgets(self) -> list[Any]:
        return [
            self.pixel_size,
            self.wavelength,
            self.numerical_aperture,
            self.defocus,
            self.plane_order,
            self.resample,
            self.info,
        ]

    def edits(self) -> list[Any]:
        """The controls whose change re-checks the optics."""
        return self.widgets[:-1]

    def for_task(self, task: str) -> None:
        phase = self._phase = task == "phase"
        self.wavelength.label = "Illumination λ (µm)" if phase else "Emission λ (µm)"
        self.numerical_aperture.visible = not phase
        self.defocus.visible = self.plane_order.visible = phase

    def fill_from(self, layer: Any) -> None:
        """Fill the fields from what ``layer`` states (its remembered values first); a field with nothing to go on
        is left empty."""
        self._filled = {}
        if layer is None:
            return
        remembered = (getattr(layer, "metadata", {}) or {}).get(MEMORY_KEY, {})
        try:
            pixel, source = layer_pixel_um(layer)
        except InputError:
            pixel, source = None, ""
        self._set("pixel_size_um", self.pixel_size, _text(pixel), source)
        for key, edit in (
            ("wavelength_um", self.wavelength),
            ("numerical_aperture", self.numerical_aperture),
            ("defocus_um", self.defocus),
        ):
            self._set(key, edit, _text(remembered.get(key)), "stated before for this layer")
        if remembered.get("plane_order") in ("minus-plus", "plus-minus"):
            self.plane_order.value = remembered["plane_order"]

    def _set(self, key: str, edit: LineEdit, text: str, source: str) -> None:
        edit.value = text
        if text:
            self._filled[key] = (text, source)

    def values(self) -> dict[str, Any]:
        """The ReconstructSettings fields of these controls (empty text: None, the model's own)."""
        raw = {
            "pixel_size_um": self.pixel_size.value,
            "wavelength_um": self.wavelength.value,
            "numerical_aperture": self.numerical_aperture.value,
            "defocus_um": self.defocus.value,
        }
        out: dict[str, Any] = {k: (v.strip() or None) for k, v in raw.items()}
        if self._phase:
            out["numerical_aperture"] = None
        else:
            out["defocus_um"] = None
        out["plane_order"] = self.plane_order.value if self._phase else "minus-plus"
        out["resample"] = self.resample.value
        return out

    def sources(self) -> dict[str, str]:
        """Where each stated value came from: the layer or file it was filled in from, or typed here."""
        out = {}
        for key, text in self.values().items():
            if key in FIELDS and text is not None:
                filled = self._filled.get(key)
                out[key] = filled[1] if filled and filled[0] == text.strip() else TYPED
        return out

    def check(self, info: ModelMetadata, settings: ReconstructSettings, layer: Any) -> OpticsPlan:
        """The plan for a run; raises :class:`InputError` when the pixel size is needed and nobody stated it, or
        when the optics are outside the model's range (the message names the range and the fixes)."""
        if settings.pixel_size_um is None and info.covered_optics() is not None:
            try:
                _, why = layer_pixel_um(layer) if layer is not None else (None, "no layer is picked")
            except InputError as err:
                raise InputError(str(err)) from None
            name = getattr(layer, "name", "the input")
            raise InputError(
                f"layer {name!r} has no pixel size: {why}. Type its pixel size in 'Pixel size (µm)' (e.g. 0.108 or "
                f"108nm; a 60×/1.4 objective on a 6.5 µm camera gives 0.108). {info.name} assumes "
                f"{info.input_pixel_um * 1000:.1f} nm; on other pixels it is checked, binned, resampled or refused, "
                "never run on a guess"
            )
        return plan_optics(info, settings, self.sources())

    def describe(self, info: ModelMetadata | None, layers: Sequence[Any]) -> None:
        """The line under the fields: the model's optics and range, the user's, and what a run would do."""
        if info is None:
            self.info.value = ""
            return
        covered = info.covered_optics()
        model = [f"{info.input_pixel_um * 1000:.1f} nm px" if info.input_pixel_um else "no pixel size"]
        if info.wavelength_um:
            model.append(f"λ {info.wavelength_um * 1000:.0f} nm")
        if info.task == "super-resolution" and info.numerical_aperture:
            model.append(f"NA {info.numerical_aperture:g}")
        if info.task == "phase" and info.defocus_um:
            model.append(f"d {info.defocus_um:g} µm")
        if covered is not None and (covered.psf_width_factor or covered.fresnel_factor):
            low, high = covered.psf_width_factor or covered.fresnel_factor
            what = "PSF width in px" if covered.psf_width_factor else "λ·d/p²"
            model.append(f"covers {what} {low:.2f}–{high:.2f}×")
        line = "model: " + ", ".join(model)
        image = ""
        try:
            settings = ReconstructSettings(**self.values())
            plan = self.check(info, settings, layers[0] if layers else None)
            verdict = plan.record.get("note", "")
            image = self._resolution_line(info, layers[0] if layers else None, plan)
        except (InputError, ValidationError) as err:
            verdict = "✗ " + (str(err).split(". ")[0] if isinstance(err, InputError) else "invalid value")
        self.info.value = f"{line}\nyours: {verdict}" + (f"\nimage: {image}" if image else "")

    def _resolution_line(self, info: ModelMetadata, layer: Any, plan: OpticsPlan) -> str:
        """SR: whether the layer's own resolution agrees with the optics in the fields (the reconstruction's
        resolution check, before the run), for a layer held in memory; its cutoff is fitted once per layer."""
        data = getattr(layer, "data", None)
        if info.task != "super-resolution" or not isinstance(data, np.ndarray) or data.ndim < 2:
            return ""
        key = (id(data), data.shape, float(data.flat[0]), float(data.flat[-1]))
        if self._fitted is None or self._fitted[0] != key:
            self._fitted = (key, fitted_cutoff(data.reshape(-1, *data.shape[-2:])[0]))
        verdict = check_resolution(info, None, plan, found=self._fitted[1])
        if verdict["verdict"] == "mismatch":
            return "⚠ " + verdict["note"].split(". The reconstruction")[0]
        if verdict["verdict"] == "match":
            return f"resolution agrees with these optics (cutoff {verdict['cutoff_cycles_per_px']:.2f} cycles/px)"
        return ""

    def remember(self, layers: Sequence[Any]) -> None:
        """Store the values of a finished run in the input layers' metadata (shown again when picked)."""
        values, sources = self.values(), self.sources()
        settings = ReconstructSettings(**values)
        memory = {key: getattr(settings, key) for key in FIELDS}
        memory.update(plane_order=settings.plane_order, pixel_source=sources.get("pixel_size_um", ""))
        for layer in layers:
            if layer is not None:
                layer.metadata = {**layer.metadata, MEMORY_KEY: dict(memory)}
