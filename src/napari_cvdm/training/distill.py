"""Distillation: a cheaper denoiser trained to reproduce a trained model's noise predictions.

The student keeps the teacher's learned schedule (λ(x), τ, ρ: copied and frozen), so γ(t, x) and every sampler
setting mean the same for both; only the denoiser changes, e.g. to the coarse-grid U-Net of
``UNetConfig(pixel_unshuffle=2, fine_head=8)`` that costs ≈ 3.5× fewer FLOPs per output pixel.  Each step draws
training patches (y, x), a time t and noise ε, forms z_t = √γ·y₀ + √(1−γ)·ε with the teacher's γ, and minimises

    ‖ε̂_student(z_t) − ε̂_teacher(z_t)‖² + w_data · ‖ε̂_student(z_t) − ε‖²

The teacher's prediction is the conditional mean of ε that plain training only reaches on average over many
steps, so the student learns from a target without the noise of ε: far fewer steps than training from scratch.
``w_data`` > 0 keeps the true-noise term of ordinary training as well.  With ``x0_weight_max`` > 0 each pixel's
term is weighted by (1 − γ)/γ truncated to [1, x0_weight_max]: the squared error of the implied ŷ₀ where the noise
dominates, which a sampler with few steps relies on and a plain ε-error barely counts (there ε ≈ z_t is easy).

The student's uncertainty calibration and LD3 grids are not the teacher's: the header is written without them,
and `napari-cvdm calibrate` fits a calibration for the student.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Generator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._runtime import CancelToken
from .._runtime.device import describe_device, resolve_device
from ..model.cvdm import CVDM, GAMMA_MAX, GAMMA_MIN
from ..model.files import TrainedModel, save_model
from ..settings import TrainSettings
from .data import PairedDataset
from .loop import _EMA, TrainProgress, lr_factor, validation_batches


def student_network(teacher: CVDM, pixel_unshuffle: int = 2, fine_head: int = 8) -> CVDM:
    """A CVDM with the teacher's schedule (same weights) and a denoiser on a ``pixel_unshuffle``× coarser grid.

    Denoiser tensors whose name and shape match the teacher's (the residual blocks of every level: same widths,
    one level coarser) start from the teacher's weights; the stem and the head, whose shapes differ, start fresh
    (the head at zero, as in training).
    """
    denoiser = teacher.config.denoiser.model_copy(update={"pixel_unshuffle": pixel_unshuffle, "fine_head": fine_head})
    student = CVDM(teacher.config.model_copy(update={"denoiser": denoiser}))
    student.schedule.load_state_dict(teacher.schedule.state_dict())
    own = student.denoiser.state_dict()
    shared = {k: v for k, v in teacher.denoiser.state_dict().items() if k in own and own[k].shape == v.shape}
    for k in [k for k in shared if k.startswith("unet.head")]:
        del shared[k]  # the head stays zero: the student starts by predicting ε̂ = 0, as a fresh network does
    student.denoiser.load_state_dict({**own, **shared})
    return student


def _distill_loss(
    student: CVDM,
    teacher: CVDM,
    cond: torch.Tensor,
    target: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    data_weight: float,
    x0_weight_max: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    with torch.no_grad():
        y0 = student.to_diffused(target, cond)
        lam = student.schedule.lam(cond).float()
        gamma = student.schedule.at(lam, t).gamma.clamp(GAMMA_MIN, GAMMA_MAX)
        z_t = torch.sqrt(gamma) * y0 + torch.sqrt(1 - gamma) * noise
        eps_teacher = teacher.predict_noise(z_t, cond, gamma).float()
    eps = student.predict_noise(z_t, cond, gamma).float()
    match = F.mse_loss(eps, eps_teacher)
    data = F.mse_loss(eps, noise)
    if x0_weight_max > 0:  # the same errors as errors of ŷ₀ = (z − √(1−γ)·ε̂)/√γ, truncated to [1, max]
        weight = ((1 - gamma) / gamma).clamp(1.0, x0_weight_max)
        loss = (weight * ((eps - eps_teacher) ** 2 + data_weight * (eps - noise) ** 2)).mean()
    else:
        loss = match + data_weight * data
    return loss, {"match": float(match.detach()), "noise": float(data.detach()), "total": float(loss.detach())}


def iter_distill(
    teacher: TrainedModel,
    student: CVDM,
    data: PairedDataset,
    settings: TrainSettings,
    output: str | Path | None = None,
    *,
    data_weight: float = 0.0,
    x0_weight_max: float = 0.0,
    stop: CancelToken | None = None,
) -> Generator[TrainProgress, None, TrainedModel]:
    """Train ``student``'s denoiser to match ``teacher``'s on patches of ``data``; yields progress every step.

    ``settings`` gives the optimisation (steps, batch, patch, learning rate and its decay, EMA, precision, seed,
    checkpoint interval: the model file is written then, at the end and when stopped).  The teacher and the
    student's schedule are never changed.
    """
    s = settings.resolved()
    theirs = teacher.network.schedule.state_dict()
    mine = student.schedule.state_dict()
    if mine.keys() != theirs.keys() or any(not torch.equal(mine[k], theirs[k].to(mine[k].device)) for k in mine):
        raise ValueError(
            f"the student's schedule is not the teacher's ({teacher.info.name!r}): build the student with "
            "student_network(teacher.network, ...), which copies it, so that γ(t, x) means the same for both"
        )
    device = resolve_device(s.device)
    teacher_net = copy.deepcopy(teacher.network).to(device, memory_format=torch.contiguous_format).eval()
    teacher_net.requires_grad_(False)
    student = student.to(device).train()
    student.schedule.requires_grad_(False)
    train_set, val_set = data.split(s.val_fraction, s.seed)
    train_set.check_patch_size(s.patch_size, max(student.min_size, teacher_net.min_size))
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    gen = torch.Generator(device=device).manual_seed(s.seed)
    params = list(student.denoiser.parameters())
    optim = torch.optim.Adam(params, lr=s.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda k: lr_factor(k, s))
    ema = _EMA(student, s.ema_decay)
    history: list[dict[str, float]] = []
    val_history: list[tuple[int, float]] = []
    t0 = time.perf_counter()

    def validate(net: CVDM) -> float:
        total = 0.0
        for cond, target, t, noise in validation_batches(val_set, s, device, s.seed + 1):
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.precision == "bf16"):
                total += _distill_loss(net, teacher_net, cond, target, t, noise, data_weight)[1]["match"]
        return total / s.val_batches

    def record() -> TrainedModel:
        info = teacher.info.model_copy(deep=True)
        info.calibrations = []
        info.sampler = info.sampler.model_copy(update={"learned_grids": {}})
        info.training = {
            "distilled_from": {
                "name": teacher.info.name,
                "source": teacher.source,
                "sha256": teacher.sha256,
                "steps": teacher.info.training.get("steps"),
            },
            "teacher_training": teacher.info.training,
            "data": data.summary(),
            "steps": len(history),
            "total_steps": s.steps,
            "settings": s.model_dump(mode="json"),
            "data_weight": data_weight,
            "x0_weight_max": x0_weight_max,
            "seconds": round(time.perf_counter() - t0, 1),
            "device": describe_device(device),
            "torch": torch.__version__,
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "final_losses": history[-1] if history else {},
            "validation_match_loss": val_history[-1][1] if val_history else None,
            "validation_match_losses": val_history,
        }
        net = ema.model(student)
        return TrainedModel(network=net.eval(), info=info, source=str(output) if output else "")

    def save() -> None:
        if output is not None:
            model = record()
            save_model(output, model.network, model.info)
            model.network.train()

    step = 0
    try:
        while step < s.steps and not (stop is not None and stop.cancelled):
            cond, target = train_set.sample(s.batch_size, s.patch_size, rng, augment=s.augment)
            cond, target = cond.to(device), target.to(device)
            b = target.shape[0]
            t = (torch.rand((), generator=gen, device=device) + torch.arange(b, device=device) / b) % 1.0
            noise = torch.randn(target.shape, generator=gen, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.precision == "bf16"):
                loss, losses = _distill_loss(student, teacher_net, cond, target, t, noise, data_weight, x0_weight_max)
            if not math.isfinite(losses["total"]):
                raise FloatingPointError(
                    f"the distillation loss became {losses['total']} at step {step + 1}; lower the learning rate "
                    f"(now {s.learning_rate:g})"
                )
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
            optim.step()
            sched.step()
            ema.update(student)
            step += 1
            history.append(losses)
            val_loss = None
            if val_set is not None and (step % s.validation_interval == 0 or step == s.steps):
                val_loss = validate(ema.model(student))
                val_history.append((step, val_loss))
            if step % s.checkpoint_every == 0:
                save()
            yield TrainProgress(step, s.steps, losses, val_loss, time.perf_counter() - t0)
    finally:
        save()
    return record()
