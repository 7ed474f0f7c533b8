"""Training a CVDM on paired data (from scratch or from an existing model): one loop for the CLI, GUI and tests.

:func:`iter_train` is a generator that yields a :class:`TrainProgress` after every step (losses per term, and the
validation loss when computed) and returns the trained :class:`TrainedModel`; closing it stops training cleanly.
The model file is written atomically every ``checkpoint_every`` steps and at the end, with an exponential moving
average (EMA) of the weights, which samples better than the raw weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import PairedDataset
from .device import resolve_device
from .model.cvdm import CVDM
from .model.files import TrainedModel, save_model
from .model.metadata import ModelMetadata
from .predict import Cancelled, CancelToken
from .settings import TrainJob, TrainSettings


@dataclass
class TrainProgress:
    """Where training stands after ``step`` of ``total`` steps."""

    step: int
    total: int
    losses: dict[str, float]
    val_loss: float | None = None
    seconds: float = 0.0
    checkpoint: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def eta_seconds(self) -> float:
        return self.seconds / max(self.step, 1) * (self.total - self.step)


class _EMA:
    """Exponential moving average of the weights, with warm-up: decay_k = min(decay, (1 + k)/(10 + k)).

    Without the warm-up an early checkpoint would still be mostly the random initial weights (0.999^500 ≈ 0.6).
    """

    def __init__(self, network: CVDM, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.shadow = copy.deepcopy(network).eval() if decay > 0 else None

    @torch.no_grad()
    def update(self, network: CVDM) -> None:
        if self.shadow is None:
            return
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow.parameters(), network.parameters(), strict=True):
            s.lerp_(p.detach(), 1 - decay)

    def model(self, network: CVDM) -> CVDM:
        return self.shadow if self.shadow is not None else network


def _validation_loss(
    network: CVDM, val: PairedDataset, settings: TrainSettings, device: torch.device, seed: int
) -> float:
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for _ in range(settings.val_batches):
        cond, target = val.sample(settings.batch_size, settings.patch_size, rng, augment=False)
        cond, target = cond.to(device), target.to(device)
        t = torch.rand(target.shape[0], generator=gen, device=device)
        noise = torch.randn(target.shape, generator=gen, device=device)
        with torch.no_grad():  # the schedule's time derivatives are closed-form: no graph needed
            total += float(network.loss(target, cond, settings.alpha, t=t, noise=noise).total)
    return total / settings.val_batches


def iter_train(
    network: CVDM,
    info: ModelMetadata,
    data: PairedDataset,
    settings: TrainSettings | None = None,
    output: str | Path | None = None,
) -> Generator[TrainProgress, None, TrainedModel]:
    """Train ``network`` on ``data``; yields progress every step and returns the (EMA) model.

    If ``output`` is given, the model file is written there every ``checkpoint_every`` steps and at the end.
    """
    settings = settings or TrainSettings()
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    train_set, val_set = data.split(settings.val_fraction, settings.seed)
    train_set.check_patch_size(settings.patch_size, network.min_size)
    if val_set is not None:
        val_set.check_patch_size(settings.patch_size, network.min_size)
    network.to(device).train()
    ema = _EMA(network, settings.ema_decay)
    time_nets = [*network.schedule.tau.parameters(), *network.schedule.rho.parameters()]
    time_ids = {id(p) for p in time_nets}
    others = [p for p in network.parameters() if id(p) not in time_ids]
    optim = torch.optim.Adam(
        [
            {"params": others, "lr": settings.learning_rate},
            {"params": time_nets, "lr": settings.learning_rate * settings.time_lr_multiplier},
        ]
    )
    warm = max(settings.warmup_steps, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / warm))
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    trained_info = info.model_copy(deep=True)

    def save(step: int) -> Path | None:
        if output is None:
            return None
        trained_info.training = {
            **info.training,
            "steps": step,
            "settings": settings.model_dump(mode="json"),
            "pairs": {"train": len(train_set), "validation": len(val_set) if val_set else 0},
            "seconds": round(time.perf_counter() - start, 1),
            "device": str(device),
            "final_losses": history[-1] if history else {},
        }
        return save_model(output, ema.model(network), trained_info)

    for step in range(1, settings.steps + 1):
        cond, target = train_set.sample(settings.batch_size, settings.patch_size, rng, augment=settings.augment)
        cond, target = cond.to(device, non_blocking=True), target.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16"):
            terms = network.loss(target, cond, settings.alpha)
        loss = terms.total
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss became {float(loss)} at step {step}; lower the learning rate "
                f"(now {settings.learning_rate:g}) or check the data for extreme values"
            )
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), settings.grad_clip)
        optim.step()
        sched.step()
        ema.update(network)
        losses = terms.as_floats()
        history.append(losses)
        val_loss = None
        if val_set is not None and (step % settings.val_every == 0 or step == settings.steps):
            val_loss = _validation_loss(ema.model(network), val_set, settings, device, settings.seed + 1)
        ckpt = save(step) if (step % settings.checkpoint_every == 0 and step < settings.steps) else None
        yield TrainProgress(step, settings.steps, losses, val_loss, time.perf_counter() - start, ckpt)
    save(settings.steps)
    final = ema.model(network)
    final.eval()
    return TrainedModel(network=final, info=trained_info, source=str(output) if output else "")


def train(
    network: CVDM,
    info: ModelMetadata,
    data: PairedDataset,
    settings: TrainSettings | None = None,
    output: str | Path | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    cancel: CancelToken | None = None,
) -> TrainedModel:
    """Run :func:`iter_train` to the end; ``cancel`` stops it between steps and raises :class:`Cancelled`."""
    gen = iter_train(network, info, data, settings, output)
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("training stopped; the last checkpoint (if any) is kept")
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            if progress is not None:
                progress(event)
    finally:
        gen.close()


def prepare_job(job: TrainJob) -> tuple[CVDM, ModelMetadata, PairedDataset]:
    """The network (fresh or from ``job.base_model``), its metadata and the paired data of a training job."""
    from . import presets
    from .zoo import load_model

    name = job.name or Path(job.output).stem
    if job.base_model:
        base = load_model(job.base_model)
        if base.task != presets.TASKS[job.task]:
            raise ValueError(f"base model {job.base_model!r} is a {base.task} model, not {presets.TASKS[job.task]}")
        network, info = base.network, base.info.model_copy(update={"name": name})
        info.training = {"fine_tuned_from": base.info.name, "base_training": base.info.training}
    else:
        network = CVDM(presets.default_architecture(job.task, width=job.width, depth=job.depth))
        info = presets.default_metadata(job.task, name)
    if job.simulate_n is not None:
        inputs, targets = presets.simulate_pairs(job.task, job.simulate_n, job.simulate_size, job.simulate_seed)
        data = PairedDataset.from_arrays(inputs, targets, info)
        info.training = {
            **info.training,
            "data": f"{job.simulate_n} simulated pairs, size {job.simulate_size}, seed {job.simulate_seed}",
        }
    else:
        data = PairedDataset.from_folders(job.input_dir, job.target_dir, info)
        info.training = {**info.training, "data": f"{len(data)} pairs from {job.input_dir} / {job.target_dir}"}
    return network, info, data


def run_job(job: TrainJob) -> Generator[TrainProgress, None, TrainedModel]:
    """Prepare and run a :class:`TrainJob`, writing ``job.output``."""
    network, info, data = prepare_job(job)
    return (yield from iter_train(network, info, data, job.train, job.output))
