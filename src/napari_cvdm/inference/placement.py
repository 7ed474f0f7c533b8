"""The network a reconstruction runs: a copy on the run's device and memory layout, never the caller's own.

:func:`inference_copy` builds a twin of the caller's network whose parameters and buffers are the caller's tensors
moved to the device (NHWC on the CPU, where oneDNN convolutions run 1.4–1.9× faster, measured with
benchmarks/speed_sweep.py), in eval mode and without gradients.  Where a tensor already is on that device and in
that layout the twin shares it (no copy).  The caller's network keeps its device, memory layout, train/eval mode,
gradients and weights — during the run too, so a model cached by the widget can be fine-tuned, previewed or
reconstructed again at the same time.
"""

from __future__ import annotations

import copy
import itertools
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def inference_layout(device: torch.device) -> torch.memory_format:
    """The memory layout 4-D weights and activations use on ``device``: channels_last on the CPU."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def inference_copy(network: M, device: torch.device) -> M:
    """A twin of ``network`` for inference on ``device`` (eval mode, no gradients); ``network`` is untouched."""
    layout = inference_layout(device)
    memo: dict[int, object] = {}
    for tensor in itertools.chain(network.parameters(), network.buffers()):
        # as Module.to(memory_format=...): 4-D tensors re-strided even where both layouts fit (1×1 kernels, one input
        # channel); left contiguous, those make a CPU run of the bundled SR model about 1.3× slower
        placed = tensor.detach().to(device, memory_format=layout) if tensor.ndim == 4 else tensor.detach().to(device)
        memo[id(tensor)] = nn.Parameter(placed, requires_grad=False) if isinstance(tensor, nn.Parameter) else placed
    twin = copy.deepcopy(network, memo)  # the modules are copied; every tensor is taken from the memo
    return twin.eval()
