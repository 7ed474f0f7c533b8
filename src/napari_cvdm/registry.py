"""Finding models: registered names (bundled in the package or downloaded with pooch), user models, file paths.

Every registered file is SHA-256 checked before use, whether it ships inside the package or comes from the
download cache.  Downloads go to the user cache (``NAPARI_CVDM_CACHE`` overrides it) from the project's release URL
(``NAPARI_CVDM_MODEL_URL`` overrides it, e.g. for a mirror); a file already in the cache with the right hash is used
without any network access, so copying ``.cvdm`` files into that folder is how an offline machine is set up.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ._version import __version__
from .model.files import SUFFIX, ModelFileError, TrainedModel, load_model_file

BUNDLED_DIR = Path(__file__).parent / "models"
DEFAULT_BASE_URL = f"https://github.com/napari-cvdm/napari-cvdm/releases/download/v{__version__}/"


@dataclass(frozen=True)
class RegisteredModel:
    """A model the project publishes: file name, SHA-256 and a one-line description."""

    name: str
    filename: str
    sha256: str
    description: str
    task: str = "super-resolution"  # "super-resolution" | "phase": lets pickers label models before download


# The trained default models (docs/models.md).  Filled in when a model is (re)trained: see benchmarks/README.md.
REGISTRY: dict[str, RegisteredModel] = {
    "cvdm-sr-widefield": RegisteredModel(
        "cvdm-sr-widefield",
        "cvdm-sr-widefield.cvdm",
        "7f20221e7d3e08396b9f41166e00a9489577735a4ad15cdc5db02a815b2f5088",
        "widefield → SIM super-resolution (2× finer grid), trained on simulated BioSR-like pairs",
        task="super-resolution",
    ),  # 9.2 MB, v3 weights (8000 steps + 4000 + 6000 with cosine decays, LD3 grids), calibrated at 3, 5, 7, 10 and
    # 20 steps, stated range PSF width 0.95–1.05× (measured, benchmarks/optics_tolerance.py)
    "cvdm-phase-twoshot": RegisteredModel(
        "cvdm-phase-twoshot",
        "cvdm-phase-twoshot.cvdm",
        "4cf5db2860f1274a0a4f7c915de47493eeb6e9d95d36aaeddd5ce5a019d99c25",
        "two-shot defocus (I(−d), I(+d)) → quantitative phase (rad), trained on simulated pairs",
        task="phase",
    ),  # 9.2 MB, v4 weights (on US-TIE, 8000 steps + 4000 + 6000 with cosine decays, LD3 grids), calibrated at 20
    # steps on 48 held-out pairs (pooled and 2 noise bins, the smoothed spread blended with the mean's coarse
    # structure), and at 5 and 10 steps on the same pairs; at 5, 10 and 20 steps also for set-ups resampled to its
    # own (38 of 48 randomised set-ups)
    "cvdm-sr-widefield-wide-optics": RegisteredModel(
        "cvdm-sr-widefield-wide-optics",
        "cvdm-sr-widefield-wide-optics.cvdm",
        "029644b3a3dc3cd61af72e1017c60e61a8cd56586d7f7e04cdcbb5fdf11d7281",
        "widefield → SIM super-resolution for a range of microscopes (NA 1.2–1.49, emission 0.45–0.70 µm, "
        "60–110 nm pixels), trained on simulated pairs with randomised optics and noise",
        task="super-resolution",
    ),  # 9.2 MB, v1: cvdm-sr-widefield v3 + 5000 steps on randomised optics, calibrated at 5, 7
    # and 10 steps
}


def cache_dir() -> Path:
    """Where downloaded models are kept (``NAPARI_CVDM_CACHE`` overrides the user cache directory)."""
    env = os.environ.get("NAPARI_CVDM_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("napari-cvdm"))


def base_url() -> str:
    url = os.environ.get("NAPARI_CVDM_MODEL_URL", DEFAULT_BASE_URL)
    return url if url.endswith("/") else url + "/"


def user_model_dir() -> Path:
    """Where fine-tuned models are saved and looked up (``NAPARI_CVDM_MODELS`` overrides it)."""
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


class _PoochProgress:
    """The tqdm-like object pooch reports download progress to, forwarding to ``callback(done, total)`` bytes."""

    def __init__(self, callback: Callable[[int, int], None]) -> None:
        self.callback, self.total, self.done = callback, 0, 0

    def update(self, n: int) -> None:
        self.done += n
        self.callback(self.done, self.total)

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass


def _check_hash(path: Path, entry: RegisteredModel) -> Path:
    import pooch

    digest = pooch.file_hash(str(path), alg="sha256")
    if digest != entry.sha256:
        raise ModelFileError(
            f"{path} does not match the registry (sha256 {digest[:12]}…, expected {entry.sha256[:12]}…): the file is "
            f"corrupted or was replaced. Delete it and fetch {entry.name!r} again, or reinstall napari-cvdm."
        )
    return path


def fetch_registered(entry: RegisteredModel, progress: Callable[[int, int], None] | None = None) -> Path:
    """The verified local file of a registered model: bundled if present, else cached, else downloaded."""
    import pooch
    import requests

    bundled = BUNDLED_DIR / entry.filename
    if bundled.is_file():
        return _check_hash(bundled, entry)
    folder = cache_dir()
    fetcher = pooch.create(
        path=folder, base_url=base_url(), registry={entry.filename: f"sha256:{entry.sha256}"}, retry_if_failed=1
    )
    url = base_url() + entry.filename
    try:
        path = fetcher.fetch(entry.filename, progressbar=_PoochProgress(progress) if progress else False)
    except ValueError as err:  # pooch: hash mismatch of the downloaded file
        raise ModelFileError(
            f"the download of {entry.name!r} from {url} is corrupted ({err}); nothing was saved. Try again later, or "
            "set NAPARI_CVDM_MODEL_URL to a mirror."
        ) from err
    except (requests.RequestException, OSError) as err:
        raise ModelFileError(
            f"could not download model {entry.name!r} from {url} ({type(err).__name__}). To work offline, copy "
            f"{entry.filename} into {folder} (or point NAPARI_CVDM_CACHE at a folder that has it), or pass the path "
            f"of a {SUFFIX} file instead of the name."
        ) from err
    return Path(path)


def resolve_model_path(name_or_path: str | os.PathLike, progress: Callable[[int, int], None] | None = None) -> Path:
    """The file behind a registered name, a user model name, or a path."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix == SUFFIX or path.exists() or os.sep in text:
        return path
    if text in REGISTRY:
        return fetch_registered(REGISTRY[text], progress)
    user = user_model_dir() / f"{text}{SUFFIX}"
    if user.is_file():
        return user
    known = ", ".join(list_models()) or "none installed"
    raise ModelFileError(
        f"no model named {text!r}. Known models: {known}. Pass a registered name or the path to a {SUFFIX} file."
    )


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> TrainedModel:
    """Load a model by registered name, user model name, or path to a ``.cvdm`` file.

    ``progress(done, total)`` reports download bytes when a registered model has to be fetched.
    """
    path = resolve_model_path(name_or_path, progress)
    model = load_model_file(path, device=device)
    if str(name_or_path) in REGISTRY:
        model.source = str(name_or_path)
    return model
