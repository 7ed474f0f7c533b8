"""``napari-cvdm bench --speed``: seconds per reconstruction against the denoiser's own forward time."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from .._runtime.device import (
    autocast,
    default_precision,
    describe_device,
    inference_copy,
    resolve_device,
    samples_per_call,
)
from ..inference.reconstruct import reconstruct
from ..model.files import TrainedModel
from .report import Table


def _sync(dev: torch.device) -> None:
    """Wait for the GPU's queued work, so that a clock read after it times the work (no-op on the CPU)."""
    if dev.type == "cuda":
        torch.cuda.synchronize()


def speed_benchmark(
    model: TrainedModel,
    sizes: tuple[int, ...] = (256, 512),
    n_samples: tuple[int, ...] = (8,),
    steps: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    repeats: int = 1,
    log: Callable[[str], None] = print,
) -> Table:
    """Seconds for each input size × number of samples, against the network's own forward time.

    With ``repeats`` > 1 the run and the floor are timed alternately that many times and the fastest of each is
    kept (the usual defence against a noisy shared machine).

    The floor is the time of exactly the denoiser calls the sampler makes (same batches, shapes, precision and
    memory layout) with nothing else: the ratio says how much the sampler (λ network, schedule, noise, statistics,
    tiling, copies) adds on top of the network.  "s per NFE per MP" is seconds per sample-evaluation per output
    megapixel: constant when the cost grows linearly with pixels and samples.
    """
    dev = resolve_device(device)
    prec = default_precision(dev) if precision == "auto" else precision
    net = inference_copy(model.network, dev)  # the layout reconstruct() runs in; the caller's model untouched
    header = ["input", "output", "samples", "NFE/sample", "seconds", "s per NFE per MP", "floor (s)", "ratio"]
    table = Table(f"Speed on {describe_device(dev)}, {prec}", header)
    rng = np.random.default_rng(0)
    layout = torch.channels_last if dev.type == "cpu" else torch.contiguous_format

    for size in sizes:
        shape = (2, size, size) if model.task == "phase" else (size, size)
        image = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        reconstruct(model, image[..., :64, :64], n_samples=1, steps=1, device=str(dev), precision=prec)  # warm-up
        for n in n_samples:
            c = net.config
            seconds, floor = float("inf"), float("inf")
            for _ in range(max(repeats, 1)):
                _sync(dev)
                start = time.perf_counter()
                result = reconstruct(model, image, n_samples=n, steps=steps, device=str(dev), precision=prec)
                _sync(dev)
                seconds = min(seconds, time.perf_counter() - start)
                out = result.mean.shape[-1]
                batch = samples_per_call(dev, out * out, n, c.widest)
                calls = [min(batch, n - k) for k in range(0, n, batch)]
                z = torch.randn(batch, c.out_channels, out, out, device=dev).contiguous(memory_format=layout)
                x = torch.randn(batch, c.cond_channels, out, out, device=dev).contiguous(memory_format=layout)
                g = (torch.rand_like(z) * 0.9 + 0.05).contiguous(memory_format=layout)
                with torch.no_grad(), autocast(dev, prec):
                    _sync(dev)
                    start = time.perf_counter()
                    for b in calls:
                        for _ in range(result.nfe_per_sample):
                            net.predict_noise(z[:b], x[:b], g[:b])
                    _sync(dev)
                    floor = min(floor, time.perf_counter() - start)
            per = seconds / (result.nfe_per_sample * n) / (out * out / 1e6)
            table.rows.append(
                [
                    f"{size}²",
                    f"{out}²",
                    str(n),
                    str(result.nfe_per_sample),
                    f"{seconds:.3g}",
                    f"{per:.3g}",
                    f"{floor:.3g}",
                    f"{seconds / floor:.2f}",
                ]
            )
            log(f"speed: {size}², {n} samples: {seconds:.1f} s (network alone {floor:.1f} s)")
    return table


def speed_comparison(
    models: list[tuple[str, TrainedModel, int | None]],
    size: int = 256,
    n_samples: int = 8,
    device: str = "auto",
    precision: str = "auto",
    repeats: int = 2,
    log: Callable[[str], None] = print,
) -> Table:
    """Seconds of one reconstruction of a ``size``² input with ``n_samples`` samples for each (label, model, steps),
    timed side by side: every repeat runs all models in turn (the order reversed on every other repeat, so that a
    drifting load of the machine favours none), and the fastest run of each is kept.  "× faster" is against the
    first model.
    """
    if not models:
        raise ValueError("speed_comparison needs at least one (label, model, steps)")
    dev = resolve_device(device)
    prec = default_precision(dev) if precision == "auto" else precision
    best = [float("inf")] * len(models)
    nfe = [0] * len(models)
    images = []  # models of one task get the same image: only the model differs between their runs
    for _, model, _ in models:
        shape = (2, size, size) if model.task == "phase" else (size, size)
        image = np.random.default_rng(0).uniform(0.5, 1.5, shape).astype(np.float32)
        reconstruct(model, image[..., :64, :64], n_samples=1, steps=1, device=str(dev), precision=prec)  # warm-up
        images.append(image)
    for r in range(max(repeats, 1)):
        order = range(len(models)) if r % 2 == 0 else reversed(range(len(models)))
        for i in order:
            label, model, steps = models[i]
            _sync(dev)
            start = time.perf_counter()
            result = reconstruct(model, images[i], n_samples=n_samples, steps=steps, device=str(dev), precision=prec)
            _sync(dev)
            seconds = time.perf_counter() - start
            best[i], nfe[i] = min(best[i], seconds), result.nfe_per_sample
            log(f"speed: {label}, {size}², {n_samples} samples, {nfe[i]} NFE: {seconds:.1f} s")
    header = ["model", "input", "samples", "NFE/sample", "seconds", "× faster"]
    table = Table(f"Side by side on {describe_device(dev)}, {prec}, best of {max(repeats, 1)}", header)
    for (label, _, _), seconds, n in zip(models, best, nfe, strict=True):
        table.rows.append([label, f"{size}²", str(n_samples), str(n), f"{seconds:.3g}", f"{best[0] / seconds:.2f}"])
    return table
