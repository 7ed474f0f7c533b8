"""The output layers of one reconstruction: created or updated in place, and undone on cancel or error.

Names are ``"<input> CVDM mean"``, ``"… CVDM ± calibrated std"`` (when the model is calibrated for the sampler
used: the expected error of the mean, shown instead of the raw spread), ``"… CVDM variance"`` (the raw sample
variance; hidden when a calibrated std is shown), ``"… CVDM β map"`` and on request ``"… CVDM interval lower /
upper bound"`` and ``"… CVDM samples"``.  A re-run finds these layers by name and replaces their data instead of
adding new ones; calibrated layers of an earlier run that this run cannot give are removed, so a stale error bar
never stays next to a new mean.  The mean layer appears with the first running mean and fills in as samples
arrive.  :meth:`ResultLayers.rollback` puts
the viewer back as it was before the run: layers this run added are removed, layers it updated get their
previous data, scale, translate and metadata back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .inputs import OutputGeometry, PreparedInput

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

    from ..inference.reconstruct import Reconstruction

SUFFIXES = {
    "mean": "CVDM mean",
    "std": "CVDM ± calibrated std",
    "variance": "CVDM variance",
    "beta": "CVDM β map",
    "lower": "CVDM interval lower bound",
    "upper": "CVDM interval upper bound",
    "samples": "CVDM samples",
}
CALIBRATED = ("std", "lower", "upper")
STYLES: dict[str, dict[str, Any]] = {
    "mean": {"colormap": "gray", "blending": "translucent"},
    "std": {"colormap": "magma", "blending": "additive", "opacity": 0.8},
    "variance": {"colormap": "magma", "blending": "additive", "opacity": 0.8},
    "lower": {"colormap": "gray", "blending": "translucent", "visible": False},
    "upper": {"colormap": "gray", "blending": "translucent", "visible": False},
    "beta": {"colormap": "magma", "blending": "additive", "opacity": 0.8, "visible": False},
    "samples": {"colormap": "gray", "blending": "translucent", "visible": False},
}
_SAVED_ATTRS = ("data", "scale", "translate", "units", "axis_labels", "metadata", "contrast_limits")


def robust_limits(data: np.ndarray, max_values: int = 1_000_000) -> tuple[float, float]:
    """Contrast limits from the 0.1 and 99.9 percentiles (variance maps are heavy-tailed; min/max shows black)."""
    flat = np.asarray(data).ravel()
    flat = flat[:: max(1, flat.size // max_values)]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(flat, (0.1, 99.9)))
    return (low, high) if high > low else (low, low + 1.0)


def output_names(base_name: str) -> dict[str, str]:
    """The layer name of every output of a run on the layer(s) called ``base_name``."""
    return {key: f"{base_name} {suffix}" for key, suffix in SUFFIXES.items()}


class OutputLayers:
    """The viewer, the output layer names and the placement of one run's outputs: what the in-memory
    :class:`ResultLayers` and the plane job's lazy layers (:mod:`.stack_job`) share."""

    def __init__(self, viewer: napari.Viewer, prepared: PreparedInput) -> None:
        self._viewer = viewer
        self._names = output_names(prepared.base_name)
        self._geometry = prepared.geometry
        self._units, self._labels = prepared.units, prepared.axis_labels
        self._lead = prepared.lead_shape

    @property
    def names(self) -> dict[str, str]:
        return dict(self._names)

    def find(self, key: str) -> Image | None:
        """The viewer's image layer for output ``key`` (by name), or None."""
        from napari.layers import Image

        name = self._names[key]
        matches = [layer for layer in self._viewer.layers if layer.name == name and isinstance(layer, Image)]
        return matches[0] if matches else None


class ResultLayers(OutputLayers):
    """Writes one run's results into the viewer; remembers enough to undo it."""

    def __init__(
        self, viewer: napari.Viewer, prepared: PreparedInput, metadata: dict[str, Any], interval_layers: bool = False
    ) -> None:
        super().__init__(viewer, prepared)
        self._interval_layers = interval_layers
        self._metadata = metadata
        self._created: list[Image] = []
        self._saved: list[tuple[Image, dict[str, Any]]] = []
        self._mean: np.ndarray | None = None

    def _put(
        self, key: str, data: np.ndarray, extra: dict[str, Any] | None = None, style: dict[str, Any] | None = None
    ) -> Image:
        geometry: OutputGeometry = self._geometry.with_sample_axis() if key == "samples" else self._geometry
        metadata = {"napari_cvdm": {**self._metadata, "output": key, **(extra or {})}}
        axes: dict[str, Any] = {}
        if len(self._units) == len(self._geometry.scale):  # napari's own units and axis labels (napari ≥ 0.5)
            units, labels = self._units, self._labels
            if key == "samples":
                units, labels = ("pixel", *units), ("sample", *labels)
            axes = {"units": units, "axis_labels": labels}
        layer = self.find(key)
        if layer is None:
            layer = self._viewer.add_image(
                data,
                name=self._names[key],
                scale=geometry.scale,
                translate=geometry.translate,
                metadata=metadata,
                contrast_limits=robust_limits(data),
                **axes,
                **{**STYLES[key], **(style or {})},
            )
            self._created.append(layer)
            return layer
        if all(saved is not layer for saved, _ in self._saved) and layer not in self._created:
            self._saved.append((layer, {attr: getattr(layer, attr) for attr in _SAVED_ATTRS}))
        layer.data = data
        layer.scale, layer.translate = geometry.scale, geometry.translate
        for attr, value in axes.items():
            setattr(layer, attr, value)
        layer.metadata = metadata
        layer.contrast_limits = robust_limits(data)
        return layer

    def show_running_mean(self, plane: int, mean: np.ndarray) -> None:
        """Write the running mean of stack plane ``plane`` (flat index over the leading axes)."""
        first = self._mean is None
        if self._mean is None:
            self._mean = np.zeros((*self._lead, *mean.shape), np.float32)
        self._mean.reshape(-1, *mean.shape)[plane] = mean
        if first:
            self._put("mean", self._mean, {"partial": True})
            return
        layer = self.find("mean")
        if layer is not None and layer.data is self._mean:
            layer.refresh()

    def finish(self, result: Reconstruction) -> dict[str, Image]:
        """Write the final mean, calibrated std (and interval bounds on request), variance, β map and (if kept)
        the samples; returns the layers by key."""
        units, calibrated = result.units, result.calibrated_std is not None
        about = {"units": units, "calibration": result.calibration, "pixel_um": result.pixel_um}
        about["optics"] = result.optics
        layers = {"mean": self._put("mean", result.mean, about)}
        had_std = self.find("std") is not None
        if calibrated:
            level = f"{round(100 * result.interval_level)} %"
            layers["std"] = self._put(
                "std",
                result.calibrated_std,
                {
                    **about,
                    "meaning": f"± calibrated std: the expected RMS error of the mean, in {units}; the {level} "
                    f"interval is the interval bounds' range",
                    "interval_level": result.interval_level,
                },
            )
        raw = {"units": f"({units})²", "meaning": "raw sample variance: the spread of the samples, not an error bar"}
        layers["variance"] = self._put("variance", result.variance, raw, {"visible": not calibrated})
        if calibrated != had_std:  # the error bar appeared or went: show the raw spread only without it
            layers["variance"].visible = not calibrated
        layers["beta"] = self._put("beta", result.beta_map, {"units": "dimensionless (∫β dt)"})
        if calibrated and self._interval_layers:
            for key, bound in (("lower", result.lower), ("upper", result.upper)):
                extra = {**about, "interval_level": result.interval_level}
                layers[key] = self._put(key, bound, extra)
        for key in CALIBRATED:  # an earlier run's error bars must not outlive its mean
            stale = self.find(key)
            if key not in layers and stale is not None:
                self._viewer.layers.remove(stale)
        if result.samples is not None:
            layers["samples"] = self._put("samples", result.samples, {"units": units})
        self._mean = None
        self._created.clear()
        self._saved.clear()
        return layers

    def rollback(self) -> None:
        """Undo everything this run did to the viewer (a no-op after :meth:`finish`)."""
        for layer in self._created:
            if layer in self._viewer.layers:
                self._viewer.layers.remove(layer)
        for layer, state in self._saved:
            layer.data = state["data"]
            for attr in _SAVED_ATTRS[1:]:
                setattr(layer, attr, state[attr])
        self._created.clear()
        self._saved.clear()
        self._mean = None
