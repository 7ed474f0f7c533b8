"""Cancellation and the one loop that drives every progress generator.

Every long job of napari-cvdm — sampling, reconstruction, training, LD3 grid learning, benchmarks — is a plain
Python generator that yields progress events and *returns* its result.  The napari widgets run such a generator in a
worker thread, the CLI and the Python API drive it with :func:`drive`, and tests drive it directly.  Closing the
generator stops the job between two of its events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")


class Cancelled(Exception):
    """Raised by :func:`drive` (and so by ``reconstruct`` / ``train``) when its cancel token is set."""


class CancelToken:
    """Thread-safe flag: call :meth:`cancel` from any thread to stop a run between two of its progress events."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Progress:
    """``done`` of ``total`` network evaluations; ``stage`` says which plane and tile."""

    done: int
    total: int
    stage: str = ""


def drive(
    gen: Generator[Any, None, _T],
    on_event: Callable[[Any], None] | None = None,
    *,
    cancel: CancelToken | None = None,
    cancelled_message: str | Callable[[], str] = "cancelled; nothing was changed",
) -> _T:
    """Run ``gen`` to its end, passing each event to ``on_event``, and return the generator's value.

    ``cancel`` is checked before every event: once set, the generator is closed (its ``finally`` blocks and
    ``GeneratorExit`` handlers run, e.g. training saves its checkpoint) and :class:`Cancelled` is raised with
    ``cancelled_message`` (a string, or a function called at that moment so it can say how far the job got).
    The generator is closed on every exit, exceptions included.
    """
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                gen.close()
                message = cancelled_message() if callable(cancelled_message) else cancelled_message
                raise Cancelled(message)
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            if on_event is not None:
                on_event(event)
    finally:
        gen.close()


def relay(gen: Generator[Any, None, _T], translate: Callable[[Any], Iterable[Any]]) -> Generator[Any, None, _T]:
    """Yield the events ``translate(event)`` gives for each of ``gen``'s events, then return ``gen``'s value.

    For a job made of sub-jobs: ``stats = yield from relay(sub_job, to_my_events)``, where ``to_my_events``
    returns (or yields) zero, one or more events of the outer job per event of the sub-job.  Closing the outer
    generator closes ``gen``.
    """
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            yield from translate(event)
    finally:
        gen.close()
