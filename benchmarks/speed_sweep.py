"""Where the device constants (output pixels per call, memory per pixel) come from: denoiser throughput per pixel
against batch × size, precision and memory layout, and peak inference memory per pixel.

    python benchmarks/speed_sweep.py                 # throughput table (seconds per output megapixel)
    python benchmarks/speed_sweep.py --memory 1024 --precision bf16   # peak RSS per pixel of one 1024² call

Run on an otherwise idle machine; numbers in docs/performance.md.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from napari_cvdm.registry import load_model

SHAPES = [(512, 8), (512, 1), (256, 8), (256, 4), (256, 2), (256, 1), (192, 2), (128, 16), (128, 8), (128, 4)]


def inputs(net, size: int, batch: int, layout: torch.memory_format) -> tuple[torch.Tensor, ...]:
    c = net.config
    z = torch.randn(batch, c.out_channels, size, size)
    x = torch.randn(batch, c.cond_channels, size, size)
    g = torch.rand_like(z) * 0.9 + 0.05
    return tuple(t.contiguous(memory_format=layout) for t in (z, x, g))


def throughput(model_name: str, repeats: int) -> None:
    net = load_model(model_name).network.eval()
    print("| output | batch | precision | layout | s / call | s / MP |\n|---|---|---|---|---|---|")
    for size, batch in SHAPES:
        for precision in ("fp32", "bf16"):
            for layout in (torch.contiguous_format, torch.channels_last):
                if (size, batch) not in ((512, 8), (512, 1)) and (precision, layout) != ("bf16", torch.channels_last):
                    continue  # the full grid only for 512²; the rest in the default configuration
                net.to(memory_format=layout)
                args = inputs(net, size, batch, layout)
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    net.predict_noise(*args)
                    start = time.perf_counter()
                    for _ in range(repeats):
                        net.predict_noise(*args)
                    per_call = (time.perf_counter() - start) / repeats
                name = "NHWC" if layout == torch.channels_last else "NCHW"
                mp = batch * size * size / 1e6
                row = f"| {size}² | {batch} | {precision} | {name} | {per_call:.3f} | {per_call / mp:.3f} |"
                print(row, flush=True)


def memory(model_name: str, size: int, precision: str) -> None:
    net = load_model(model_name).network.eval().to(memory_format=torch.channels_last)
    args = inputs(net, size, 1, torch.channels_last)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        net.predict_noise(*args)
        net.schedule.lam(args[1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # high-water mark: one precision per process
    print(f"{precision}: {(peak - base) * 1024 / size**2:.0f} bytes per pixel (peak RSS increase, {size}²)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cvdm-sr-widefield")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", type=int, metavar="SIZE", help="measure memory at SIZE² instead")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="for --memory")
    args = parser.parse_args()
    if args.memory:
        memory(args.model, args.memory, args.precision)
    else:
        throughput(args.model, args.repeats)


if __name__ == "__main__":
    main()
