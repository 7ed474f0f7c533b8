"""Worker runs wired to the viewer: a reconstruction, or the download of a registered model before its first run.

The widget builds a job, starts it and keeps only the handle (to cancel it).  Outcomes of a reconstruction:

* ``"done"``: outputs written (mean, variance, β map, optionally samples);
* ``"cancelled"``: the viewer is put back exactly as it was before the run — the partial mean layer is removed,
  or, on a re-run, the previous results are restored;
* ``"failed"``: same rollback, plus one error notification saying what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils import notifications
from napari.utils.progress import cancelable_progress
from superqt.utils import GeneratorWorker

from .._runtime import Progress
from ..inference.reconstruct import Reconstruction, RunningMean
from ..model.files import TrainedModel
from ..settings import ReconstructSettings
from .inputs import PreparedInput
from .outputs import ResultLayers
from .workers import download_worker, error_message, reconstruction_worker, release_device_memory

if TYPE_CHECKING:
    import napari
    from napari.layers import Image


class _RunProgress(cancelable_progress):
    """An activity-dock progress bar whose Cancel button stops the run at once."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


class WorkerJob:
    """A started-once worker with an activity-dock progress bar, cancel, and a finished callback."""

    description = "CVDM"

    def __init__(
        self,
        worker: GeneratorWorker,
        on_progress: Callable[[Progress], None] | None,
        on_finished: Callable[[str], None] | None,
    ) -> None:
        self.outcome: str | None = None
        self.worker = worker
        self._on_progress, self._on_finished = on_progress, on_finished
        self._cancel_requested = False
        self._running = False
        self._pbar: _RunProgress | None = None
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_worker_finished)

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the worker has finished and the outcome is known."""
        return self._running

    def start(self) -> None:
        self._running = True
        self._pbar = _RunProgress(total=0, desc=f"{self.description}: starting", cancel_callback=self.cancel)
        self.worker.start()

    def cancel(self) -> None:
        """Stop at the worker's next yield (one network evaluation, or one download chunk)."""
        if self._running and not self._cancel_requested:
            self._cancel_requested = True
            self.worker.quit()

    def detach(self) -> None:
        """Cancel and stop calling back into the widget (it is being destroyed)."""
        self._on_progress = self._on_finished = None
        self.cancel()

    def _on_event(self, event: Any) -> None:
        if self._cancel_requested or self.outcome is not None or not isinstance(event, Progress):
            return
        if self._on_progress is not None:
            self._on_progress(event)
        # napari's progress bars process Qt events while they redraw, so the run may finish inside these calls
        if self._pbar is not None and self._pbar.total != event.total:
            self._pbar.total = event.total
        if self._pbar is not None:
            self._pbar.set_description(f"{self.description}: {event.stage}")
        if self._pbar is not None:
            self._pbar.update(event.done - self._pbar.n)

    def _on_returned(self, result: Any) -> None:
        self.outcome = "done"

    def _on_errored(self, exc: BaseException) -> None:
        self.outcome = "failed"
        notifications.show_error(error_message(exc))

    def _on_cancelled(self) -> None:
        notifications.show_info(f"{self.description} cancelled.")

    def _on_worker_finished(self) -> None:
        if self.outcome is None:  # quit() before the result
            self.outcome = "cancelled"
            self._on_cancelled()
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._cleanup()
        self._running = False
        if self._on_finished is not None:
            self._on_finished(self.outcome)

    def _cleanup(self) -> None:
        """Subclasses release resources here (runs after the outcome is known, before the callback)."""


class ReconstructionJob(WorkerJob):
    """Runs ``model`` on ``prepared`` in a worker thread and writes the results into ``viewer``."""

    description = "CVDM reconstruction"

    def __init__(
        self,
        viewer: napari.Viewer,
        model: TrainedModel,
        prepared: PreparedInput,
        settings: ReconstructSettings,
        on_progress: Callable[[Progress], None] | None = None,
        on_finished: Callable[[str], None] | None = None,
        interval_layers: bool = False,
        sources: dict[str, str] | None = None,
    ) -> None:
        self.model, self.settings = model, settings
        self.calibration = ""  # what the calibrated std rests on, once the run is done
        self.optics_note = ""  # what was done for the optics (run as is, binned, resampled), once done
        self._sources = dict(sources or {})
        self.layers: dict[str, Image] = {}
        meta: dict[str, Any] = {
            "model": model.source,
            "task": model.task,
            "input": prepared.base_name,
            "settings": settings.model_dump(mode="json"),
        }
        self._outputs = ResultLayers(viewer, prepared, meta, interval_layers=interval_layers)
        super().__init__(reconstruction_worker(model, prepared.image, settings), on_progress, on_finished)

    @property
    def output_names(self) -> dict[str, str]:
        return self._outputs.names

    def _on_event(self, event: Progress | RunningMean) -> None:
        if isinstance(event, RunningMean):
            if not self._cancel_requested and self.outcome is None:
                self._outputs.show_running_mean(event.plane, event.mean)
            return
        super()._on_event(event)

    def _on_returned(self, result: Reconstruction) -> None:
        used = result.optics.get("used", {})
        for key, source in self._sources.items():  # where the widget's values came from (layer, file, typed)
            if key in used:
                used[key]["source"] = source
        self.layers = self._outputs.finish(result)
        self.calibration = result.calibration
        self.optics_note = result.optics.get("note", "")
        if result.optics.get("noise", {}).get("verdict") == "outside":  # estimated from the image: warn, never refuse
            notifications.show_warning(f"CVDM: {result.optics['noise']['note']}")
        if result.optics.get("resolution", {}).get("verdict") == "mismatch":
            notifications.show_warning(f"CVDM: {result.optics['resolution']['note']}")
        self.outcome = "done"

    def _on_errored(self, exc: BaseException) -> None:
        self._outputs.rollback()
        self.outcome = "failed"
        notifications.show_error(error_message(exc, self.settings))

    def _on_cancelled(self) -> None:
        self._outputs.rollback()  # nothing may stay behind
        notifications.show_info("CVDM reconstruction cancelled; the layers are as they were before the run.")

    def _cleanup(self) -> None:
        """Hand the GPU memory of the run back (the run used its own copy of the network; the cached model never
        leaves its device)."""
        if self.settings.device != "cpu":
            release_device_memory()


class DownloadJob(WorkerJob):
    """Fetches registered model ``name`` (hash-checked, into the download cache) before its first run."""

    def __init__(
        self,
        name: str,
        on_progress: Callable[[Progress], None] | None = None,
        on_finished: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.path: Path | None = None
        self.description = f"CVDM model {name}"
        super().__init__(download_worker(name), on_progress, on_finished)

    def _on_returned(self, result: Path) -> None:
        self.path = result
        self.outcome = "done"

    def _on_cancelled(self) -> None:
        notifications.show_info(f"Stopped waiting for {self.name}; the download finishes in the background.")
