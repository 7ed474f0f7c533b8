"""Big or lazy layers: the reconstruction as a plane-by-plane job into an OME-Zarr store, shown as lazy layers.

A picked layer whose data are not a NumPy array (dask, zarr; a pyramid: its full-resolution level), or an input
over :data:`LARGE_INPUT_BYTES` as float32, is never read whole.  The run is :func:`napari_cvdm.io.stack.iter_stack`
on :func:`napari_cvdm.io.readers.open_source` of the layer data (two phase layers stacked lazily, (I(−d), I(+d)))
into the widget's *Output store* (``*.zarr``; empty: :func:`default_store`).  Once the first plane is in the store
the output layers are added as dask views of it (:func:`napari_cvdm.io.omezarr.open_lazy`: planes not written yet
are NaN) and refreshed after every plane.  A rerun with the same settings skips the planes already in the store; a
cancel or a failure keeps the finished planes in the store and in the layers.  A store of another run is refused
before any work, as one notification naming the fix.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils import notifications

from .._runtime import Progress
from ..io.omezarr import OutputMismatch, PlaneStore, open_lazy
from ..io.readers import open_source
from ..io.stack import PlaneDone, StackJob, StackSummary, image_warnings, iter_stack, prepare
from ..model.files import TrainedModel
from ..settings import ReconstructSettings
from ..tasks import InputError
from .inputs import PreparedInput
from .job import WorkerJob
from .outputs import CALIBRATED, STYLES, OutputLayers, robust_limits
from .workers import error_message, generator_worker, release_device_memory

if TYPE_CHECKING:
    import napari
    from magicgui.widgets import FileEdit
    from napari.layers import Image

LARGE_INPUT_BYTES = 1 << 30  # inputs above this as float32 run plane by plane into a store, even when in memory
STORE_FOLDER = "napari-cvdm"  # under the temporary folder: the default store of a layer not opened from a file
CHANNEL_KEYS = {"mean": "mean", "calibrated std": "std", "sample variance": "variance", "beta map": "beta"}
LAYER_ORDER = ("mean", "std", "variance", "beta", "lower", "upper")
LIMITS_WINDOW = 1024  # contrast limits from at most this central square of one plane: one store chunk, not a plane


def is_lazy(layer: Any) -> bool:
    """True for an image layer whose data are not in memory as one NumPy array (dask, zarr, a pyramid)."""
    return bool(getattr(layer, "multiscale", False)) or not isinstance(getattr(layer, "data", None), np.ndarray)


def needs_plane_job(layers: Sequence[Any]) -> bool:
    """True when the picked image layers must run plane by plane: lazy data, or over LARGE_INPUT_BYTES as float32."""
    from napari.layers import Image

    images = [layer for layer in layers if isinstance(layer, Image)]
    if any(is_lazy(layer) for layer in images):
        return True
    return sum(int(np.prod(layer.data.shape)) for layer in images) * 4 > LARGE_INPUT_BYTES


def default_store(base_name: str, layer: Any) -> Path:
    """``<name>_cvdm.zarr`` next to the file the layer was opened from (when that folder is writable), else in
    ``<temp>/napari-cvdm``; the same layer gets the same store, so a rerun resumes."""
    name = re.sub(r"[^\w.-]+", "_", base_name).strip("._") or "layer"
    path = getattr(getattr(layer, "source", None), "path", None)
    if path:
        folder = Path(path).parent
        if folder.is_dir() and os.access(folder, os.W_OK):
            return folder / f"{name}_cvdm.zarr"
    return Path(tempfile.gettempdir()) / STORE_FOLDER / f"{name}_cvdm.zarr"


def store_field() -> FileEdit:
    """The widget's "Output store" field (shown only for inputs that run plane by plane)."""
    from magicgui.widgets import FileEdit

    field = FileEdit(label="Output store", mode="w", filter="*.zarr", nullable=True, visible=False)
    field.tooltip = (
        "this input is lazy or large: it is reconstructed plane by plane into this OME-Zarr folder (*.zarr), which "
        "the output layers read. Empty: <name>_cvdm.zarr next to the input file, else in the temporary folder. A "
        "rerun with the same settings continues it"
    )
    return field


def store_text(field: FileEdit) -> str:
    """What the user typed or picked in the store field ("" when empty)."""
    return str(field.line_edit.value).strip()


def channel_key(name: str) -> str | None:
    """The output key (as in :data:`.outputs.SUFFIXES`) of a store channel, or None for one the widget does not
    show."""
    for bound in ("lower", "upper"):
        if name.endswith(f"interval {bound} bound"):
            return bound
    return CHANNEL_KEYS.get(name)


def _widget_words(message: str) -> str:
    """An output refusal in the widget's words: its Output store field, not the command line's flags."""
    for cli, widget in (
        ("choose a new output", "pick another Output store"),
        ("choose another output", "pick another Output store"),
        ("add --overwrite to replace it", "delete it to start over"),
    ):
        message = message.replace(cli, widget)
    return message


def _limits(data: Any, at: tuple[int, ...]) -> tuple[float, float]:
    """Contrast limits of a lazy output from the central window of the finished plane at ``at`` (read now)."""
    h, w = (int(n) for n in data.shape[-2:])
    y, x = max(0, (h - LIMITS_WINDOW) // 2), max(0, (w - LIMITS_WINDOW) // 2)
    window = data[(*at, slice(y, y + LIMITS_WINDOW), slice(x, x + LIMITS_WINDOW))]
    return robust_limits(np.asarray(window))


class LazyResultLayers(OutputLayers):
    """The output layers of a plane job: dask views of its store, added once the first plane is in and refreshed
    as the others arrive.  Layers of an earlier run with the same names are reused; nothing is rolled back."""

    def __init__(
        self,
        viewer: napari.Viewer,
        prepared: PreparedInput,
        metadata: dict[str, Any],
        store: Path,
        interval_layers: bool = False,
    ) -> None:
        super().__init__(viewer, prepared)
        meta = {**metadata, "store": str(store)}
        self._about = {"pixel_um": meta.pop("pixel_um", None), "optics": meta.pop("optics", {})}
        self._metadata = meta
        self._store = store
        self._interval_layers = interval_layers
        self._partial = True  # until finish(): planes may be missing
        self._adding = False
        self.layers: dict[str, Image] = {}

    def plane_done(self, index: int) -> None:
        """Plane ``index`` is in the store: add the layers (the first time), else show the new plane.  (napari may
        process Qt events while layers are added, so later events can arrive meanwhile: the layers being added read
        the store as it is then.)"""
        if self._adding:
            return
        if not self.layers:
            if self._store.exists():
                self._adding = True
                try:
                    self._add(index)
                finally:
                    self._adding = False
            return
        for layer in self.layers.values():
            layer.refresh()

    def finish(self, partial: bool = False) -> None:
        """The job ended: show the last planes and (``partial``) say in each layer's metadata whether planes are
        missing."""
        self._partial = partial
        for layer in self.layers.values():
            meta = {k: v for k, v in layer.metadata.get("napari_cvdm", {}).items() if k != "partial"}
            layer.metadata = {**layer.metadata, "napari_cvdm": {**meta, **self._flag()}}
            layer.refresh()

    def _flag(self) -> dict[str, bool]:
        return {"partial": True} if self._partial else {}

    def _add(self, index: int) -> None:
        channels = {channel_key(c.name): c for c in open_lazy(self._store)}
        channels.pop(None, None)
        calibrated, had_std = "std" in channels, self.find("std") is not None
        at = tuple(int(i) for i in np.unravel_index(index, self._lead)) if self._lead else ()
        settings = self._metadata.get("settings", {})
        level = float(settings.get("interval_level", 0.9))
        unit = channels["mean"].unit
        about = {"units": unit, **self._about}
        extras: dict[str, dict[str, Any]] = {
            "mean": about,
            "std": {
                **about,
                "meaning": f"± calibrated std: the expected RMS error of the mean, in {unit}; the "
                f"{round(100 * level)} % interval is the interval bounds' range",
                "interval_level": level,
            },
            "variance": {
                "units": channels["variance"].unit,
                "meaning": "raw sample variance: the spread of the samples, not an error bar",
            },
            "beta": {"units": "dimensionless (∫β dt)"},
            "lower": {**about, "interval_level": level},
            "upper": {**about, "interval_level": level},
        }
        for key in LAYER_ORDER:
            if key not in channels or (key in ("lower", "upper") and not self._interval_layers):
                continue
            data = channels[key].data
            style = {"visible": not calibrated} if key == "variance" else {}
            self.layers[key] = self._put(key, data, extras[key], style, _limits(data, at))
        if calibrated != had_std and "variance" in self.layers:  # the raw spread only without an error bar
            self.layers["variance"].visible = not calibrated
        for key in CALIBRATED:  # an earlier run's error bars must not outlive its mean
            stale = self.find(key)
            if key not in self.layers and stale is not None:
                self._viewer.layers.remove(stale)

    def _put(
        self, key: str, data: Any, extra: dict[str, Any], style: dict[str, Any], limits: tuple[float, float]
    ) -> Image:
        geometry = self._geometry
        metadata = {"napari_cvdm": {**self._metadata, "output": key, **extra, **self._flag()}}
        axes: dict[str, Any] = {}
        if len(self._units) == len(geometry.scale):
            axes = {"units": self._units, "axis_labels": self._labels}
        layer = self.find(key)
        if layer is None:
            return self._viewer.add_image(
                data,
                name=self._names[key],
                scale=geometry.scale,
                translate=geometry.translate,
                metadata=metadata,
                contrast_limits=limits,
                multiscale=False,
                cache=False,  # napari's dask cache would keep showing a plane as it was before it was written
                **axes,
                **{**STYLES[key], **style},
            )
        layer.cache = False
        layer.data = data
        layer.scale, layer.translate = geometry.scale, geometry.translate
        for attr, value in axes.items():
            setattr(layer, attr, value)
        layer.metadata = metadata
        layer.contrast_limits = limits
        return layer


class StackReconstructionJob(WorkerJob):
    """Runs a checked plane job (:func:`napari_cvdm.io.stack.prepare`) in a worker thread and shows its store's
    channels as lazy layers.  Progress is in network evaluations over the whole stack."""

    description = "CVDM reconstruction"

    def __init__(
        self,
        viewer: napari.Viewer,
        job: StackJob,
        prepared: PreparedInput,
        metadata: dict[str, Any],
        on_progress: Callable[[Progress], None] | None = None,
        on_finished: Callable[[str], None] | None = None,
        interval_layers: bool = False,
    ) -> None:
        self.stack = job
        self.store = job.output
        self.settings = job.settings
        self.optics_note = ""  # what was done for the optics (run as is, binned, resampled)
        self.note = ""  # planes computed and skipped, and the store, once the job ends
        self.computed: list[int] = []
        self.skipped: list[int] = []  # already in the store (same run): not computed again
        self.summary: StackSummary | None = None
        self._per_plane = 0  # network evaluations per plane, known from the first Progress
        self._outputs = LazyResultLayers(viewer, prepared, metadata, job.output, interval_layers)
        super().__init__(generator_worker(iter_stack(job)), on_progress, on_finished)

    @property
    def layers(self) -> dict[str, Image]:
        return dict(self._outputs.layers)

    @property
    def output_names(self) -> dict[str, str]:
        return self._outputs.names

    def _overall(self, done: int, stage: str) -> Progress | None:
        finished, n, per = len(self.computed) + len(self.skipped), self.stack.n_planes, self._per_plane
        return Progress(finished * per + done, n * per, stage) if per else None

    def _on_event(self, event: Any) -> None:
        if self.outcome is not None:
            return
        if isinstance(event, PlaneDone):  # shown even after Cancel: a plane in the store stays in the layers
            (self.computed if event.computed else self.skipped).append(event.index)
            self._outputs.plane_done(event.index)
            what = "written" if event.computed else "already in the store"
            overall = self._overall(0, f"plane {event.index + 1}/{event.n_planes} {what}")
        elif isinstance(event, Progress):
            self._per_plane = max(event.total, 1)
            overall = self._overall(event.done, event.stage)
        else:
            return
        if overall is not None:
            super()._on_event(overall)  # ignored after Cancel

    def _kept(self) -> str:
        n, finished = self.stack.n_planes, len(self.computed) + len(self.skipped)
        return f"{finished} of {n} plane(s) are in {self.store}"

    def _on_returned(self, result: StackSummary) -> None:
        self.summary = result
        self._outputs.finish()
        skipped = f"; {result.skipped} already there (same run) skipped" if result.skipped else ""
        calibration = PlaneStore.open(self.stack.store_path, mode="r").info.get("calibration", "")
        about = f"; uncertainty {calibration}" if calibration else ""
        self.note = f"{len(result.computed)} plane(s) computed{skipped}; store {result.output}{about}"
        for note in image_warnings(self.stack):  # the noise and resolution checks of its first plane: warnings
            notifications.show_warning(f"CVDM: {note}")
        self.outcome = "done"

    def _on_errored(self, exc: BaseException) -> None:
        self._outputs.finish(partial=True)
        self.outcome = "failed"
        kept = f" ({self._kept()}; they stay)" if self.computed or self.skipped else ""
        notifications.show_error(error_message(exc, self.settings) + kept)

    def _on_cancelled(self) -> None:
        self._outputs.finish(partial=True)
        notifications.show_info(
            f"CVDM reconstruction cancelled; {self._kept()} and stay in the layers. Run again with the same "
            "settings to continue."
        )

    def _cleanup(self) -> None:
        self.stack.source.close()
        if self.settings.device != "cpu":
            release_device_memory()


def make_stack_job(
    viewer: napari.Viewer,
    model: TrainedModel,
    prepared: PreparedInput,
    settings: ReconstructSettings,
    *,
    store: str,
    layer: Any,
    sources: dict[str, str],
    optics: dict[str, Any],
    on_progress: Callable[[Progress], None] | None = None,
    on_finished: Callable[[str], None] | None = None,
    interval_layers: bool = False,
) -> StackReconstructionJob:
    """Check the plane job (output store, planes, an existing store's run) and build it; raises
    :class:`InputError` (an :class:`OutputMismatch` for a store of another run) with the problem and the fix.

    ``prepared``: from :func:`.inputs.prepare_input` with ``lazy=True`` and placed; ``store``: the Output store
    field's text ("" for the default); ``layer``: the first input layer (the default store goes next to its
    file); ``optics``: the widget's optics record (with its ``note``)."""
    path = Path(store).expanduser() if store else default_store(prepared.base_name, layer)
    if not path.name.lower().endswith(".zarr"):
        raise InputError(
            f"Output store {path}: a plane-by-plane run writes an OME-Zarr folder; give a name ending in .zarr"
        )
    keep_samples = settings.keep_samples
    settings = settings.model_copy(update={"keep_samples": False})  # the store holds no individual samples
    source = open_source(prepared.image, 3 if model.task == "phase" else 2, name=f"layer {prepared.base_name!r}")
    try:
        job = prepare(model, source, path, settings, sources=sources)
    except OutputMismatch as err:
        source.close()
        raise OutputMismatch(_widget_words(str(err))) from None
    except InputError:
        source.close()
        raise
    pixel = settings.pixel_size_um
    factor = prepared.layer_scale[-1] / prepared.geometry.scale[-1] if prepared.layer_scale else 1.0
    metadata: dict[str, Any] = {
        "model": model.source,
        "task": model.task,
        "input": prepared.base_name,
        "settings": settings.model_dump(mode="json"),
        "pixel_um": pixel / factor if pixel else None,
        "optics": optics,
    }
    result = StackReconstructionJob(
        viewer, job, prepared, metadata, on_progress, on_finished, interval_layers=interval_layers
    )
    result.optics_note = str(optics.get("note", ""))
    samples = " Individual samples are not kept in a store." if keep_samples else ""
    notifications.show_info(
        f"CVDM: {prepared.base_name!r} ({job.n_planes} plane(s)) is reconstructed plane by plane into {path}; the "
        f"output layers read from it and fill in as planes finish. A rerun with the same settings continues it."
        f"{samples}"
    )
    return result
