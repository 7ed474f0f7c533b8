"""Multi-process training under ``torchrun``: process group, devices, and the few collectives the loop needs.

``torchrun --nproc_per_node N -m napari_cvdm.cli train …`` starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set.  Each process trains the same network on its own random patches (rank-dependent data RNG);
:class:`torch.nn.parallel.DistributedDataParallel` averages the gradients, so one step sees ``N × batch_size``
patches.  Backend: NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on the CPU.  Only rank 0 writes
files and logs.  Without ``torchrun`` (``WORLD_SIZE`` unset or 1) everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._runtime.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank, number of processes, and whether we created the process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and logs (rank 0)."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes (in place; identity for one process)."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (JSON-able RNG states), in rank order; a collective call."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


def env_rank() -> int:
    """This process's rank from the ``torchrun`` environment (0 when not under torchrun)."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str) -> tuple[DistContext, torch.device]:
    """Join (or create) the process group when run under ``torchrun``; returns the context and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), resolve_device(device)
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "mps":
        raise ValueError("multi-process training runs on CUDA GPUs or the CPU, not on Apple MPS; use device='cpu'")
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"process LOCAL_RANK={local} has no GPU of its own ({torch.cuda.device_count()} visible); "
                "start at most one process per GPU (torchrun --nproc_per_node ≤ number of GPUs)"
            )
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owns = True
    return DistContext(dist.get_rank(), dist.get_world_size(), local, owns), dev


def teardown(ctx: DistContext) -> None:
    """Leave the process group if :func:`setup` created it."""
    if ctx.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class LossModule(nn.Module):
    """The CVDM loss as a ``forward`` (DDP synchronises gradients of what ``forward`` computes).

    Returns the four terms of eq. 6 stacked: (β, KL, noise, γ-regulariser).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(
        self, target: torch.Tensor, cond: torch.Tensor, alpha: float, t: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        terms = self.network.loss(target, cond, alpha, t=t, noise=noise)
        return torch.stack([terms.beta, terms.kl, terms.noise, terms.gamma_reg])


def wrap(module: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """``module`` in :class:`DistributedDataParallel` when there are several processes (weights from rank 0)."""
    if ctx.world_size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, output_device=device if ids else None)
