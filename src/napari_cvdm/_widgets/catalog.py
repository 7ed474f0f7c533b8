"""What the model picker shows: installed models with their task, read from file headers (no weights loaded).

Qt-free.  Headers and loaded models are cached per file (path, size, modification time), so re-opening the
picker or re-running is instant and an edited file is re-read.  After a run on a GPU the widget moves the
network back to the CPU, so the cache never pins GPU memory.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..model.files import SUFFIX, ModelFileError, TrainedModel, read_header
from ..model.metadata import ModelMetadata
from ..zoo import list_models, load_model, resolve_model_path, user_model_dir

TASK_LABELS = {"super-resolution": "super-resolution", "phase": "phase", "generic": "generic"}


def no_models_message() -> str:
    """Advice shown when no model is installed."""
    return (
        "No CVDM model is installed yet. Use “Load from file…” to pick a "
        f"{SUFFIX} file, or copy {SUFFIX} files into {user_model_dir()} "
        "(set NAPARI_CVDM_MODELS to use another folder), then press ↻."
    )


@dataclass(frozen=True)
class ModelEntry:
    """One picker entry: the value passed to ``load_model`` and what the widget needs before loading."""

    value: str
    label: str
    info: ModelMetadata

    @property
    def task(self) -> str:
        return self.info.task


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _read_info(key: tuple[str, int, int]) -> ModelMetadata:
    header = read_header(key[0])
    try:
        return ModelMetadata.model_validate(json.loads(header["metadata"]))
    except (KeyError, ValueError) as err:
        raise ModelFileError(f"{key[0]}: the model header is damaged or incomplete ({err}).") from err


def model_entry(name_or_path: str) -> ModelEntry:
    """Read one model's header (registered name, user model name or path); raises ``ModelFileError``."""
    path = resolve_model_path(name_or_path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    info = _read_info(_file_key(path))
    is_file = Path(name_or_path).suffix == SUFFIX
    name = f"{path.name} (file)" if is_file else str(name_or_path)
    scale = f" {info.scale_factor}×" if info.scale_factor > 1 else ""
    return ModelEntry(str(name_or_path), f"{name} — {TASK_LABELS[info.task]}{scale}", info)


def available_models(extra: Iterable[str] = ()) -> tuple[list[ModelEntry], list[str]]:
    """Entries for the installed models plus ``extra`` paths, and a message for each unreadable one."""
    entries, problems, seen = [], [], set()
    for value in [*list_models(), *extra]:
        if value in seen:
            continue
        seen.add(value)
        try:
            entries.append(model_entry(value))
        except ModelFileError as err:
            problems.append(str(err))
    return entries, problems


@functools.lru_cache(maxsize=2)
def _load(value: str, key: tuple[str, int, int]) -> TrainedModel:
    return load_model(value, device="cpu")


def get_model(name_or_path: str) -> TrainedModel:
    """Load (or reuse) the model behind a picker value; raises ``ModelFileError``."""
    path = resolve_model_path(name_or_path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    return _load(str(name_or_path), _file_key(path))
