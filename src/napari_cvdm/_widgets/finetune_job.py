"""One fine-tuning run off the GUI thread: the worker around :func:`napari_cvdm.training.loop.iter_train`, and its job.

The worker first reads and normalises the data (pair by pair, with progress; Stop ends the run there, nothing
saved), then trains: it re-yields the core's :class:`TrainProgress` and, every K steps, a :class:`Preview` — a
reconstruction of one validation patch with the current averaged (EMA) network, computed while the core waits
between steps.
Stop is cooperative: :meth:`FineTuneJob.cancel` sets the core's stop token, the core finishes its step, writes the
model file and checkpoint, and returns the model as usual, so a stopped run is saved like a finished one.

Outcomes: ``"done"`` (all steps), ``"stopped"`` (saved early, resumable), ``"failed"`` (one error notification).
Afterwards the network is moved off the GPU and CUDA's cache is emptied, so napari does not keep GPU memory.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils import notifications
from superqt.utils import GeneratorWorker, create_worker

from .._runtime import CancelToken, Progress, relay
from ..inference.reconstruct import reconstruct
from ..model.cvdm import CVDM
from ..model.files import ModelFileError, TrainedModel
from ..model.metadata import ModelMetadata
from ..settings import TrainSettings
from ..tasks import InputError
from ..training.checkpoint import CheckpointError
from ..training.data import DataError, PairedDataset
from ..training.loop import TrainProgress
from ..training.optics import (
    pairs_pixel_um,
    subtract_offset,
    with_data_noise,
    with_data_optics,
    with_data_resolution,
)
from ..training.recalibrate import iter_train_recalibrated
from .finetune_data import RawPairs, patch_placement, preview_pair
from .job import WorkerJob
from .workers import is_out_of_memory, release_device_memory


@dataclass
class Preview:
    """The current model's reconstruction (mean, std; physical units) of the preview patch after ``step``."""

    step: int
    mean: np.ndarray
    std: np.ndarray


@dataclass
class PreviewSpec:
    """What to preview and how often: a raw input crop, the model's metadata, every ``every`` steps."""

    image: np.ndarray
    info: ModelMetadata
    every: int
    device: str = "cpu"
    n_samples: int = 2

    def run(self, network: CVDM, step: int) -> Preview:
        """Reconstruct the patch with ``network``; ``reconstruct`` leaves the network being trained as it was
        (device, memory layout, train/eval mode, weights)."""
        model = TrainedModel(network=network, info=self.info)
        result = reconstruct(model, self.image, self.n_samples, seed=0, device=self.device)
        return Preview(step, result.mean, np.sqrt(result.variance))


def training_events(
    core: Generator[TrainProgress | Progress, None, TrainedModel], preview: PreviewSpec | None
) -> Generator[TrainProgress | Preview, None, TrainedModel]:
    """Re-yield training progress and previews; return the saved model (runs in the worker thread).

    Closing it (an abandoned worker) closes ``core``, which still saves the finished steps.
    """

    def with_preview(event: TrainProgress | Progress) -> Iterator[TrainProgress | Progress | Preview]:
        nonlocal preview
        yield event
        if not isinstance(event, TrainProgress):  # the recalibration after the last step
            return
        due = preview is not None and (event.step % preview.every == 0 or event.step == event.total)
        if due and event.ema_network is not None:
            try:
                yield preview.run(event.ema_network, event.step)
            except InputError:  # e.g. a blank patch: skip previews, keep training
                preview = None

    return (yield from relay(core, with_preview))


@dataclass
class Prepared:
    """The data of a run, read and normalised in the worker thread, with the preview and where to draw it."""

    data: PairedDataset
    info: ModelMetadata  # the fine-tuned model's metadata, stating the pairs' optics
    preview: PreviewSpec | None = None
    target: np.ndarray | None = None  # the preview patch's target
    where: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 1.0), (0.0, 0.0))


def prepare_data(
    read: Generator[Progress, None, RawPairs],
    info: ModelMetadata,
    settings: TrainSettings,
    preview_every: int,
    target_layer: Any | None,
    optics: dict[str, Any] | None = None,
) -> Generator[Progress, None, Prepared]:
    """Read the pairs (``read``: :func:`.finetune_data.iter_pairs_from_layers` or ``…_from_folders``), subtract
    the camera offset, state their optics in ``info`` (the fine-tuned model's metadata: ``optics`` as typed, the
    pixel size else from the files or layer; :func:`~napari_cvdm.training.optics.with_data_optics`), normalise
    them with it and pick the preview patch; runs in the worker thread, a progress event after each pair."""
    optics = dict(optics or {})
    raw = yield from read
    offset = optics.pop("camera_offset", None)
    raw = subtract_offset(raw, offset or 0.0)
    raw = replace(raw, input_pixel_um=pairs_pixel_um(raw, optics.get("pixel_size_um")))
    info = with_data_optics(info, {**optics, "pixel_size_um": raw.input_pixel_um}, raw.source)
    info = with_data_noise(info, raw.inputs, offset_known=bool(offset))
    info = with_data_resolution(info, raw.inputs)
    yield Progress(len(raw.inputs), len(raw.inputs), f"preparing {len(raw.inputs)} pairs")
    data = PairedDataset.from_raw(raw, info)
    if preview_every <= 0:
        return Prepared(data, info)
    crop, target, (row, col) = preview_pair(
        raw, settings.val_fraction, settings.seed, settings.patch_size, info.scale_factor
    )
    spec = PreviewSpec(crop, info, preview_every, settings.device)
    return Prepared(data, info, spec, target, patch_placement(target_layer, row, col))  # drawn where the patch is


def finetune_events(
    prepare: Generator[Progress, None, Prepared],
    train: Callable[[Prepared], Generator[TrainProgress | Progress, None, TrainedModel]],
    stop: CancelToken,
) -> Generator[Progress | Prepared | TrainProgress | Preview, None, TrainedModel | None]:
    """Read and prepare the data (re-yielding its progress), yield the :class:`Prepared` data, then train and
    return the saved model; Stop while the data are read ends the run there, with nothing trained (None).
    Runs in the worker thread, so napari stays responsive however long the data take to read."""
    try:
        while True:
            if stop.cancelled:
                return None
            try:
                event = next(prepare)
            except StopIteration as done:
                prepared = done.value
                break
            yield event
    finally:
        prepare.close()
    yield prepared
    return (yield from training_events(train(prepared), prepared.preview))


def training_worker(
    prepare: Generator[Progress, None, Prepared],
    network: CVDM,
    settings: TrainSettings,
    output: Path,
    resume: bool,
    stop: CancelToken,
) -> GeneratorWorker[Any, None, TrainedModel | None]:
    """An unstarted worker that prepares the data, fine-tunes ``network`` and writes ``output`` with the prepared
    metadata; set ``stop`` to stop (and save, once training has begun)."""

    def train(prepared: Prepared) -> Generator[TrainProgress | Progress, None, TrainedModel]:
        # training, then the recalibration of the uncertainty on the run's validation pairs
        return iter_train_recalibrated(
            network, prepared.info, prepared.data, settings, output, resume=resume, stop=stop
        )

    return create_worker(finetune_events, prepare, train, stop, _start_thread=False, _ignore_errors=True)


def training_error_message(exc: BaseException, settings: TrainSettings) -> str:
    """One notification-ready sentence for a failed fine-tuning run."""
    if is_out_of_memory(exc):
        return (
            f"fine-tuning ran out of memory ({type(exc).__name__}) with batch {settings.batch_size} × "
            f"{settings.patch_size}² patches; lower the batch size or the patch size, or use another device. "
            "The last checkpoint (if any) is kept."
        )
    if isinstance(exc, (InputError, ModelFileError, DataError, CheckpointError, FloatingPointError)):
        return str(exc)
    return f"CVDM fine-tuning failed: {type(exc).__name__}: {exc}"


class FineTuneJob(WorkerJob):
    """Runs a fine-tuning in a worker thread; progress, loss and previews go to callbacks, Stop saves."""

    description = "CVDM fine-tuning"

    def __init__(
        self,
        network: CVDM,
        prepare: Generator[Progress, None, Prepared],
        settings: TrainSettings,
        output: Path,
        resume: bool = False,
        on_progress: Callable[[TrainProgress], None] | None = None,
        on_preview: Callable[[Preview], None] | None = None,
        on_finished: Callable[[str], None] | None = None,
        on_data: Callable[[Progress | Prepared], None] | None = None,
    ) -> None:
        self.settings, self.output = settings, output
        self.model: TrainedModel | None = None
        self.stop_token = CancelToken()
        self._on_train_progress, self._on_preview, self._on_data = on_progress, on_preview, on_data
        self._network: CVDM | None = network
        worker = training_worker(prepare, network, settings, output, resume, self.stop_token)
        super().__init__(worker, None, on_finished)

    @property
    def stopping(self) -> bool:
        return self.stop_token.cancelled

    def cancel(self) -> None:
        """Stop after the current step; the model and checkpoint are then saved and the run ends as "stopped"."""
        if self._running and not self.stop_token.cancelled:
            self.stop_token.cancel()
            if self._pbar is not None:
                self._pbar.set_description(f"{self.description}: stopping after this step, saving…")

    def detach(self) -> None:
        self._on_train_progress = self._on_preview = self._on_data = None
        super().detach()

    def _on_event(self, event: Any) -> None:
        if self.outcome is not None:
            return
        if isinstance(event, Preview):
            if self._on_preview is not None:
                self._on_preview(event)
            return
        if isinstance(event, (Progress, Prepared)):  # reading the data, then the data read
            if self._on_data is not None:
                self._on_data(event)
            if isinstance(event, Progress) and not self.stop_token.cancelled:
                super()._on_event(event)
            return
        if self._on_train_progress is not None:
            self._on_train_progress(event)
        if not self.stop_token.cancelled:
            super()._on_event(Progress(event.step, event.total, f"step {event.step}/{event.total}"))

    def _on_returned(self, result: TrainedModel | None) -> None:
        self.model = result  # None: stopped while the data were read, before the first step
        self.outcome = "stopped" if result is None or result.info.training.get("stopped_early") else "done"

    def _on_errored(self, exc: BaseException) -> None:
        self.outcome = "failed"
        notifications.show_error(training_error_message(exc, self.settings))

    def _cleanup(self) -> None:
        """Release the networks and, on CUDA, the memory PyTorch caches (the model file is what is kept)."""
        network, self._network = self._network, None
        release_device_memory(network, self.model.network if self.model is not None else None)


PREVIEW_NAMES = ("CVDM fine-tuning preview", "CVDM fine-tuning preview target")


def show_preview(
    viewer: Any,
    preview: Preview,
    target: np.ndarray | None,
    scale: tuple[float, float] = (1.0, 1.0),
    translate: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Add or update the preview layer where the patch lies in the world (``scale``, ``translate`` of its first
    pixel), and the target patch to the right of it.  Layers left by an earlier run are updated in place: data,
    placement and contrast all follow the current run."""
    from .outputs import robust_limits

    meta = {"napari_cvdm": {"output": "finetune-preview", "step": preview.step}}
    shift = ((preview.mean.shape[-1] * 9 // 8) * scale[1]) if target is not None else 0.0
    shown = [(PREVIEW_NAMES[0], preview.mean, translate)]
    if target is not None:
        shown.append((PREVIEW_NAMES[1], target, (translate[0], translate[1] + shift)))
    for name, data, where in shown:
        if name in viewer.layers:
            layer = viewer.layers[name]
            layer.data, layer.metadata, layer.scale, layer.translate = data, meta, scale, where
        else:
            layer = viewer.add_image(data, name=name, metadata=meta, colormap="gray", scale=scale, translate=where)
        layer.contrast_limits = robust_limits(data)


def format_seconds(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"
