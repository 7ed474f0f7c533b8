"""The "Adapt to my microscope" dock: the reconstruction widget's model, layer and optics → a user model.

Runs :func:`napari_cvdm.training.adapt.iter_adapt` in a worker thread: the camera noise from the picked layer (or
the stated *Photons*, for SR layers sampled too coarsely to show their noise), pairs simulated with the stated
optics and that noise, a fine-tune of the picked model, recalibration, and a model
file in the user model folder that appears in the picker when it is written.  *Stop* ends training after the
current step and saves; *resume* continues a stopped run from its checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, Container, FloatSpinBox, Label, LineEdit, ProgressBar, PushButton, SpinBox
from napari.utils import notifications
from superqt.utils import create_worker

from .._runtime import CancelToken, Progress
from ..registry import user_model_dir
from ..settings import ADAPT_PAIRS, ADAPT_SIZE, ADAPT_TRAIN, ReconstructSettings, adapt_train_settings
from ..tasks import InputError
from ..training.adapt import Microscope, iter_adapt, resolution_warning
from ..training.data import DataError
from ..training.loop import TrainProgress
from .catalog import get_model
from .events import MODEL_EVENTS


def _events(job):
    """Re-yield the adaptation's events in the worker thread; the result is the generator's return value."""
    return (yield from job)


class AdaptWidget(Container):
    """Adapt the picked model to the microscope of the picked layer (its stated pixel size and optics)."""

    def __init__(self, source: Callable[[], tuple[str, Any, ReconstructSettings]]) -> None:
        self._source = source  # () → (model value, layer, the reconstruction widget's settings incl. optics)
        self._worker: Any = None
        self._stop = CancelToken()
        self.model_name = LineEdit(label="New model name", value="my-microscope")
        self.n_pairs = SpinBox(label="Simulated pairs", value=ADAPT_PAIRS, min=4, max=10_000)
        self.steps = SpinBox(label="Fine-tuning steps", value=ADAPT_TRAIN["steps"], min=1, max=1_000_000)
        self.photons = FloatSpinBox(label="Photons (0: estimate)", value=0.0, min=0.0, max=1e7, step=10.0)
        self.photons.tooltip = (
            "SR: mean photo-electrons on the layer's foreground; 0 estimates them from its noise, which needs pixels "
            "at least as fine as Nyquist λ/(4·NA)"
        )
        self.resume = CheckBox(text="resume a stopped run of this name", value=False)
        self.button = PushButton(text="Adapt")
        self.progress = ProgressBar(label="Progress", value=0, min=0, max=1)
        self.status = Label(label="")
        self.status.native.setWordWrap(True)
        self.status.value = (
            "estimates your camera's noise from the picked layer, simulates training pairs with the optics stated "
            "in the reconstruction widget and fine-tunes the picked model on them (CPU: about 0.6 s per step of "
            "the bundled models, plus the simulation and recalibration)"
        )
        super().__init__(
            widgets=[
                self.model_name,
                self.n_pairs,
                self.steps,
                self.photons,
                self.resume,
                self.button,
                self.progress,
                self.status,
            ],
            labels=True,
        )
        self.button.changed.connect(self._clicked)

    @property
    def running(self) -> bool:
        return self._worker is not None

    def _clicked(self, _value: Any = None) -> None:
        if self.running:
            self._stop.cancel()
            self.status.value = "stopping after the current step (the model is saved)…"
        else:
            self.start()

    def start(self) -> Any:
        """Check everything, then start; None (and one notification) when refused."""
        try:
            job, output = self._make_job()
        except (InputError, DataError, ValueError) as err:
            notifications.show_error(str(err))
            return None
        self._stop = CancelToken()
        worker = create_worker(_events, job, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_event)
        worker.returned.connect(lambda model: self._done(output, model))
        worker.errored.connect(lambda err: self._failed(err))
        worker.finished.connect(self._finished)
        self._worker = worker
        self.button.text = "Stop"
        worker.start()
        return worker

    def _make_job(self):
        value, layer, settings = self._source()
        if value is None or layer is None:
            raise InputError("pick a model and an image layer in the reconstruction widget first")
        base = get_model(value)
        info = base.info
        if settings.pixel_size_um is None:
            raise InputError(
                f"layer {layer.name!r} has no pixel size: type it in the reconstruction widget's 'Pixel size (µm)'"
            )
        scope = Microscope(
            pixel_um=settings.pixel_size_um,
            wavelength_um=settings.wavelength_um or info.wavelength_um,
            numerical_aperture=settings.numerical_aperture or info.numerical_aperture,
            defocus_um=(settings.defocus_um or info.defocus_um) if base.task == "phase" else None,
        )
        output = user_model_dir() / f"{self.model_name.value.strip() or 'my-microscope'}.cvdm"
        if output.exists() and not self.resume.value:
            raise InputError(f"{output} exists; choose another name, or tick resume to continue a stopped run")
        image = np.asarray(layer.data)
        plane_ndim = 3 if base.task == "phase" else 2
        image = image.reshape(-1, *image.shape[-plane_ndim:])[0]
        if base.task == "phase" and settings.plane_order == "plus-minus":
            image = image[::-1]
        train = adapt_train_settings(steps=self.steps.value)
        job = iter_adapt(
            base, image, scope, output, name=output.stem, n_pairs=self.n_pairs.value, size=ADAPT_SIZE, train=train,
            offset=settings.camera_offset,  # the reconstruction widget's Camera offset
            photons=(self.photons.value or None) if base.task != "phase" else None, resume=self.resume.value,
            stop=self._stop,
        )  # fmt: skip
        return job, output

    def _on_event(self, event: Any) -> None:
        if isinstance(event, TrainProgress):
            self.progress.max, self.progress.value = event.total, event.step
            self.status.value = f"fine-tuning: step {event.step}/{event.total}"
        elif isinstance(event, Progress):
            self.progress.max, self.progress.value = max(event.total, 1), event.done
            self.status.value = event.stage

    def _done(self, output, model) -> None:
        self.status.value = f"saved {output.name}: in the model picker; {model.info.training.get('calibration', '')}"
        MODEL_EVENTS.models_changed.emit(str(output))
        if (warning := resolution_warning(model.info.training.get("adapted", {}).get("resolution"))) is not None:
            notifications.show_warning(f"CVDM: {warning}")

    def _failed(self, err: BaseException) -> None:
        notifications.show_error(f"Adapt to my microscope failed: {err}")
        self.status.value = f"failed: {err}"

    def _finished(self) -> None:
        self._worker = None
        self.button.text = "Adapt"
