"""What the model picker shows: installed models with their task, read from file headers (no weights loaded).

:class:`ModelPicker` is the drop-down and “Load from file…” field of both dock widgets; the rest is Qt-free.
Nothing here touches the network: a registered model that is neither bundled nor in the download cache is
listed as "downloads on first use" and fetched by the widget in a worker thread when it is run.  Headers and
loaded models are cached per file (path, size, modification time), so re-opening the picker or re-running is
instant and an edited file is re-read.  After a run on a GPU the widget moves the network back to the CPU, so
the cache never pins GPU memory.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model.files import SUFFIX, ModelFileError, TrainedModel, read_header
from ..model.metadata import ModelMetadata
from ..registry import BUNDLED_DIR, REGISTRY, cache_dir, list_models, load_model, resolve_model_path, user_model_dir

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
    """One picker entry: the value passed to ``load_model`` and its header (None: not downloaded yet)."""

    value: str
    label: str
    info: ModelMetadata | None

    @property
    def task(self) -> str:
        """The model's task; for a model not downloaded yet, the registry's task if it has one, else "unknown"."""
        if self.info is not None:
            return self.info.task
        return getattr(REGISTRY.get(self.value), "task", None) or "unknown"

    @property
    def downloaded(self) -> bool:
        return self.info is not None


def local_path(name_or_path: str) -> Path | None:
    """The model's file if it is on this machine now (bundled, cached, user folder or a path); never downloads."""
    registered = REGISTRY.get(str(name_or_path))
    if registered is not None:
        for folder in (BUNDLED_DIR, cache_dir()):
            if (folder / registered.filename).is_file():
                return folder / registered.filename
        return None
    path = resolve_model_path(name_or_path)
    return path if path.is_file() else None


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
    path = local_path(name_or_path)
    if path is None and str(name_or_path) in REGISTRY:
        about = REGISTRY[str(name_or_path)].description
        return ModelEntry(str(name_or_path), f"{name_or_path} — {about} (downloads on first use)", None)
    if path is None:
        raise ModelFileError(f"model file not found: {resolve_model_path(name_or_path)}")
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
    """Load (or reuse) the model behind a picker value that is on disk; raises ``ModelFileError``."""
    path = local_path(name_or_path)
    if path is None:
        raise ModelFileError(f"model {name_or_path!r} is not downloaded yet")
    return _load(str(name_or_path), _file_key(path))


class ModelPicker:
    """A model drop-down and its “Load from file…” field, as both dock widgets use them (magicgui widgets).

    ``combo`` lists the installed models accepted by ``keep``, plus the picked file and a selected path; picking
    a file selects it in ``combo`` (a file that is not a model gives one error notification, nothing else).
    """

    def __init__(self, label: str, keep: Callable[[ModelEntry], bool] | None = None) -> None:
        from magicgui.widgets import ComboBox, FileEdit

        self._keep = keep or (lambda _entry: True)
        self.file = FileEdit(label="Load from file…", mode="r", filter=f"*{SUFFIX}")
        self.combo = ComboBox(label=label, choices=self.choices)
        self.file.changed.connect(self._on_file)

    def choices(self, widget: Any = None) -> list[tuple[str, str]]:
        """Installed models, plus the file picked with “Load from file…” and the selected file, if any."""
        files = [str(self.file.value)]
        if widget is not None and isinstance(widget.value, str):
            files.append(widget.value)
        files = [f for f in files if f.endswith(SUFFIX) and Path(f).is_file()]
        entries, _ = available_models(files)
        return [(entry.label, entry.value) for entry in entries if self._keep(entry)]

    def entry(self) -> ModelEntry | None:
        """The picked model's entry; None when nothing is picked or its file has become unreadable."""
        if self.combo.value is None:
            return None
        try:
            return model_entry(self.combo.value)
        except ModelFileError:
            return None

    def _on_file(self, path: Any) -> None:
        if path is None or str(path) in ("", ".") or not Path(path).is_file():
            return
        try:
            entry = model_entry(str(path))
        except ModelFileError as err:
            from napari.utils import notifications

            notifications.show_error(str(err))
            return
        self.combo.reset_choices()
        self.combo.value = entry.value
