"""Few-step sampling: learn time grids (LD3) for a trained model and store them in its file.

LD3 needs only *conditions* (network inputs), no targets: the model's own many-step result is the teacher.  For
the default models the conditions are simulated with the training seeds; a user can pass their own raw images
(e.g. the TIFFs they are about to reconstruct), which adapts the grid to their data.  The learned grids are kept
in the model's metadata (``sampler.learned_grids``) and used by :func:`napari_cvdm.reconstruct` whenever a run asks
for that number of steps (``grid="auto"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .._runtime.device import inference_copy
from ..model.files import TrainedModel
from ..tasks import InputError, check_image, make_condition
from .ld3 import GridFit, learn_time_grid


def condition_patches(
    model: TrainedModel, images: Sequence[np.ndarray], n_patches: int, patch: int, seed: int = 0
) -> torch.Tensor:
    """``n_patches`` random ``patch``² crops (output grid) of the conditions of ``images``: (N, C, patch, patch).

    Conditions are built from whole images (percentiles, TIE estimate) and cropped afterwards, exactly as
    :func:`napari_cvdm.reconstruct` sees them.
    """
    if not images:
        raise InputError("no images to learn a time grid from; pass at least one input image")
    rng = np.random.default_rng(seed)
    conds = [make_condition(check_image(np.asarray(img), model.info), model.info)[0] for img in images]
    small = [tuple(c.shape[-2:]) for c in conds if min(c.shape[-2:]) < patch]
    if small:
        raise InputError(
            f"patch size {patch} is larger than some images (output grid {small[0]}); use a smaller --patch-size"
        )
    crops = []
    for k in range(n_patches):
        cond = conds[k % len(conds)]
        top = int(rng.integers(0, cond.shape[-2] - patch + 1))
        left = int(rng.integers(0, cond.shape[-1] - patch + 1))
        crops.append(cond[..., top : top + patch, left : left + patch])
    return torch.cat(crops)


def learn_grids(
    model: TrainedModel,
    images: Sequence[np.ndarray],
    steps: Sequence[int],
    *,
    n_patches: int = 16,
    patch: int = 96,
    iterations: int = 120,
    teacher_steps: int = 200,
    slack: float = 0.0,
    seed: int = 0,
    precision: str = "bf16",
    log: Callable[[str], None] | None = None,
) -> list[GridFit]:
    """Learn one grid per entry of ``steps`` and store each in ``model.info.sampler.learned_grids``.

    A grid is stored only when it beats the log-SNR grid on the held-out patches (otherwise that grid itself is
    stored, so the model records that LD3 was tried and the default was best).
    """
    conds = condition_patches(model, images, n_patches, patch, seed)
    net = inference_copy(model.network, torch.device("cpu"))  # the caller's model stays as it was
    fits = []
    for k in steps:
        fit = learn_time_grid(
            net,
            conds,
            k,
            teacher_steps=teacher_steps,
            iterations=iterations,
            slack=slack,
            seed=seed,
            precision=precision,
            log=log,
        )
        model.info.sampler.learned_grids[k] = fit.grid
        fits.append(fit)
    model.info.training.setdefault("learned_grids", {})
    model.info.training["learned_grids"].update(
        {
            str(f.steps): {
                "patches": n_patches,
                "patch_size": patch,
                "iterations": f.iterations,
                "teacher_steps": teacher_steps,
                "slack": slack,
                "seed": seed,
                "validation_mse_log_snr_grid": f.val_loss_start,
                "validation_mse_learned": f.val_loss,
            }
            for f in fits
        }
    )
    # re-validate: the grids must satisfy the metadata's own checks before the model is saved
    model.info.sampler = type(model.info.sampler).model_validate(model.info.sampler.model_dump())
    return fits
