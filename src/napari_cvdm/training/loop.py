"""Training a CVDM on paired data (from scratch or from an existing model): one loop for the CLI, GUI and tests.

:func:`iter_train` is a generator that yields a :class:`TrainProgress` after every step (losses per term, and the
validation loss when computed) and returns the trained :class:`TrainedModel`.  Every ``checkpoint_every`` steps,
at the end and when stopped it writes, atomically, the model file (the exponential moving average, EMA, of the
weights, which samples better than the raw weights) and a training checkpoint next to it
(:mod:`.checkpoint`), from which ``resume=True`` continues bit-exactly: all randomness of a step comes
from generators whose states the checkpoint holds.  Stopping — a ``stop`` token, or closing the generator — saves
both files, so no finished step is lost.  Under ``torchrun`` the loop trains with DistributedDataParallel
(:mod:`napari_cvdm.training.distributed`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._runtime import CancelToken, drive
from .._runtime.device import describe_device
from ..model.cvdm import CVDM
from ..model.files import TrainedModel, save_model
from ..model.metadata import ModelMetadata
from ..settings import TrainSettings
from . import distributed
from .checkpoint import TrainState, check_compatible, checkpoint_path, read_checkpoint, write_checkpoint
from .data import PairedDataset

TERMS = ("beta", "kl", "noise", "gamma_reg")


@dataclass
class TrainProgress:
    """Where training stands after ``step`` of ``total`` steps; ``seconds`` counts earlier (resumed) sessions too.

    ``ema_network`` is the averaged network after this step (what would be saved now): read it, do not change it;
    it changes at the next step.
    """

    step: int
    total: int
    losses: dict[str, float]
    val_loss: float | None = None
    seconds: float = 0.0
    checkpoint: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ema_network: CVDM | None = field(default=None, repr=False)

    @property
    def eta_seconds(self) -> float:
        return self.seconds / max(self.step, 1) * (self.total - self.step)


def lr_factor(step: int, settings: TrainSettings) -> float:
    """The learning rate of optimiser step ``step`` (0-based) as a fraction of ``settings.learning_rate``.

    A linear warm-up over ``warmup_steps``, then constant, or (``lr_decay="cosine"``) half a cosine period that
    reaches 0 at the last step: averaging out the gradient noise at the end is what a constant rate cannot do.
    """
    warm = max(settings.warmup, 1)
    if step < warm or settings.lr_decay == "constant":
        return min(1.0, (step + 1) / warm)
    progress = min(1.0, (step + 1 - warm) / (settings.steps - warm + 1))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


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


def validation_batches(
    val: PairedDataset, settings: TrainSettings, device: torch.device, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The ``settings.val_batches`` fixed validation batches (condition, target, t, ε) of ``seed``: the same
    patches, times and noise at every validation, so that the validation loss is a function of the weights alone."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    for _ in range(settings.val_batches):
        cond, target = val.sample(settings.batch_size, settings.patch_size, rng, augment=False)
        cond, target = cond.to(device), target.to(device)
        t = torch.rand(target.shape[0], generator=gen, device=device)
        noise = torch.randn(target.shape, generator=gen, device=device)
        yield cond, target, t, noise


def _validation_loss(
    network: CVDM, val: PairedDataset, settings: TrainSettings, device: torch.device, seed: int
) -> float:
    total = 0.0
    for cond, target, t, noise in validation_batches(val, settings, device, seed):
        with torch.no_grad():  # the schedule's time derivatives are closed-form: no graph needed
            terms = network.loss(target, cond, settings.alpha, t=t, noise=noise)
            total += terms.weighted_total(settings.loss_weights)
    return total / settings.val_batches


class _Trainer:
    """The state of one training run (network, EMA, optimiser, generators, history) and its step and save."""

    def __init__(self, network: CVDM, info: ModelMetadata, data: PairedDataset, settings: TrainSettings, output):
        self.requested = settings  # as given: an automatic warm-up (None) on a resume keeps the checkpoint's
        self.settings, self.info = settings.resolved(), info
        self.output = Path(output) if output is not None else None
        self.train_set, self.val_set = data.split(settings.val_fraction, settings.seed)
        for subset in (self.train_set, self.val_set):
            if subset is not None:
                subset.check_patch_size(settings.patch_size, network.min_size)
        self.ctx, self.device = distributed.setup(settings.device)
        self.data_summary = {
            **data.summary(),
            "train_pairs": len(self.train_set),
            "validation_pairs": len(self.val_set) if self.val_set else 0,
            "normalization": info.normalization.model_dump(mode="json"),
        }
        self.fingerprint = {
            "data": self.data_summary["fingerprint"],
            "architecture": network.config.model_dump(mode="json"),
            "world_size": self.ctx.world_size,
        }
        rank, world = self.ctx.rank, self.ctx.world_size
        torch.manual_seed(settings.seed)
        self.rng = np.random.default_rng(settings.seed if world == 1 else [settings.seed, rank])
        seed = int(np.random.SeedSequence([settings.seed, rank, 1]).generate_state(1)[0])
        self.gen = torch.Generator(device=self.device).manual_seed(seed)  # t and ε of every training step
        self.network = network.to(self.device).train()
        self.runner = distributed.wrap(distributed.LossModule(network), self.ctx, self.device)  # syncs weights
        self.ema = _EMA(network, settings.ema_decay)
        time_nets = [p for net in network.schedule.time_networks() for p in net.parameters()]
        time_ids = {id(p) for p in time_nets}
        others = [p for p in network.parameters() if id(p) not in time_ids]
        lr = settings.learning_rate
        self.optim = torch.optim.Adam(
            [{"params": others, "lr": lr}, {"params": time_nets, "lr": lr * settings.time_lr_multiplier}]
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, lambda s: lr_factor(s, self.settings))
        self.step, self.seconds_before, self.t0 = 0, 0.0, time.perf_counter()
        self.history: list[list[float]] = []
        self.val_history: list[tuple[int, float]] = []
        self.resumed_at: list[int] = []

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t0

    # -- state -------------------------------------------------------------------------------------------------
    def restore(self, path: Path) -> None:
        """Continue from the checkpoint at ``path`` (refused if the settings or data differ)."""
        state = read_checkpoint(path)
        if self.requested.warmup_steps is None and state.settings.get("warmup_steps") is not None:
            self.settings = self.settings.model_copy(update={"warmup_steps": state.settings["warmup_steps"]})
        check_compatible(state, self.settings.model_dump(mode="json"), self.fingerprint, path)
        self.network.load_state_dict(state.network)
        if self.ema.shadow is not None and state.ema is not None:
            self.ema.shadow.load_state_dict(state.ema)
        self.ema.updates = state.ema_updates
        self.optim.load_state_dict(state.optimizer)
        self.sched.load_state_dict(dict(state.scheduler))
        self.rng.bit_generator.state = state.numpy_rng[self.ctx.rank]
        self.gen.set_state(state.torch_rng[self.ctx.rank])
        torch.set_rng_state(state.global_torch_rng)
        self.step, self.seconds_before, self.t0 = state.step, state.seconds, time.perf_counter()
        self.history = state.losses.tolist()
        self.val_history = [(int(s), float(v)) for s, v in state.val_losses.tolist()]
        self.resumed_at = [*state.extra.get("resumed_at", []), state.step]

    def _state(self, rng: list[dict[str, Any]]) -> TrainState:
        sched = {k: v for k, v in self.sched.state_dict().items() if k != "lr_lambdas"}
        return TrainState(
            step=self.step,
            settings=self.settings.model_dump(mode="json"),
            fingerprint=self.fingerprint,
            network=self.network.state_dict(),
            ema=self.ema.shadow.state_dict() if self.ema.shadow is not None else None,
            ema_updates=self.ema.updates,
            optimizer=self.optim.state_dict(),
            scheduler={**sched, "lr_lambdas": [None] * len(self.optim.param_groups)},
            numpy_rng=[r["numpy"] for r in rng],
            torch_rng=[torch.frombuffer(bytearray(r["torch"]), dtype=torch.uint8) for r in rng],
            global_torch_rng=torch.get_rng_state(),
            seconds=self.seconds,
            losses=torch.tensor(self.history, dtype=torch.float64).reshape(-1, len(TERMS) + 1),
            val_losses=torch.tensor(self.val_history, dtype=torch.float64).reshape(-1, 2),
            extra={"resumed_at": self.resumed_at},
        )

    def record(self) -> ModelMetadata:
        """The model's metadata with how it was trained: data, steps, time, device, settings, losses."""
        info = self.info.model_copy(deep=True)
        last = dict(zip((*TERMS, "total"), self.history[-1], strict=True)) if self.history else {}
        info.training = {
            **self.info.training,
            "data": self.data_summary,
            "pairs": {"train": self.data_summary["train_pairs"], "validation": self.data_summary["validation_pairs"]},
            "steps": self.step,
            "total_steps": self.settings.steps,
            "stopped_early": self.step < self.settings.steps,
            "settings": self.settings.model_dump(mode="json"),
            "processes": self.ctx.world_size,
            "patches_per_step": self.settings.batch_size * self.ctx.world_size,
            "seconds": round(self.seconds, 1),
            "device": describe_device(self.device),
            "torch": torch.__version__,
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumed_at_steps": self.resumed_at,
            "final_losses": last,
            "validation_loss": self.val_history[-1][1] if self.val_history else None,
        }
        return info

    def save(self, collective: bool = True) -> Path | None:
        """Write the checkpoint and the model file (rank 0).  ``collective=False``: model file only under DDP."""
        if self.output is None:
            return None
        rng = None
        if collective or self.ctx.world_size == 1:
            mine = {"numpy": self.rng.bit_generator.state, "torch": self.gen.get_state().numpy().tobytes()}
            rng = self.ctx.gather(mine)
        if not self.ctx.is_main:
            return None
        if rng is not None:
            write_checkpoint(checkpoint_path(self.output), self._state(rng))
        return save_model(self.output, self.ema.model(self.network), self.record())

    # -- one step ----------------------------------------------------------------------------------------------
    def train_step(self, stop_requested: bool) -> tuple[dict[str, float], bool]:
        """One optimiser step; returns the losses (mean over processes) and whether any process asked to stop."""
        s, dev = self.settings, self.device
        cond, target = self.train_set.sample(s.batch_size, s.patch_size, self.rng, augment=s.augment)
        cond, target = cond.to(dev, non_blocking=True), target.to(dev, non_blocking=True)
        b = target.shape[0]
        t = (torch.rand((), generator=self.gen, device=dev) + torch.arange(b, device=dev) / b) % 1.0
        noise = torch.randn(target.shape, generator=self.gen, device=dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=s.precision == "bf16"):
            terms = self.runner(target, cond, s.alpha, t, noise)
        report = torch.cat([terms.detach().float(), torch.tensor([float(stop_requested)], device=dev)])
        report = self.ctx.all_reduce_sum(report).cpu()
        values = (report[: len(TERMS)] / self.ctx.world_size).tolist()
        losses = dict(zip(TERMS, values, strict=True))
        losses["total"] = sum(w * v for w, v in zip(s.loss_weights, values, strict=True))
        if not np.isfinite(losses["total"]):
            raise FloatingPointError(
                f"the loss became {losses['total']} at step {self.step + 1}; lower the learning rate "
                f"(now {s.learning_rate:g}) or check the data for extreme values"
            )
        self.optim.zero_grad(set_to_none=True)
        (terms * torch.tensor(s.loss_weights, device=terms.device, dtype=terms.dtype)).sum().backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), s.grad_clip)
        self.optim.step()
        self.sched.step()
        self.ema.update(self.network)
        self.step += 1
        self.history.append([*values, losses["total"]])
        return losses, bool(report[-1] > 0)

    def validate(self) -> float | None:
        s = self.settings
        due = self.step % s.validation_interval == 0 or self.step == s.steps
        if self.val_set is None or not self.ctx.is_main or not due:
            return None
        loss = _validation_loss(self.ema.model(self.network), self.val_set, s, self.device, s.seed + 1)
        self.val_history.append((self.step, loss))
        return loss


def iter_train(
    network: CVDM,
    info: ModelMetadata,
    data: PairedDataset,
    settings: TrainSettings | None = None,
    output: str | Path | None = None,
    *,
    resume: bool = False,
    stop: CancelToken | None = None,
) -> Generator[TrainProgress, None, TrainedModel]:
    """Train ``network`` on ``data``; yields progress every step and returns the (EMA) model.

    With ``output``, the model file and its checkpoint (:func:`~napari_cvdm.training.checkpoint.checkpoint_path`) are
    written every ``checkpoint_every`` steps, at the end, and when stopped.  ``resume=True`` continues from that
    checkpoint (bit-identical to an uninterrupted run on the same device).  Setting ``stop`` ends training after
    the current step, saves, and returns the model; so does closing the generator (which then returns nothing).
    """
    settings = settings or TrainSettings()
    if resume and output is None:
        raise ValueError("resume=True needs the output path whose checkpoint to continue from")
    trainer = _Trainer(network, info, data, settings, output)
    try:
        if resume:
            trainer.restore(checkpoint_path(output))
        first = trainer.step
        while trainer.step < settings.steps:
            requested = stop is not None and stop.cancelled
            if requested and trainer.ctx.world_size == 1:
                break
            losses, stopping = trainer.train_step(requested)
            val_loss = trainer.validate()
            due = trainer.step % settings.checkpoint_every == 0 and trainer.step < settings.steps
            ckpt = trainer.save() if due and not stopping else None
            ema = trainer.ema.model(network) if trainer.ctx.is_main else None
            try:
                yield TrainProgress(
                    trainer.step, settings.steps, losses, val_loss, trainer.seconds, ckpt, ema_network=ema
                )
            except GeneratorExit:
                trainer.save(collective=False)  # the consumer stopped us: keep every finished step
                raise
            if stopping:
                break
        if trainer.step > first or not (stop is not None and stop.cancelled):
            trainer.save()  # (stopped before the first step: nothing new, and an older checkpoint stays as it was)
        final = trainer.ema.model(network).eval()
        return TrainedModel(network=final, info=trainer.record(), source=str(output) if output else "")
    finally:
        distributed.teardown(trainer.ctx)


def train(
    network: CVDM,
    info: ModelMetadata,
    data: PairedDataset,
    settings: TrainSettings | None = None,
    output: str | Path | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    cancel: CancelToken | None = None,
    resume: bool = False,
) -> TrainedModel:
    """Run :func:`iter_train` to the end; ``cancel`` stops it between steps (saving) and raises :class:`Cancelled`."""
    events = iter_train(network, info, data, settings, output, resume=resume)
    step = 0

    def report(event: TrainProgress) -> None:
        nonlocal step
        step = event.step
        if progress is not None:
            progress(event)

    def stopped() -> str:
        if not step:
            return "training stopped before its first step; nothing was saved"
        where = f"; the model and checkpoint at step {step} are saved (resume=True continues)" if output else ""
        return f"training stopped{where}"

    return drive(events, report, cancel=cancel, cancelled_message=stopped)
