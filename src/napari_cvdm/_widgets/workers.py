"""Running :func:`napari_cvdm.iter_reconstruct` off the GUI thread, and turning its failures into advice.

The worker is a ``superqt`` generator worker (napari's own adds a second, traceback-style error popup; we show
one clear message instead).  It yields the core's ``Progress`` and ``RunningMean`` events and returns the
``Reconstruction``.  ``worker.quit()`` cancels: the worker stops at its next yield — the core yields after
every network evaluation — and the generators are closed when the worker finishes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
from superqt.utils import GeneratorWorker, create_worker

from .._runtime import Progress
from ..inference.reconstruct import Reconstruction, RunningMean, iter_reconstruct
from ..model.files import ModelFileError, TrainedModel
from ..settings import ReconstructSettings, settings_problems
from ..tasks import InputError

Event = Progress | RunningMean


def _drive(gen: Generator[Any, None, Any]) -> Generator[Any, None, Any]:
    """Re-yield the core generator's events and return its result (runs in the worker thread)."""
    return (yield from gen)


def reconstruction_worker(
    model: TrainedModel, image: np.ndarray, settings: ReconstructSettings
) -> GeneratorWorker[Event, None, Reconstruction]:
    """An unstarted worker that reconstructs ``image``; connect its signals, then call ``start()``.

    Signals: ``yielded(Progress | RunningMean)``, ``returned(Reconstruction)`` (not emitted after ``quit()``),
    ``errored(Exception)``, ``finished()`` (always, last).  After ``quit()`` the worker abandons the generator at
    its next yield; ``finished`` then closes the core generator so nothing is left suspended.
    """
    return generator_worker(iter_reconstruct(model, image, settings))


def generator_worker(core: Generator[Any, None, Any]) -> GeneratorWorker[Any, None, Any]:
    """An unstarted worker that re-yields ``core``'s events and returns its result (a reconstruction, a plane job);
    ``core`` is closed when the worker finishes, so a cancelled job is not left suspended."""
    worker = create_worker(_drive, core, _start_thread=False, _ignore_errors=True)
    worker.finished.connect(core.close)
    return worker


def _download(name: str) -> Generator[Progress, None, Path]:
    """Fetch a registered model in a helper thread and re-yield its byte progress (runs in the worker thread).

    pooch cannot be interrupted, so after ``quit()`` the helper thread finishes the download on its own; the
    file lands in the cache (hash-checked) and the next run uses it.
    """
    from ..registry import resolve_model_path

    updates: queue.Queue[tuple[int, int] | None] = queue.Queue()
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["path"] = resolve_model_path(name, progress=lambda done, total: updates.put((done, total)))
        except Exception as err:  # noqa: BLE001 - handed to the worker thread, which raises it
            outcome["error"] = err
        finally:
            updates.put(None)

    threading.Thread(target=fetch, name=f"napari-cvdm download {name}", daemon=True).start()
    while (update := updates.get()) is not None:
        done, total = update
        yield Progress(done, max(total, done, 1), f"downloading {name} ({done / 1e6:.1f} MB)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["path"]


def download_worker(name: str) -> GeneratorWorker[Progress, None, Path]:
    """An unstarted worker that downloads registered model ``name``; yields byte ``Progress``, returns the path."""
    return create_worker(_download, name, _start_thread=False, _ignore_errors=True)


def release_device_memory(*networks: Any) -> None:
    """Move ``networks`` (None entries skipped) to the CPU, drop what Python still holds, and on CUDA hand the
    memory PyTorch caches back to the driver, so napari does not keep GPU memory after a run."""
    import gc

    import torch

    for network in networks:
        if network is not None:
            network.to("cpu")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
    )


def error_message(exc: BaseException, settings: ReconstructSettings | Any | None = None) -> str:
    """One notification-ready sentence for a failed run: what went wrong and what to do."""
    if is_out_of_memory(exc):
        tile = getattr(settings, "tile_size", None)
        hint = f"a smaller tile size than {tile}" if tile else "a tile size (e.g. 256)"
        return (
            f"CVDM ran out of memory ({type(exc).__name__}). Set {hint}, lower the number of samples or set a "
            "batch size, or run on another device."
        )
    if isinstance(exc, (InputError, ModelFileError)):
        return str(exc)
    if isinstance(exc, ValueError) and "device" in str(exc):
        return f"{exc}"
    return f"CVDM reconstruction failed: {type(exc).__name__}: {exc}"


def refusal_message(err: Exception) -> str:
    """The notification for a run a widget refuses: the error's own advice, or the invalid settings listed."""
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        return f"invalid setting: {settings_problems(err)}"
    return str(err)
