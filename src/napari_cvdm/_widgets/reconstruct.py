"""The "CVDM reconstruction" dock widget: pick a model and layer(s), run, watch the mean fill in, get uncertainty.

Only controls live here.  Checking layers is :mod:`.inputs`, writing layers :mod:`.outputs`, the thread
:mod:`.workers`, one run's wiring :mod:`.job` (lazy or large layers, plane by plane into a store:
:mod:`.stack_job`), the model list :mod:`.catalog`.  Besides its controls the widget
holds the viewer and the handle of the running job (to cancel it) — nothing else.

Every refusal is one napari error notification that names the problem and the fix; nothing else happens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, Label, ProgressBar, PushButton
from napari.utils import notifications
from pydantic import ValidationError

from .._runtime import Progress
from .._runtime.device import describe_device
from ..model.files import ModelFileError
from ..settings import ReconstructSettings
from ..tasks import InputError
from .catalog import ModelEntry, ModelPicker, get_model, model_entry, no_models_message
from .events import MODEL_EVENTS
from .inputs import prepare_input
from .job import DownloadJob, ReconstructionJob, WorkerJob
from .optics_form import OpticsControls
from .settings_form import SettingsForm
from .stack_job import make_stack_job, needs_plane_job, store_field, store_text
from .workers import refusal_message

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Layer

TASKS = ("super-resolution", "phase")
DEVICES = ("auto", "cpu", "cuda", "mps")
TILE_STEP = 16


def _is_new_input(layer: Any) -> bool:
    """A visible image layer that is not one of our outputs (hidden ground truths are never preselected)."""
    from napari.layers import Image

    return isinstance(layer, Image) and layer.visible and "output" not in layer.metadata.get("napari_cvdm", {})


class ReconstructWidget(Container):
    """Super-resolution (widefield → SIM, 2×) or two-shot phase retrieval with per-pixel uncertainty."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self._job: WorkerJob | None = None
        self.task = ComboBox(label="Task", choices=TASKS, value=TASKS[0])
        self.picker = ModelPicker("Model")
        self.model, self.model_file = self.picker.combo, self.picker.file
        self.model_info = Label(label="")
        self.image = ComboBox(label="Image", choices=self._image_layers)
        self.plus = ComboBox(label="I(+d)", choices=self._image_layers, nullable=True, visible=False)
        self.store = store_field()
        self.optics = OpticsControls()
        self.pixel_size = self.optics.pixel_size
        self.form = SettingsForm(
            ReconstructSettings,
            {
                "n_samples": "Samples",
                "steps": "Steps",
                "seed": "Seed",
                "device": "Device",
                "tile_size": "Tile size (0 = auto)",
                "tile_overlap": "Tile overlap (0 = auto)",
                "batch_size": "Batch (0 = auto)",
                "keep_samples": "keep individual samples",
                "interval_level": "Interval level",
                "camera_offset": "Camera offset",
            },
            choices={"device": DEVICES},
            steps={"tile_size": TILE_STEP, "tile_overlap": TILE_STEP},
            spin_fractions=("interval_level",),
        )
        self.interval_level = self.form["interval_level"]
        self.interval_layers = CheckBox(text="add interval bounds layers", value=False)
        self.interval_layers.tooltip = (
            "also add the lower and upper bounds of the central interval (at the level above) as layers; only for "
            "models calibrated for the sampler used"
        )
        self.n_samples, self.steps, self.seed = self.form["n_samples"], self.form["steps"], self.form["seed"]
        self.device, self.tile_size = self.form["device"], self.form["tile_size"]
        self.tile_overlap = self.form["tile_overlap"]
        self.batch_size, self.keep_samples = self.form["batch_size"], self.form["keep_samples"]
        self.device_info = Label(label="")
        self.run_button = PushButton(text="Run")
        self.adapt_button = PushButton(text="Adapt to my microscope…")
        self.adapt_button.tooltip = (
            "no paired data? simulate training pairs with the optics above and your camera's noise (estimated from "
            "this layer), fine-tune the picked model on them and save it as your own model"
        )
        self.adapt: Any = None
        self.progress = ProgressBar(label="Progress", value=0, min=0, max=1)
        self.status = Label(label="")
        super().__init__(
            widgets=[
                self.task,
                self.model,
                self.model_file,
                self.model_info,
                self.image,
                self.plus,
                self.store,
                *self.optics.widgets,
                self.n_samples,
                self.steps,
                self.seed,
                self.device,
                self.device_info,
                self.tile_size,
                self.tile_overlap,
                self.batch_size,
                self.keep_samples,
                self.interval_level,
                self.interval_layers,
                self.run_button,
                self.adapt_button,
                self.progress,
                self.status,
            ],
            labels=True,
        )
        for label in (self.model_info, self.device_info, self.status, self.optics.info):
            label.native.setWordWrap(True)  # long advice wraps instead of widening the dock
        self.plus.tooltip = "leave empty when the first layer is a (2, H, W) stack ordered (I(−d), I(+d))"
        self.steps.tooltip = "network evaluations per sample; the model's benchmarked default is preselected"
        self.tile_size.tooltip = (
            "tile side on the output grid for large images or little memory; 0 = the whole image when it fits in "
            "memory, else the largest tile that does"
        )
        self.tile_overlap.tooltip = (
            "output pixels shared by neighbouring tiles, where their means and variances are blended; at most half "
            "the tile size. 0 = auto: 32, or half the tile when that is less. Unused when the image is one tile"
        )
        self.batch_size.tooltip = (
            "samples per network call; 0 = auto: all at once on a GPU, on a CPU as many as run fastest (one for "
            "large images, so the mean appears early). The mean layer updates after every batch."
        )
        self.task.changed.connect(self._on_task_changed)
        self.model.changed.connect(self._on_model_changed)
        self.device.changed.connect(self._on_device_changed)
        self.run_button.changed.connect(self._on_run_clicked)
        self.adapt_button.changed.connect(self.open_adapt)
        self.image.changed.connect(self._on_image_changed)
        self.plus.changed.connect(self._show_store)
        for edit in self.optics.edits():
            edit.changed.connect(self._describe_optics)
        self.native.destroyed.connect(self._on_destroyed)
        MODEL_EVENTS.models_changed.connect(self._on_models_changed)  # a fine-tuned model was saved
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self._refresh_layers)
        candidates = [viewer.layers.selection.active, *reversed(viewer.layers)]
        for layer in candidates:
            if _is_new_input(layer) and layer in self.image.choices:
                self.image.value = layer
                break
        self._on_task_changed(self.task.value)  # selects a model of the default task when there is one
        self._on_model_changed(self.model.value)
        self._on_device_changed(self.device.value)
        self._on_image_changed()

    # -- choices ---------------------------------------------------------------------------------------------
    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        from napari.layers import Image

        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self, event: Any = None) -> None:
        """Keep the pickers in sync with the layer list; a newly opened visible image becomes the input."""
        self.image.reset_choices()
        self.plus.reset_choices()
        layer = getattr(event, "value", None) if getattr(event, "type", "") == "inserted" else None
        if _is_new_input(layer) and layer in self.image.choices:
            self.image.value = layer

    # -- reactions -------------------------------------------------------------------------------------------
    def _on_image_changed(self, _value: Any = None) -> None:
        """Fill the optics fields from what the picked layer states (or remembers), then re-check them."""
        self.optics.fill_from(self.image.value)
        self._describe_optics()
        self._show_store()

    def _show_store(self, _value: Any = None) -> None:
        """The Output store field, only for layers that run plane by plane (lazy, or large)."""
        self.store.visible = needs_plane_job(self.picked_layers())

    def _describe_optics(self, _value: Any = None) -> None:
        entry = self.picker.entry()
        self.optics.describe(entry.info if entry is not None else None, self.picked_layers())

    def _on_model_changed(self, _value: Any = None) -> None:
        entry = self.picker.entry()
        if entry is None:
            self.model_info.value = no_models_message() if not self.model.choices else ""
            return
        if entry.task in TASKS and entry.task != self.task.value:
            self.task.value = entry.task
        info = entry.info
        if info is None:
            self.model_info.value = "not on this machine yet: downloaded (once, hash-checked) when you press Run"
            return
        self.steps.value = info.sampler.steps
        parts = [entry.task]
        if info.scale_factor > 1:
            parts.append(f"{info.scale_factor}× finer output")
        if info.input_pixel_um is not None:
            parts.append(f"trained at {info.input_pixel_um * 1000:.1f} nm px")
        parts.append(f"{info.sampler.steps} steps by default")
        steps = sorted({c.steps for c in info.calibrations})
        parts.append(
            f"uncertainty calibrated at {', '.join(map(str, steps))} steps" if steps else "uncertainty not calibrated"
        )
        self.model_info.value = ", ".join(parts)
        self._describe_optics()

    def _on_task_changed(self, task: str) -> None:
        phase = task == "phase"
        self.image.label = "I(−d) or 2-plane stack" if phase else "Image"
        self.image.tooltip = (
            "a (2, H, W) stack ordered (I(−d), I(+d)), or the I(−d) image when I(+d) is picked below"
            if phase
            else "the widefield image (or T/Z stack) to super-resolve"
        )
        self.plus.visible = phase
        self.optics.for_task(task)
        self._show_store()
        entry = self.picker.entry()
        if entry is not None and entry.task not in (task, "unknown"):
            for value in self.model.choices:
                try:
                    if model_entry(value).task == task:
                        self.model.value = value
                        break
                except ModelFileError:
                    continue

    def _on_device_changed(self, device: str) -> None:
        label = describe_device(device)
        self.device_info.value = "not available here" if label.startswith("unavailable") else f"→ {label}"

    def _on_models_changed(self, _path: str = "") -> None:
        """Re-read the model list (a new model file was saved); the current pick stays selected."""
        self.model.reset_choices()
        self._on_model_changed()

    def _on_destroyed(self, _obj: Any = None) -> None:
        MODEL_EVENTS.models_changed.disconnect(self._on_models_changed)
        if self._job is not None and self._job.running:
            self._job.detach()

    def _on_run_clicked(self, _value: Any = None) -> None:
        if self._job is not None and self._job.running:
            self._job.cancel()
        else:
            self.reconstruct()

    def open_adapt(self, _value: Any = None):
        """Dock the "Adapt to my microscope" panel, which uses this widget's model, layer and optics."""
        from .adapt import AdaptWidget

        if self.adapt is None:
            self.adapt = AdaptWidget(self._adapt_source)
            self._viewer.window.add_dock_widget(self.adapt, name="Adapt to my microscope")
        return self.adapt

    def _adapt_source(self):
        offset = self.form["camera_offset"].value  # the layer's dark level: the noise estimate needs it too
        return self.model.value, self.image.value, ReconstructSettings(**self.optics.values(), camera_offset=offset)

    # -- running ---------------------------------------------------------------------------------------------
    def picked_layers(self) -> list[Layer]:
        """The layers the pickers point at: [image] or, for phase, [I(−d), I(+d)] when I(+d) is set."""
        layers = [self.image.value]
        if self.task.value == "phase" and self.plus.value is not None:
            layers.append(self.plus.value)
        return layers

    def settings(self, entry: ModelEntry) -> ReconstructSettings:
        """The run's settings from the controls (steps = None keeps the model's benchmarked time grid)."""
        values = self.form.values()  # 0 = auto → None for batch, tile size and steps
        if values["steps"] == entry.info.sampler.steps:
            values["steps"] = None
        return ReconstructSettings(**values, **self.optics.values())

    def reconstruct(self, layers: Sequence[Layer] | None = None) -> WorkerJob | None:
        """Check everything, then start a run on ``layers`` (default: the picked ones); None if refused.

        Returns the :class:`ReconstructionJob`, or a :class:`DownloadJob` when the picked registered model has to
        be fetched first (the run then starts by itself once the download is done).
        """
        if self._job is not None and self._job.running:
            return self._job
        try:
            job = self._make_job(layers)
        except (InputError, ModelFileError, ValidationError) as err:
            notifications.show_error(refusal_message(err))
            return None
        self._job = job
        self.run_button.text = "Cancel"
        self.progress.value = 0
        self.status.value = "starting…"
        job.start()
        return job

    def _make_job(self, layers: Sequence[Layer] | None) -> WorkerJob:
        value = self.model.value
        if value is None:
            raise InputError(no_models_message())
        entry = model_entry(value)
        if not entry.downloaded:
            return DownloadJob(value, self._show_progress, lambda outcome: self._downloaded(outcome, layers))
        layers = self.picked_layers() if layers is None else list(layers)
        task = self.task.value
        if entry.task != task and not (entry.task == "generic" and task == "super-resolution"):
            raise InputError(
                f"model {value!r} does {entry.task}, but Task is {task}; pick a {task} model or switch Task to "
                f"{entry.task}"
            )
        settings = self.settings(entry)
        if describe_device(settings.device).startswith("unavailable"):
            raise InputError(describe_device(settings.device).removeprefix("unavailable: "))
        model = get_model(value)
        min_size = model.network.min_size
        if settings.tile_size is not None and settings.tile_size < min_size:
            raise InputError(f"tile size {settings.tile_size} is below this model's minimum of {min_size} pixels")
        lazy = needs_plane_job(layers)  # lazy or large: plane by plane into a store, never read whole
        prepared = prepare_input(task, layers, model.info, min_size=min_size, lazy=lazy)
        optics = self.optics.check(model.info, settings, layers[0])  # no pixel size, or outside the model: refused
        prepared = prepared.placed(optics.output_factor(model.info.scale_factor), optics.pixel_um)
        started = time.perf_counter()

        def finished(outcome: str) -> None:
            if outcome == "done":
                self.optics.remember(layers)
            self._finished(outcome, time.perf_counter() - started)

        if lazy:
            return make_stack_job(
                self._viewer, model, prepared, settings, store=store_text(self.store), layer=layers[0],
                sources=self.optics.sources(), optics=optics.record, on_progress=self._show_progress,
                on_finished=finished, interval_layers=self.interval_layers.value,
            )  # fmt: skip
        return ReconstructionJob(
            self._viewer,
            model,
            prepared,
            settings,
            on_progress=self._show_progress,
            on_finished=finished,
            interval_layers=self.interval_layers.value,
            sources=self.optics.sources(),
        )

    def _show_progress(self, event: Progress) -> None:
        self.progress.max = max(event.total, 1)
        self.progress.value = event.done
        self.status.value = event.stage

    def _downloaded(self, outcome: str, layers: Sequence[Layer] | None) -> None:
        self._finished(outcome, None)
        if outcome == "done":
            self.model.reset_choices()
            self._on_model_changed()
            self.reconstruct(layers)

    def _finished(self, outcome: str, seconds: float | None) -> None:
        self.run_button.text = "Run"
        if outcome != "done":
            self.progress.value = 0
        self.status.value = outcome if seconds is None else f"{outcome} ({seconds:.1f} s)"
        calibration = getattr(self._job, "calibration", "")
        if outcome == "done" and calibration:  # what the uncertainty layer means, in words
            self.status.value += f"; uncertainty {calibration}"
        note = getattr(self._job, "optics_note", "")
        if outcome == "done" and note:  # what was done for the optics: run as is, binned, resampled
            self.status.value += f"; optics: {note}"
        note = getattr(self._job, "note", "")
        if outcome == "done" and note:  # a plane job: planes computed and skipped, and its store
            self.status.value += f"; {note}"
