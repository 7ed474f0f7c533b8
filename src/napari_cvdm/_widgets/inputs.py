"""From the picked napari layers to the array the core reconstructs, and where the outputs go in the world.

Everything here raises :class:`napari_cvdm.InputError` with a message naming the problem and the fix; the
widget shows it as a notification and changes nothing.  Geometry maths (:func:`output_geometry`) is pure.

Pixel-centre convention (napari, and ``F.interpolate(..., align_corners=False)`` used by the core): data
index ``i`` sits at world ``translate + scale·i`` and covers ``±scale/2`` around it.  An input pixel of size
``p`` with index 0 covers ``[t − p/2, t + p/2]``; the first output pixel (size ``q = p/s``) must start at the
same edge, so its centre — the output translate — is ``t − p/2 + q/2 = t − (p − q)/2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.reconstruct import MAX_STACK_AXES
from ..model.metadata import ModelMetadata
from ..tasks import InputError, check_image


@dataclass(frozen=True)
class OutputGeometry:
    """World placement of the output layers: per-axis scale and translate (leading axes + Y, X)."""

    scale: tuple[float, ...]
    translate: tuple[float, ...]

    def with_sample_axis(self) -> OutputGeometry:
        """The geometry of the samples layer, which has the sample axis first."""
        return OutputGeometry((1.0, *self.scale), (0.0, *self.translate))


MEMORY_KEY = "napari_cvdm_optics"  # layer.metadata key: the optics stated for a layer, remembered across runs
PHYSICAL = {"nm": 1e-3, "nanometer": 1e-3, "um": 1.0, "µm": 1.0, "micrometer": 1.0, "micron": 1.0, "mm": 1e3}
PHYSICAL["millimeter"] = 1e3


@dataclass(frozen=True)
class PreparedInput:
    """The array for :func:`napari_cvdm.iter_reconstruct`, the output base name and geometry, and where the
    outputs go: the input layer's scale, translate, units and axis labels (so :meth:`placed` can place outputs
    whose grid the optics changed).  ``image`` is a NumPy array, or for a plane-by-plane job (``lazy``) the
    layers' data as they are (dask, zarr, NumPy), never read whole."""

    image: Any
    base_name: str
    geometry: OutputGeometry
    lead_shape: tuple[int, ...]
    plane_shape: tuple[int, ...]
    units: tuple[str, ...] = ()
    axis_labels: tuple[str, ...] = ()
    layer_scale: tuple[float, ...] = ()
    layer_translate: tuple[float, ...] = ()
    drop_axis: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def placed(self, factor: float, physical_pixel_um: float | None = None) -> PreparedInput:
        """The same input with outputs ``factor`` times finer along Y, X (the model's scale factor after any
        binning or resampling).  Y/X units: the layer's when physical; µm when the layer is in pixels but its scale
        is the physical pixel size in µm (the bundled samples); else the layer's own (pixel)."""
        if not self.layer_scale:
            return self
        geometry = output_geometry(self.layer_scale, self.layer_translate, factor, self.drop_axis)
        units = list(self.units)
        in_pixels = bool(units) and physical_pixel_um is not None and _to_um(units[-1]) is None
        if in_pixels and math.isclose(float(self.layer_scale[-1]), physical_pixel_um, rel_tol=1e-3):
            units[-2:] = ["µm", "µm"]
        return replace(self, geometry=geometry, units=tuple(units))


def output_geometry(
    scale: Sequence[float],
    translate: Sequence[float],
    scale_factor: int = 1,
    drop_axis: int | None = None,
) -> OutputGeometry:
    """Scale and translate of outputs whose last two axes are ``scale_factor`` times finer than the input's.

    ``drop_axis`` (negative index) removes an input axis that the output does not have — the (I(−d), I(+d))
    plane axis of a phase stack.  Leading (T, Z) axes keep their scale and translate.
    """
    sc, tr = [float(v) for v in scale], [float(v) for v in translate]
    if drop_axis is not None:
        del sc[drop_axis], tr[drop_axis]
    for ax in (-2, -1):
        p = sc[ax]
        q = p / scale_factor
        sc[ax], tr[ax] = q, tr[ax] - (p - q) / 2
    return OutputGeometry(tuple(sc), tuple(tr))


def _to_um(unit: Any) -> float | None:
    """µm per ``unit`` (a napari/pint unit or its name) when it is a length, else None (pixel, second, …)."""
    name = str(unit).strip()
    return PHYSICAL.get(name, PHYSICAL.get(name.lower()))


def _layer_axes(layer: Any, drop_axis: int | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    units = [str(u) for u in getattr(layer, "units", ())] or ["pixel"] * layer.ndim
    labels = [str(a) for a in getattr(layer, "axis_labels", ())] or [str(i - layer.ndim) for i in range(layer.ndim)]
    if drop_axis is not None:
        del units[drop_axis], labels[drop_axis]
    return tuple(units), tuple(labels)


def file_pixel_um(path: str | Path) -> tuple[float | None, str]:
    """The pixel size (µm) an image file states — OME-TIFF, ImageJ TIFF or OME-Zarr metadata — and which."""
    from ..io.readers import is_image_path, open_source

    path = Path(path)
    if not is_image_path(path):
        return None, ""
    try:
        with open_source(path) as source:
            pixel = source.pixel_um
    except (InputError, OSError, ValueError):
        return None, ""
    name = path.name.lower()
    kind = "OME-TIFF" if name.endswith((".ome.tif", ".ome.tiff")) else "OME-Zarr" if ".zarr" in name else "ImageJ TIFF"
    return pixel, f"{kind} metadata of {path.name}"


def layer_pixel_um(layer: Any) -> tuple[float | None, str]:
    """The pixel size in µm a layer itself states, and where it comes from, or (None, why not).

    In order: the value stated for this layer before (remembered in its metadata); its napari scale when its units
    are a length; the bundled samples' metadata; the OME-TIFF / ImageJ / OME-Zarr metadata of the file it was
    opened from.  A layer in pixel units with no metadata states none: the widget asks, it never guesses.
    """
    remembered = (getattr(layer, "metadata", {}) or {}).get(MEMORY_KEY, {})
    if remembered.get("pixel_size_um"):
        return float(remembered["pixel_size_um"]), remembered.get("pixel_source", "stated before for this layer")
    units = [str(u) for u in getattr(layer, "units", ())]
    if len(units) >= 2 and all(_to_um(u) is not None for u in units[-2:]):
        sy, sx = (float(layer.scale[a]) * _to_um(units[a]) for a in (-2, -1))
        if not math.isclose(sy, sx, rel_tol=1e-3):
            raise InputError(
                f"{_describe(layer)} has non-square pixels ({sy * 1000:.1f} × {sx * 1000:.1f} nm); the models need "
                "square pixels: resample it to square pixels first"
            )
        return sx, f"layer scale ({units[-1]})"
    sample = (getattr(layer, "metadata", {}) or {}).get("napari_cvdm_sample", {})
    if sample.get("pixel_um"):
        return float(sample["pixel_um"]), "the bundled sample's metadata"
    path = getattr(getattr(layer, "source", None), "path", None)
    if path:
        pixel, where = file_pixel_um(path)
        if pixel:
            return pixel, where
    return None, "its scale is in pixel units and it carries no pixel-size metadata"


def _describe(layer: Any) -> str:
    return f"layer {getattr(layer, 'name', layer)!r}"


def layer_data(layer: Any, role: str) -> Any:
    """The data of an Image layer usable as ``role`` as they are, nothing read (a pyramid: its full-resolution
    level); raise :class:`InputError` for anything else."""
    _check_image_layer(layer, role)
    return layer.data[0] if layer.multiscale else layer.data


def check_layer(layer: Any, role: str) -> np.ndarray:
    """The data of an Image layer usable as ``role``, in memory; raise :class:`InputError` for anything else."""
    _check_image_layer(layer, role)
    if layer.multiscale:
        raise InputError(
            f"{_describe(layer)} is a multiscale (pyramid) image; open it at full resolution, or crop a region "
            "into a new layer, and reconstruct that"
        )
    return np.asarray(layer.data)


def _check_image_layer(layer: Any, role: str) -> None:
    from napari.layers import Image

    if layer is None:
        raise InputError(f"no {role} layer is selected; open an image (or File ▸ Open Sample ▸ napari-cvdm) first")
    if not isinstance(layer, Image):
        kind = type(layer).__name__
        raise InputError(
            f"{_describe(layer)} is a {kind} layer, not an image; pick an Image layer with the microscope data as "
            f"the {role}"
        )
    if layer.rgb:
        raise InputError(
            f"{_describe(layer)} is an RGB image; CVDM needs one grayscale channel. Split the colour channels "
            "(right-click the layer ▸ Split RGB) and pick one channel"
        )


def _check_rank(arr: Any, name: str, plane_ndim: int, planes: str) -> None:
    if arr.ndim < plane_ndim or arr.ndim > plane_ndim + MAX_STACK_AXES:
        raise InputError(
            f"{name} has shape {arr.shape}; expected one plane {planes} or a stack of them with at most "
            f"{MAX_STACK_AXES} leading axes (T, Z)"
        )


def _check_values(image: Any, plane_ndim: int, info: ModelMetadata, min_size: int, lazy: bool = False) -> None:
    """The core's own checks on the first plane (the only one read when ``lazy``; the job checks the others as it
    reads them), plus, in memory, a whole-stack finiteness test (cheap, before any work)."""
    first = np.asarray(image[(0,) * (image.ndim - plane_ndim)])
    check_image(first, info, min_size=min_size)
    if not lazy and image.dtype.kind in "fc" and not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise InputError(
            f"the image contains {bad} NaN or infinite pixels; replace them (for example with the background "
            "value) before reconstructing"
        )


def prepare_input(
    task: str,
    layers: Sequence[Any],
    info: ModelMetadata,
    min_size: int = 1,
    scale_factor: int | None = None,
    lazy: bool = False,
) -> PreparedInput:
    """Check the picked layers for ``task`` and build the input array, output name and output geometry.

    ``layers``: one layer for super-resolution; for phase either one (…, 2, H, W) layer ordered
    (I(−d), I(+d)) or two layers [I(−d), I(+d)] of equal shape.  ``lazy``: keep the data as they are (two phase
    layers stacked with dask) and read only the first plane, for a plane-by-plane job.
    """
    factor = info.scale_factor if scale_factor is None else scale_factor
    if task == "phase":
        return _prepare_phase(layers, info, min_size, factor, lazy)
    layer = layers[0] if layers else None
    arr = _read(layer, "input", lazy)
    _check_rank(arr, _describe(layer), 2, "(H, W)")
    _check_values(arr, 2, info, min_size, lazy)
    geometry = output_geometry(layer.scale, layer.translate, factor)
    units, labels = _layer_axes(layer, None)
    return PreparedInput(
        arr, layer.name, geometry, arr.shape[:-2], arr.shape[-2:], units, labels, tuple(layer.scale),
        tuple(layer.translate),
    )  # fmt: skip


def _read(layer: Any, role: str, lazy: bool) -> Any:
    return layer_data(layer, role) if lazy else check_layer(layer, role)


def _prepare_phase(
    layers: Sequence[Any], info: ModelMetadata, min_size: int, factor: int, lazy: bool = False
) -> PreparedInput:
    if len(layers) >= 2 and layers[1] is not None:
        minus, plus = layers[0], layers[1]
        a, b = _read(minus, "I(−d)", lazy), _read(plus, "I(+d)", lazy)
        if minus is plus:
            raise InputError(
                f"I(−d) and I(+d) are the same layer ({minus.name!r}); pick the two defocus planes, or pick one "
                "2-plane stack and leave I(+d) empty"
            )
        if a.shape != b.shape:
            raise InputError(
                f"I(−d) {minus.name!r} has shape {a.shape} but I(+d) {plus.name!r} has shape {b.shape}; the two "
                "defocus images must have the same size (and the same number of frames)"
            )
        _check_rank(a, _describe(minus), 2, "(H, W)")
        scales = [tuple(float(v) for v in layer.scale[-2:]) for layer in (minus, plus)]
        if not all(math.isclose(u, v, rel_tol=0.01) for u, v in zip(*scales, strict=True)):
            raise InputError(
                f"I(−d) {minus.name!r} has pixel scale {scales[0]} but I(+d) {plus.name!r} {scales[1]}; the two "
                "defocus planes come from one camera: give both layers the same pixel size (layer scale)"
            )
        if lazy:
            import dask.array as da

            image = da.stack([da.asarray(a), da.asarray(b)], axis=-3)
        else:
            image = np.stack([a, b], axis=-3)
        base, geometry = f"{minus.name} + {plus.name}", output_geometry(minus.scale, minus.translate, factor)
        first, drop = minus, None
    else:
        layer = layers[0] if layers else None
        image = _read(layer, "I(−d), I(+d) stack", lazy)
        if image.ndim < 3 or image.shape[-3] != 2:
            raise InputError(
                f"phase retrieval needs two defocus planes; {_describe(layer)} has shape {image.shape}. Pick a "
                "layer shaped (2, H, W) ordered (I(−d), I(+d)), or pick two layers as I(−d) and I(+d)"
            )
        _check_rank(image, _describe(layer), 3, "(2, H, W)")
        base = layer.name
        geometry = output_geometry(layer.scale, layer.translate, factor, drop_axis=-3)
        first, drop = layer, -3
    _check_values(image, 3, info, min_size, lazy)
    units, labels = _layer_axes(first, drop)
    return PreparedInput(
        image, base, geometry, image.shape[:-3], image.shape[-2:], units, labels, tuple(first.scale),
        tuple(first.translate), drop,
    )  # fmt: skip
