"""Training checkpoints for exact, crash-safe resume: ``<output stem>.ckpt`` next to the model file.

A checkpoint is a safetensors file (no pickle: reading one never runs code from it) holding every tensor of the
training state — network weights, EMA weights, Adam's per-parameter ``exp_avg``/``exp_avg_sq``/``step``, the
dedicated torch generator of each process, the global torch RNG, the loss history — and one JSON header entry with
the rest: step, settings, fingerprints (data, architecture, number of processes), Adam's hyper-parameters, the
learning-rate scheduler, each process's numpy ``Generator`` state, the EMA update count and the seconds spent.

Writes are atomic (:func:`napari_cvdm.model.files.write_atomic`: temporary file in the same folder, fsync, then
``os.replace``), so a crash, a full disk or a power cut during a write leaves the previous checkpoint untouched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .._version import __version__
from ..model.files import write_atomic
from ..settings import TrainSettings, derived_warmup

FORMAT = "napari-cvdm-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".ckpt"
# settings that may differ on resume without changing the optimisation trajectory (device: same result only on
# the same kind of device)
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "val_every", "val_batches", "device"})


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed, with the reason and the fix in its message."""


def checkpoint_path(output: str | os.PathLike) -> Path:
    """Where the checkpoint of the model file ``output`` lives: same folder and stem, suffix ``.ckpt``."""
    return Path(output).with_suffix(SUFFIX)


@dataclass
class TrainState:
    """Everything needed to continue training bit-exactly after ``step`` steps."""

    step: int
    settings: dict[str, Any]
    fingerprint: dict[str, Any]
    network: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    ema_updates: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    numpy_rng: list[dict[str, Any]]  # one bit-generator state per process (rank)
    torch_rng: list[torch.Tensor]  # one generator state per process (rank)
    global_torch_rng: torch.Tensor
    seconds: float = 0.0
    losses: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 5, dtype=torch.float64))
    val_losses: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.float64))
    extra: dict[str, Any] = field(default_factory=dict)


def _tensors(state: TrainState) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten ``state`` into safetensors tensors and a JSON-able header."""
    tensors: dict[str, torch.Tensor] = {f"network/{k}": v for k, v in state.network.items()}
    if state.ema is not None:
        tensors.update({f"ema/{k}": v for k, v in state.ema.items()})
    optim_json: dict[str, Any] = {"param_groups": state.optimizer["param_groups"], "state": {}}
    for index, entries in state.optimizer["state"].items():
        optim_json["state"][str(index)] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{name}"] = value
            else:
                optim_json["state"][str(index)][name] = value
    for rank, gen_state in enumerate(state.torch_rng):
        tensors[f"rng/torch/{rank}"] = gen_state
    tensors["rng/global_torch"] = state.global_torch_rng
    tensors["history/losses"] = state.losses
    tensors["history/val_losses"] = state.val_losses
    header = {
        "step": state.step,
        "settings": state.settings,
        "fingerprint": state.fingerprint,
        "ema_updates": state.ema_updates,
        "optimizer": optim_json,
        "scheduler": state.scheduler,
        "numpy_rng": state.numpy_rng,
        "seconds": state.seconds,
        "has_ema": state.ema is not None,
        "extra": state.extra,
    }
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, header


def write_checkpoint(path: str | os.PathLike, state: TrainState) -> Path:
    """Write ``state`` to ``path`` atomically; returns the path."""
    tensors, header = _tensors(state)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "state": json.dumps(header),
        "napari_cvdm_version": __version__,
    }
    return write_atomic(path, tensors, metadata)


def checkpoint_settings(path: str | os.PathLike) -> dict[str, Any] | None:
    """The training settings stored in a checkpoint (header only, no tensors read); None if unreadable."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
        return json.loads(meta["state"])["settings"] if meta.get("format") == FORMAT else None
    except (SafetensorError, OSError, ValueError, KeyError):
        return None


def _tupled(group: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples (Adam's ``betas``) into lists; give them back as tuples, except the parameter list."""
    return {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}


def read_checkpoint(path: str | os.PathLike) -> TrainState:
    """Read a checkpoint (tensors on the CPU; ``load_state_dict`` moves them); raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train without resume to start from the beginning")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({err}); delete it to start over") from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a napari-cvdm training checkpoint (no format={FORMAT!r} header)")
    if int(meta.get("format_version", "0")) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer napari-cvdm; upgrade (pip install -U napari-cvdm)")
    try:
        header = json.loads(meta["state"])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: the checkpoint header is damaged ({err}); delete it to start over") from err

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    optim_state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in header["optimizer"]["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            optim_state.setdefault(int(index), {})[name] = value
    ranks = sorted(int(k.rsplit("/", 1)[1]) for k in tensors if k.startswith("rng/torch/"))
    return TrainState(
        step=int(header["step"]),
        settings=header["settings"],
        fingerprint=header["fingerprint"],
        network=group("network/"),
        ema=group("ema/") if header.get("has_ema") else None,
        ema_updates=int(header["ema_updates"]),
        optimizer={"state": optim_state, "param_groups": [_tupled(g) for g in header["optimizer"]["param_groups"]]},
        scheduler=header["scheduler"],
        numpy_rng=header["numpy_rng"],
        torch_rng=[tensors[f"rng/torch/{r}"] for r in ranks],
        global_torch_rng=tensors["rng/global_torch"],
        seconds=float(header.get("seconds", 0.0)),
        losses=tensors.get("history/losses", torch.zeros(0, 5, dtype=torch.float64)),
        val_losses=tensors.get("history/val_losses", torch.zeros(0, 2, dtype=torch.float64)),
        extra=header.get("extra", {}),
    )


def settings_changes(stored: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """The setting changes between a checkpoint's ``stored`` settings and a resume's that would change training.

    A setting missing from ``stored`` was added after the checkpoint was written, and had its default then.  An
    automatic warm-up (``warmup_steps=None``) in ``settings`` keeps the checkpoint's, as the trainer does.
    """
    stored = {**TrainSettings().model_dump(mode="json"), **stored}
    if stored.get("warmup_steps") is None and isinstance(stored.get("steps"), int):
        stored["warmup_steps"] = derived_warmup(stored["steps"])
    settings = dict(settings)
    if settings.get("warmup_steps") is None:
        settings["warmup_steps"] = stored["warmup_steps"]
    problems = []
    for key in sorted(set(settings) | set(stored)):
        if key in RESUMABLE_CHANGES and not (key == "steps" and settings.get("lr_decay") == "cosine"):
            continue  # (a cosine decay ends at the last step: changing steps would change every later rate)
        old, new = stored.get(key), settings.get(key)
        if old != new:
            problems.append(f"{key}: checkpoint {old!r}, now {new!r}")
    return problems


def check_compatible(
    state: TrainState, settings: dict[str, Any], fingerprint: dict[str, Any], path: str | os.PathLike
) -> None:
    """Refuse to resume from ``state`` when the run's settings or data differ in a way that changes training."""
    problems = settings_changes(state.settings, settings)
    labels = {"data": "training data", "architecture": "network architecture", "world_size": "number of processes"}
    for key, label in labels.items():
        old, new = state.fingerprint.get(key), fingerprint.get(key)
        if old != new:
            detail = f" ({old} → {new})" if key == "world_size" else ""
            problems.append(f"the {label} differs{detail}")
    if problems:
        raise CheckpointError(resume_refusal(problems, path))


def resume_refusal(problems: list[str], path: str | os.PathLike) -> str:
    """The message that refuses a resume from ``path`` because of ``problems``, with the two ways out."""
    return (
        f"cannot resume from {path}: " + "; ".join(problems) + ". Resume with the same data and settings "
        "(only checkpoint_every, val_every, val_batches, device and — with a constant learning rate — steps may "
        f"change), or train without resume to start over (this overwrites {Path(path).name})."
    )
