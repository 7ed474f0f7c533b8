"""Choosing where the networks run: ``auto`` (CUDA, then Apple MPS, then CPU) or an explicit device."""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import os
from pathlib import Path
from typing import Literal, TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)

# Measured with `napari-cvdm bench --speed` and benchmarks/speed_sweep.py on a 2-core AVX-512 CPU: a U-Net call
# runs fastest per pixel when batch × height × width stays near 2**16 pixels (activations fit the caches); a
# 512² image at batch 8 costs 1.9× more per pixel than at batch 1 (bf16, channels_last).
CPU_PIXELS_PER_CALL = 2**16
# Peak inference memory of the U-Nets, bytes per pixel per unit of width (measured 1.6 kB/px fp32 and 0.9 kB/px
# bf16 for width 32 with benchmarks/speed_sweep.py --memory 1024; 64 leaves a margin).
BYTES_PER_PIXEL_PER_WIDTH = 64
MEMINFO = Path("/proc/meminfo")  # Linux: the kernel's memory account
CGROUP = Path("/sys/fs/cgroup")  # cgroup v2: a batch job's or container's memory limit


class DeviceUnavailable(ValueError):
    """The requested device is unknown or absent on this machine (e.g. ``cuda`` without a CUDA GPU)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``; clear error if absent."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"device {device!r} was requested but PyTorch sees no CUDA GPU (torch {torch.__version__}). "
                "Use device='auto' or 'cpu', or install a CUDA build of PyTorch."
            )
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
        return torch.device("cuda", index)
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise DeviceUnavailable("device 'mps' was requested but Apple MPS is not available; use 'auto' or 'cpu'")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceUnavailable(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def describe_device(device: str | torch.device = "auto") -> str:
    """A short human label of what ``device`` resolves to, e.g. ``"cuda:0 (NVIDIA H100)"`` or ``"cpu (2 threads)"``."""
    try:
        dev = resolve_device(device)
    except ValueError as err:
        return f"unavailable: {err}"
    if dev.type == "cuda":
        index = dev.index or 0
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if dev.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    return str(dev)


def default_precision(device: torch.device) -> str:
    """bf16 autocast where it is faster and accurate enough, else fp32.

    CUDA with bf16 support, and CPUs whose oneDNN has bf16 kernels (AVX-512 or AMX: 3× faster per call here; the
    default models were trained under bf16 autocast; docs/performance.md measures the difference to fp32).
    """
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    if device.type == "cpu" and _cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def _cpu_has_fast_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def free_memory_bytes(device: torch.device) -> int:
    """Memory the run may use: free GPU memory on CUDA, available RAM otherwise (bytes)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return available_ram_bytes()


def available_ram_bytes() -> int:
    """RAM a new allocation can get (bytes): Linux's MemAvailable (free pages plus the page cache the kernel can
    drop; the free pages alone can be a small part of it on a machine that has read large files), capped by the
    cgroup v2 memory limit of a batch job (Slurm, containers); elsewhere the free pages."""
    available = None
    with contextlib.suppress(OSError, ValueError):
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    if available is None:
        try:
            available = int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 8 * 2**30  # platforms without sysconf (Windows): assume 8 GiB
    with contextlib.suppress(OSError, ValueError):
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            used = int((CGROUP / "memory.current").read_text().strip())
            available = min(available, max(int(limit) - used, 0))
    return available


def memory_per_pixel(width: int) -> int:
    """Peak bytes per image pixel of one U-Net evaluation of the given width (inference, margin included)."""
    return BYTES_PER_PIXEL_PER_WIDTH * width


def samples_per_call(device: torch.device, pixels: int, n_samples: int, width: int) -> int:
    """How many samples of a ``pixels``-pixel tile to evaluate in one network call.

    CUDA: all of them when they fit in half the free memory (one call per step keeps the GPU busy).  CPU: as
    many as keep a call near :data:`CPU_PIXELS_PER_CALL` pixels, the measured sweet spot of the caches.
    """
    if device.type == "cpu":
        return max(1, min(n_samples, CPU_PIXELS_PER_CALL // max(pixels, 1)))
    fit = free_memory_bytes(device) // 2 // max(pixels * memory_per_pixel(width), 1)
    return max(1, min(n_samples, fit))


def auto_tile_size(device: torch.device, height: int, width_px: int, net_width: int, multiple: int = 64) -> int:
    """Largest tile side (output pixels) whose single-sample evaluation fits in half the free memory."""
    budget = free_memory_bytes(device) // 2 // memory_per_pixel(net_width)
    if height * width_px <= budget:
        return max(height, width_px)
    side = math.isqrt(max(budget, 1))
    return max(multiple * 2, side - side % multiple)


# The network a run uses is a copy on the run's device and memory layout, never the caller's own: its parameters
# and buffers are the caller's tensors moved to the device (NHWC on the CPU, where oneDNN convolutions run 1.4–1.9×
# faster, measured with benchmarks/speed_sweep.py), in eval mode and without gradients; where a tensor already is on
# that device and in that layout the twin shares it.  The caller's network keeps its device, memory layout,
# train/eval mode, gradients and weights — during the run too, so a model cached by the widget can be fine-tuned,
# previewed or reconstructed again at the same time.


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


Precision = Literal["fp32", "bf16"]


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision="bf16"``; a no-op context for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
