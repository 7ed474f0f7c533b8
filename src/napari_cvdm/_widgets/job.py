"""One reconstruction run: the worker, its output layers and its progress, wired together.

The widget builds a :class:`ReconstructionJob`, starts it and keeps only the handle (to cancel it).  Outcomes:

* ``"done"``: outputs written (mean, variance, β map, optionally samples);
* ``"cancelled"``: the viewer is put back exactly as it was before the run — the partial mean layer is removed,
  or, on a re-run, the previous results are restored;
* ``"failed"``: same rollback, plus one error notification saying what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari.utils import notifications
from napari.utils.progress import cancelable_progress

from ..model.files import TrainedModel
from ..predict import Progress, Reconstruction, RunningMean
from ..settings import ReconstructSettings
from .inputs import PreparedInput
from .outputs import ResultLayers
from .workers import error_message, reconstruction_worker

if TYPE_CHECKING:
    import napari
    from napari.layers import Image


class _RunProgress(cancelable_progress):
    """An activity-dock progress bar whose Cancel button stops the run at once."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


class ReconstructionJob:
    """Runs ``model`` on ``prepared`` in a worker thread and writes the results into ``viewer``."""

    def __init__(
        self,
        viewer: napari.Viewer,
        model: TrainedModel,
        prepared: PreparedInput,
        settings: ReconstructSettings,
        on_progress: Callable[[Progress], None] | None = None,
        on_finished: Callable[[str], None] | None = None,
    ) -> None:
        self.model, self.settings = model, settings
        self.outcome: str | None = None
        self.layers: dict[str, Image] = {}
        self._on_progress, self._on_finished = on_progress, on_finished
        self._cancel_requested = False
        self._running = False
        self._pbar: _RunProgress | None = None
        meta: dict[str, Any] = {
            "model": model.source,
            "task": model.task,
            "input": prepared.base_name,
            "settings": settings.model_dump(mode="json"),
        }
        self._outputs = ResultLayers(viewer, prepared, meta)
        self.worker = reconstruction_worker(model, prepared.image, settings)
        self.worker.yielded.connect(self._on_event)
        self.worker.returned.connect(self._on_returned)
        self.worker.errored.connect(self._on_errored)
        self.worker.finished.connect(self._on_worker_finished)

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the worker has finished and the outcome is known."""
        return self._running

    @property
    def output_names(self) -> dict[str, str]:
        return self._outputs.names

    def start(self) -> None:
        self._running = True
        self._pbar = _RunProgress(total=0, desc="CVDM: starting", cancel_callback=self.cancel)
        self.worker.start()

    def cancel(self) -> None:
        """Stop the run within one network evaluation; the viewer is then restored."""
        if self._running and not self._cancel_requested:
            self._cancel_requested = True
            self.worker.quit()

    def _on_event(self, event: Progress | RunningMean) -> None:
        if self._cancel_requested or self.outcome is not None:
            return
        if isinstance(event, RunningMean):
            self._outputs.show_running_mean(event.plane, event.mean)
            return
        if self._on_progress is not None:
            self._on_progress(event)
        # napari's progress bars process Qt events while they redraw, so the run may finish inside these calls
        if self._pbar is not None and self._pbar.total != event.total:
            self._pbar.total = event.total
        if self._pbar is not None:
            self._pbar.set_description(f"CVDM: {event.stage}")
        if self._pbar is not None:
            self._pbar.update(event.done - self._pbar.n)

    def _on_returned(self, result: Reconstruction) -> None:
        self.layers = self._outputs.finish(result)
        self.outcome = "done"

    def _on_errored(self, exc: BaseException) -> None:
        self._outputs.rollback()
        self.outcome = "failed"
        notifications.show_error(error_message(exc, self.settings))

    def _on_worker_finished(self) -> None:
        if self.outcome is None:  # quit() before the result: nothing may stay behind
            self._outputs.rollback()
            self.outcome = "cancelled"
            notifications.show_info("CVDM reconstruction cancelled; the layers are as they were before the run.")
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._release_device()
        self._running = False
        if self._on_finished is not None:
            self._on_finished(self.outcome)

    def _release_device(self) -> None:
        """Move the network back to the CPU so a cached model never pins GPU memory."""
        param = next(self.model.network.parameters(), None)
        if param is None or param.device.type == "cpu":
            return
        import torch

        self.model.network.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
