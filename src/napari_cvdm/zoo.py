"""Finding models by name: registered models (shipped in the package), the user's own models, or a file path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .model.files import SUFFIX, ModelFileError, TrainedModel, load_model_file, sha256_of

BUNDLED_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class RegisteredModel:
    """A model the project publishes: file name, SHA-256 and a one-line description."""

    name: str
    filename: str
    sha256: str
    description: str


# Filled by the trained default models (see docs/models.md).  Every file is hash-checked before use.
REGISTRY: dict[str, RegisteredModel] = {}


def user_model_dir() -> Path:
    """Where fine-tuned models are saved and looked up (override with NAPARI_CVDM_MODELS)."""
    env = os.environ.get("NAPARI_CVDM_MODELS")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-cvdm")) / "models"


def list_models() -> list[str]:
    """Registered model names followed by the user's own models."""
    names = list(REGISTRY)
    folder = user_model_dir()
    if folder.is_dir():
        names += sorted(p.stem for p in folder.glob(f"*{SUFFIX}") if p.stem not in REGISTRY)
    return names


def _registered_path(entry: RegisteredModel) -> Path:
    path = BUNDLED_DIR / entry.filename
    if not path.is_file():
        raise ModelFileError(f"registered model {entry.name!r} is not installed (expected {path})")
    digest = sha256_of(path)
    if digest != entry.sha256:
        raise ModelFileError(
            f"{path} does not match the registry (sha256 {digest[:12]}…, expected {entry.sha256[:12]}…): the file "
            "is corrupted or was replaced. Reinstall napari-cvdm."
        )
    return path


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """The file behind a registered name, a user model name, or a path."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix == SUFFIX or path.exists() or os.sep in text:
        return path
    if text in REGISTRY:
        return _registered_path(REGISTRY[text])
    user = user_model_dir() / f"{text}{SUFFIX}"
    if user.is_file():
        return user
    known = ", ".join(list_models()) or "none installed"
    raise ModelFileError(
        f"no model named {text!r}. Known models: {known}. Pass a registered name or the path to a {SUFFIX} file."
    )


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedModel:
    """Load a model by registered name, user model name, or path to a ``.cvdm`` file."""
    path = resolve_model_path(name_or_path)
    model = load_model_file(path, device=device)
    if str(name_or_path) in REGISTRY:
        model.source = str(name_or_path)
    return model
