"""The "CVDM fine-tuning" dock widget: adapt a model to your microscope with a few of your own image pairs.

Pick paired data (two layers, or two folders of TIFF files), a base model and a name; the widget shows how many
pairs and patches it found and refuses what cannot work (mismatched shapes, a scale ratio that is not the base
model's, too little data) with one notification, changing nothing.  Train shows a live loss plot, a progress bar
with the time remaining and, every K steps, the current model's reconstruction of one validation patch as a layer.
Stop saves.  The model is written to the user model folder (``NAPARI_CVDM_MODELS``) with its resume checkpoint,
and appears in the reconstruction widget's picker at once.

Checking data is :mod:`.finetune_data`, the thread and its outcomes :mod:`.finetune_job`, the plot :mod:`.lossplot`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils import notifications
from pydantic import ValidationError

from .._runtime import Progress
from .._runtime.device import describe_device
from ..model.files import ModelFileError
from ..settings import PairOptics, TrainSettings
from ..tasks import InputError
from ..training.checkpoint import (
    CheckpointError,
    checkpoint_path,
    checkpoint_settings,
    resume_refusal,
    settings_changes,
)
from ..training.data import DataError
from ..training.jobs import finetune_start
from ..training.loop import TrainProgress
from ..training.optics import noise_change, optics_change, resolution_change
from .catalog import ModelPicker, get_model
from .events import MODEL_EVENTS
from .finetune_data import (
    PAIR_OPTICS_LABELS,
    TRAIN_LABELS,
    DataCount,
    check_output_name,
    check_shapes,
    counts_text,
    folder_shapes,
    guess_pair,
    is_unset,
    iter_pairs_from_folders,
    iter_pairs_from_layers,
    layer_shapes,
    typed_pair_optics,
)
from .finetune_job import FineTuneJob, Prepared, Preview, format_seconds, prepare_data, show_preview
from .job import DownloadJob, WorkerJob
from .lossplot import LossPlot
from .reconstruct import DEVICES
from .settings_form import SettingsForm
from .workers import refusal_message

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

SOURCES = ("layers", "folders")


class FineTuneWidget(Container):
    """Fine-tune a CVDM model on paired data from layers or folders, with live loss, preview and Stop."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self._job: WorkerJob | None = None
        self._preview_target = None
        self._preview_where: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 1.0), (0.0, 0.0))
        self.picker = ModelPicker("Base model", keep=lambda entry: entry.task != "unknown")
        self.base, self.base_file = self.picker.combo, self.picker.file
        self.base_info = Label(label="")
        self.source = ComboBox(label="Data from", choices=SOURCES, value="layers")
        self.input_layer = ComboBox(label="Input", choices=self._image_layers, nullable=True)
        self.target_layer = ComboBox(label="Target", choices=self._image_layers, nullable=True)
        self.input_dir = FileEdit(label="Input folder", mode="d", visible=False)
        self.target_dir = FileEdit(label="Target folder", mode="d", visible=False)
        self.plus_dir = FileEdit(label="I(+d) folder", mode="d", visible=False)  # phase planes in separate files
        self.plus_dir.tooltip = "phase: the I(+d) files, when the input folder holds the I(−d) ones (same names)"
        self.data_info = Label(label="")
        self.pair_optics = SettingsForm(PairOptics, PAIR_OPTICS_LABELS)  # the optics the new model will state
        self.model_name = LineEdit(label="Save as", value="")
        self.form = SettingsForm(
            TrainSettings,
            TRAIN_LABELS,
            choices={"device": DEVICES},
            steps={"patch_size": 8},
            spin_fractions=("val_fraction",),
        )
        form = self.form
        self.steps, self.batch_size, self.patch_size = form["steps"], form["batch_size"], form["patch_size"]
        self.learning_rate, self.val_fraction = form["learning_rate"], form["val_fraction"]
        self.alpha, self.ema_decay, self.lr_decay = form["alpha"], form["ema_decay"], form["lr_decay"]
        self.augment, self.seed, self.device = form["augment"], form["seed"], form["device"]
        self.checkpoint_every = form["checkpoint_every"]
        self.preview_every = SpinBox(label="Preview every", value=100, min=0, max=1_000_000)
        self.show_advanced = CheckBox(text="advanced settings", value=False)
        self.resume = CheckBox(text="continue from checkpoint", value=False)
        advanced = [
            self.alpha,
            self.ema_decay,
            self.lr_decay,
            self.augment,
            self.seed,
            self.device,
            self.checkpoint_every,
        ]
        self.advanced = Container(widgets=[*advanced, self.resume], labels=True, visible=False)
        self.show_terms = CheckBox(text="show loss terms", value=False)
        self.run_button = PushButton(text="Train")
        self.progress = ProgressBar(label="Progress", value=0, min=0, max=1)
        self.status = Label(label="")
        super().__init__(
            widgets=[
                self.base, self.base_file, self.base_info, self.source, self.input_layer, self.target_layer,
                self.input_dir, self.plus_dir, self.target_dir, self.data_info, *self.pair_optics.widgets,
                self.model_name, self.steps, self.batch_size,
                self.patch_size, self.learning_rate, self.val_fraction, self.preview_every, self.show_advanced,
                self.advanced, self.show_terms, self.run_button, self.progress, self.status,
            ],
            labels=True,
        )  # fmt: skip
        for label in (self.base_info, self.data_info, self.status):
            label.native.setWordWrap(True)
        self.plot = LossPlot()
        self.native.layout().addWidget(
            self.plot.widget if self.plot.available else Label(value="install matplotlib for the loss plot").native
        )
        self.preview_every.tooltip = "steps between previews of one validation patch (0: no preview)"
        self.resume.tooltip = "continue a stopped run of this name exactly where it stopped (same data and settings)"
        self.base.changed.connect(self._on_base_changed)
        self.source.changed.connect(self._on_source_changed)
        self.show_advanced.changed.connect(lambda on: setattr(self.advanced, "visible", bool(on)))
        self.show_terms.changed.connect(self.plot.set_show_terms)
        self.run_button.changed.connect(self._on_run_clicked)
        data_controls = [self.input_layer, self.target_layer, self.input_dir, self.plus_dir, self.target_dir]
        data_controls.append(self.pair_optics["pixel_size_um"])
        for widget in (*data_controls, self.patch_size, self.batch_size, self.val_fraction, self.seed):
            widget.changed.connect(self.update_counts)
        self.native.destroyed.connect(self._on_destroyed)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._on_layers_changed)
        self._guess_layers()
        self._on_base_changed()

    # -- choices ---------------------------------------------------------------------------------------------
    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        from napari.layers import Image

        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and "output" not in layer.metadata.get("napari_cvdm", {})
        ]

    def _guess_layers(self) -> None:
        """Preselect an (input, target) pair of layers whose shapes fit the base model's scale factor."""
        entry = self.picker.entry()
        pair = guess_pair([layer for _, layer in self._image_layers()], entry.info if entry else None)
        if pair is not None:
            self.input_layer.value, self.target_layer.value = pair

    # -- reactions -------------------------------------------------------------------------------------------
    def _on_layers_changed(self, _event: Any = None) -> None:
        self.input_layer.reset_choices()
        self.target_layer.reset_choices()
        if self.input_layer.value is None or self.target_layer.value is None:
            self._guess_layers()
        self.update_counts()

    def _on_source_changed(self, source: str) -> None:
        on_layers = source == "layers"
        self.input_layer.visible = self.target_layer.visible = on_layers
        self.input_dir.visible = self.target_dir.visible = not on_layers
        self.plus_dir.visible = self._plus_applies()
        self.update_counts()

    def _plus_applies(self) -> bool:  # phase pairs from folders
        entry = self.picker.entry()
        return self.source.value == "folders" and entry is not None and entry.task == "phase"

    def _on_base_changed(self, _value: Any = None) -> None:
        entry = self.picker.entry()
        if entry is None:
            self.base_info.value = "no base model: pick one, or “Load from file…”"
        elif entry.info is None:
            self.base_info.value = f"{entry.task}; downloaded (once, hash-checked) when you press Train"
        else:
            info = entry.info
            steps = info.training.get("steps")
            self.base_info.value = f"{info.task}, output {info.scale_factor}× the input" + (
                f", trained {steps} steps" if steps else ""
            )
            stem = Path(str(entry.value)).stem
            if not self.model_name.value or self.model_name.value.endswith("-finetuned"):
                self.model_name.value = f"{stem}-finetuned"
        phase = entry is not None and entry.task == "phase"
        self.pair_optics["wavelength_um"].label = "Illumination λ (µm)" if phase else "Emission λ (µm)"
        self.pair_optics["numerical_aperture"].visible = not phase
        self.pair_optics["defocus_um"].visible = phase
        self.plus_dir.visible = self._plus_applies()
        if self.input_layer.value is None or self.target_layer.value is None:
            self._guess_layers()
        self.update_counts()

    def _on_destroyed(self, _obj: Any = None) -> None:
        if self._job is not None and self._job.running:
            self._job.detach()  # stops after the current step and saves

    def _on_run_clicked(self, _value: Any = None) -> None:
        if self._job is not None and self._job.running:
            self._job.cancel()
        else:
            self.train()

    # -- data ------------------------------------------------------------------------------------------------
    def _shapes(self, info) -> list:
        if self.source.value == "layers":
            return layer_shapes(self.input_layer.value, self.target_layer.value, info)
        if is_unset(self.input_dir.value) or is_unset(self.target_dir.value):
            raise InputError("pick an input folder and a target folder of TIFF files with matching names")
        return folder_shapes(self.input_dir.value, self.target_dir.value, info, self._plus())

    def _plus(self) -> Path | None:
        """The I(+d) folder when one is picked and applies (phase, from folders)."""
        return None if not self._plus_applies() or is_unset(self.plus_dir.value) else Path(self.plus_dir.value)

    def _input_data(self) -> Any:
        return self.input_layer.value if self.source.value == "layers" else Path(self.input_dir.value)

    def _count(self, info, min_size: int = 8) -> DataCount:
        sizes = (self.patch_size.value, self.batch_size.value, self.val_fraction.value, self.seed.value)
        return check_shapes(self._shapes(info), info, *sizes, min_size)

    def update_counts(self, _value: Any = None) -> None:
        """Show how many pairs and patches the picked data holds, or why it cannot be used."""
        entry = self.picker.entry()
        if entry is None or entry.info is None:
            self.data_info.value = ""
            return
        try:
            typed, data = self.pair_optics["pixel_size_um"].value, self._input_data()
            self.data_info.value = counts_text(self._count(entry.info), entry.info, typed, data)
        except InputError as err:
            self.data_info.value = f"⚠ {err}"

    # -- running ---------------------------------------------------------------------------------------------
    def settings(self) -> TrainSettings:
        """The run's settings from the controls (raises ``ValidationError`` or ``InputError`` for bad values).

        Warm-up and validation interval are the settings' own defaults for the chosen number of steps.
        """
        return TrainSettings(**self.form.values())

    def train(self) -> WorkerJob | None:
        """Check everything, then start fine-tuning; None (and one notification) if refused."""
        if self._job is not None and self._job.running:
            return self._job
        try:
            job = self._make_job()
        except (InputError, ModelFileError, DataError, CheckpointError, ValidationError) as err:
            notifications.show_error(refusal_message(err))
            return None
        self._job = job
        self.run_button.text = "Stop"
        self.progress.value = 0
        self.status.value = "starting…"
        if isinstance(job, FineTuneJob):
            self.plot.clear()
        job.start()
        return job

    def _make_job(self) -> WorkerJob:
        entry = self.picker.entry()
        if entry is None:
            raise InputError("pick a base model to fine-tune (or “Load from file…”)")
        if not entry.downloaded:
            return DownloadJob(entry.value, None, self._downloaded)
        settings = self.settings()
        optics = typed_pair_optics(self.pair_optics.values())  # a bad value: refused at once
        if describe_device(settings.device).startswith("unavailable"):
            raise InputError(describe_device(settings.device).removeprefix("unavailable: "))
        base = get_model(entry.value)
        output = check_output_name(self.model_name.value.strip(), entry.value, self.resume.value)
        if self.resume.value:  # refuse now, not after the data are read, when the settings rule out a resume
            stored = checkpoint_settings(checkpoint_path(output))
            if stored is not None and (changes := settings_changes(stored, settings.model_dump(mode="json"))):
                raise CheckpointError(resume_refusal(changes, checkpoint_path(output)))
        count = self._count(base.info, base.network.min_size)
        layers = self.source.value == "layers"
        if layers:  # read in the worker thread, pair by pair: napari stays responsive while the data load
            read = iter_pairs_from_layers(self.input_layer.value, self.target_layer.value, base.info)
        else:
            read = iter_pairs_from_folders(self.input_dir.value, self.target_dir.value, self._plus())
        target_layer = self.target_layer.value if layers else None
        network, info = finetune_start(base, self.model_name.value.strip())
        prepare = prepare_data(read, info, settings, self.preview_every.value, target_layer, optics)
        started = time.perf_counter()
        self.data_info.value = count.text()
        self._preview_target, self._preview_where = None, ((1.0, 1.0), (0.0, 0.0))
        return FineTuneJob(
            network,
            prepare,
            settings,
            output,
            resume=self.resume.value,
            on_progress=self._show_progress,
            on_preview=self._show_preview,
            on_finished=lambda outcome: self._finished(outcome, time.perf_counter() - started),
            on_data=self._show_data,
        )

    def _show_data(self, event: Progress | Prepared) -> None:
        """Reading the data: progress per pair; then the preview's target patch and where it lies."""
        if isinstance(event, Prepared):
            self._preview_target, self._preview_where = event.target, event.where
            self.status.value = "training: first step…"
            return
        self.progress.max = max(event.total, 1)
        self.progress.value = event.done
        self.status.value = event.stage

    def _downloaded(self, outcome: str) -> None:
        self._finished(outcome, None)
        if outcome == "done":
            self.base.reset_choices()
            self._on_base_changed()
            self.train()

    def _show_progress(self, event: TrainProgress) -> None:
        self.plot.add(event.step, event.losses, event.val_loss)
        self.progress.max = max(event.total, 1)
        self.progress.value = event.step
        val = f" · validation {self.plot.val_losses[-1]:.4g}" if self.plot.val_losses else ""
        self.status.value = (
            f"step {event.step}/{event.total} · loss {event.losses['total']:.4g}{val} · "
            f"{format_seconds(event.eta_seconds)} left"
        )

    def _show_preview(self, preview: Preview) -> None:
        show_preview(self._viewer, preview, self._preview_target, *self._preview_where)

    def _finished(self, outcome: str, seconds: float | None) -> None:
        self.run_button.text = "Train"
        self.plot.draw(force=True)
        job = self._job
        if isinstance(job, FineTuneJob) and job.output.is_file():
            MODEL_EVENTS.models_changed.emit(str(job.output))  # also after a failure: the last checkpoint's model
            self.base.reset_choices()
        if isinstance(job, FineTuneJob) and job.model is None and outcome == "stopped":  # while reading the data
            self.status.value = "stopped before the first step; nothing was saved"
            return
        if not isinstance(job, FineTuneJob) or job.model is None:
            self.status.value = outcome
            return
        path, steps = job.output, job.model.info.training["steps"]
        if not path.is_file():  # stopped before the first step of a new run
            self.status.value = f"{outcome} before the first step; nothing was saved"
            return
        self.status.value = f"{outcome} at step {steps} ({format_seconds(seconds or 0)}); saved {path.name}"
        name = path.stem
        if outcome == "stopped":
            notifications.show_info(
                f"Stopped at step {steps}; model {name!r} saved to {path} (with its checkpoint). Tick “continue from "
                "checkpoint” and press Train to continue. It is in the CVDM reconstruction widget's model list."
            )
        else:
            calibration = job.model.info.training.get("calibration", "")
            notifications.show_info(
                f"Fine-tuned model {name!r} saved to {path}; it is in the CVDM reconstruction widget's model list."
                + (f" Optics: {change}." if (change := optics_change(job.model.info)) else "")
                + (f" Noise: {noise}." if (noise := noise_change(job.model.info)) else "")
                + (f" Uncertainty: {calibration}." if calibration else "")
            )
            if (resolution := resolution_change(job.model.info)) is not None:
                notifications.show_warning(f"CVDM: {resolution}")
