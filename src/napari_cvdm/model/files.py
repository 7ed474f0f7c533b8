"""Model files: one ``.cvdm`` file per model = safetensors weights + a JSON header.

The safetensors header's metadata holds ``format`` (always ``napari-cvdm-model``), ``format_version``,
``config`` (the :class:`CVDMConfig` as JSON), ``metadata`` (the :class:`ModelMetadata` as JSON) and the package
version that wrote it.  No pickle anywhere: loading a file never executes code from it.  Writes are atomic
(:func:`write_atomic`: temporary file, fsync, rename, fsync of the folder), so an interrupted save — a crash, a full
disk, a power cut — never leaves a corrupt model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .cvdm import CVDM, CVDMConfig
from .metadata import ModelMetadata

FORMAT = "napari-cvdm-model"
FORMAT_VERSION = 1
SUFFIX = ".cvdm"


class ModelFileError(ValueError):
    """A model file that cannot be used, with the reason and the fix in its message."""


@dataclass
class TrainedModel:
    """A CVDM network with the facts needed to apply it (what :func:`napari_cvdm.load_model` returns)."""

    network: CVDM
    info: ModelMetadata
    source: str = ""
    sha256: str | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """The model's header as a plain dict (task, pixel sizes, scale factor, wavelength, normalisation...)."""
        meta = self.info.model_dump(mode="json")
        meta["output_pixel_um"] = self.info.output_pixel_um
        meta["format_version"] = FORMAT_VERSION
        meta["architecture"] = self.network.config.model_dump(mode="json")
        meta["parameters"] = self.network.n_parameters()
        return meta

    @property
    def task(self) -> str:
        return self.info.task

    def to(self, device: torch.device | str) -> TrainedModel:
        self.network.to(device)
        return self


def _package_version() -> str:
    """The installed napari-cvdm version, recorded in every model file (read from the package's metadata, so
    that model/ imports nothing of the package outside itself)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-cvdm")
    except PackageNotFoundError:
        return "unknown"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows cannot open folders and needs no such step)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a safetensors file atomically: a temporary file in the same folder, flushed to disk (fsync), then
    renamed over ``path``.  A crash at any moment leaves either the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb+") as fh:  # the data must be on disk before the rename makes it the file
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; models and checkpoints are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_folder(path.parent)
    return path


def save_model(path: str | os.PathLike, network: CVDM, info: ModelMetadata) -> Path:
    """Write ``network`` and ``info`` to ``path`` atomically; returns the path."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": network.config.model_dump_json(),
        "metadata": info.model_dump_json(),
        "napari_cvdm_version": _package_version(),
    }
    return write_atomic(path, tensors, header)


def read_header(path: str | os.PathLike) -> dict[str, str]:
    """The header of a model file, after checking that it is one of ours and of a version we can read."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}. Check the path, or use a registered model name.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(
            f"{path} is not a napari-cvdm model file (it is not a readable safetensors file: {err}). "
            f"Model files end in {SUFFIX} and are written by napari-cvdm training or downloaded from the registry."
        ) from err
    if header.get("format") != FORMAT:
        raise ModelFileError(
            f"{path} is a safetensors file but not a napari-cvdm model (its header has no "
            f"format={FORMAT!r}). Use a file written by napari-cvdm."
        )
    try:
        version = int(header.get("format_version", ""))
    except ValueError as err:
        raise ModelFileError(f"{path}: unreadable format_version {header.get('format_version')!r}") from err
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses model-file format {version}, newer than this napari-cvdm reads ({FORMAT_VERSION}). "
            f"Upgrade napari-cvdm (pip install -U napari-cvdm)."
        )
    return header


def config_from_header(text: str) -> dict:
    """The architecture stored in a header; files written before the exact schedule existed use a separate τ."""
    config = json.loads(text)
    config.setdefault("time_parameterisation", "separate")
    return config


def load_model_file(path: str | os.PathLike, device: torch.device | str = "cpu") -> TrainedModel:
    """Load a ``.cvdm`` file; raises :class:`ModelFileError` saying what is wrong."""
    path = Path(path)
    header = read_header(path)
    try:
        config = CVDMConfig.model_validate(config_from_header(header["config"]))
        info = ModelMetadata.model_validate(json.loads(header["metadata"]))
    except (KeyError, json.JSONDecodeError, ValidationError) as err:
        raise ModelFileError(f"{path}: the model header is damaged or incomplete ({err}).") from err
    network = CVDM(config)
    state = {}
    with safe_open(str(path), framework="pt") as fh:
        for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
            state[key] = fh.get_tensor(key)
    missing, unexpected = (
        network.state_dict().keys() - state.keys(),
        state.keys() - network.state_dict().keys(),
    )
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: the weights do not match the architecture in its header "
            f"(missing: {sorted(missing)[:5]}, unexpected: {sorted(unexpected)[:5]}). The file is damaged."
        )
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelFileError(f"{path}: the weights do not fit the architecture ({err}).") from err
    network.eval()
    return TrainedModel(network=network.to(device), info=info, source=str(path), sha256=sha256_of(path))
