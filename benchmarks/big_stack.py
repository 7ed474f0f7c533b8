"""Peak memory and time of the plane-by-plane job (``napari-cvdm predict -o out.zarr``) on big stacks and planes.

Rows (each in its own child process, so ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is that run's peak
resident memory alone; the input TIFF is written by the parent beforehand, plane by plane):

* stacks of 4 and 40 planes of 512² uint16 — the peak must be bounded by one plane's work, not by the stack (40
  planes within 20 % of 4 planes, below 2 GB), and the time must grow linearly in planes: each plane's wall and
  CPU seconds are recorded (CPU seconds of this process do not depend on what else the machine runs);
* single planes of 1024² and 2048² (``--planes 0`` skips the stacks, ``--huge`` sets the sides) tiled at
  ``--tile`` output pixels — written to the store a row band at a time, so the peak grows with the plane's width
  and the input plane, not with its output area (a whole 2048² plane's six float32 output maps alone are 384 MB
  on its 4096² output grid, its float64 accumulators another 400 MB); ``--in-memory`` also runs each through
  ``reconstruct()``, which returns the whole plane's maps, for comparison.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/big_stack.py           # bundled SR model, --steps 1 --n-samples 2
    .venv/bin/python benchmarks/big_stack.py --planes 4 40 --huge 0      # the stacks only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child_in_memory(args: argparse.Namespace) -> None:
    """The same plane through ``reconstruct()``, which returns every output map of the plane at once."""
    import tifffile

    from napari_cvdm import reconstruct
    from napari_cvdm.registry import load_model

    start = time.perf_counter()
    image = tifffile.imread(args.input)
    reconstruct(
        load_model(args.model), image, n_samples=args.n_samples, steps=args.steps, device=args.device,
        pixel_size_um=0.0626, tile_size=args.tile or None,
    )  # fmt: skip
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak_kb / 1024}))


def child(args: argparse.Namespace) -> None:
    if args.in_memory:
        return child_in_memory(args)
    from napari_cvdm.io.readers import open_source
    from napari_cvdm.io.stack import PlaneDone, iter_stack, prepare
    from napari_cvdm.registry import load_model
    from napari_cvdm.settings import ReconstructSettings

    start = time.perf_counter()
    model = load_model(args.model)
    settings = ReconstructSettings(
        steps=args.steps, n_samples=args.n_samples, device=args.device, pixel_size_um=0.0626,
        tile_size=args.tile or None,
    )  # fmt: skip
    job = prepare(model, open_source(args.input), args.output, settings)
    wall, cpu, last_wall, last_cpu = [], [], time.perf_counter(), time.process_time()
    for event in iter_stack(job):
        if isinstance(event, PlaneDone) and event.computed:
            now_wall, now_cpu = time.perf_counter(), time.process_time()
            wall.append(now_wall - last_wall)
            cpu.append(now_cpu - last_cpu)
            last_wall, last_cpu = now_wall, now_cpu
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {"seconds": time.perf_counter() - start, "peak_mb": peak_kb / 1024, "plane_wall_s": wall, "plane_cpu_s": cpu}
    print(json.dumps(out))


def write_stack(path: Path, planes: int, size: int) -> None:
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:  # plane by plane: the parent never holds the stack either
        for _ in range(planes):
            plane = (rng.poisson(60, (size, size)) + 100).astype(np.uint16)
            tif.write(plane, photometric="minisblack", contiguous=True)


def run_child(args: argparse.Namespace, tmp: str, planes: int, size: int, tile: int, in_memory: bool = False) -> dict:
    src, out = Path(tmp) / f"in{planes}x{size}.tif", Path(tmp) / f"out{planes}x{size}.zarr"
    if not src.exists():
        write_stack(src, planes, size)
    cmd = [sys.executable, __file__, "--child", "--input", str(src), "--output", str(out), "--tile", str(tile)]
    cmd += ["--in-memory"] if in_memory else []
    cmd += ["--model", args.model, "--steps", str(args.steps), "--n-samples", str(args.n_samples)]
    cmd += ["--device", args.device]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result.update(planes=planes, size=size, tile=tile)
    return result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, nargs="+", default=[4, 40], help="stack sizes (0: none)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--huge", type=int, nargs="+", default=[1024, 2048], help="single-plane sides (0: none)")
    parser.add_argument("--tile", type=int, default=512, help="output tile side for the single planes")
    parser.add_argument("--model", default="cvdm-sr-widefield")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--n-samples", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--in-memory", action="store_true", help="also run each single plane through reconstruct()")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stacks = [n for n in args.planes if n > 0]
        for n in stacks:
            r = run_child(args, tmp, n, args.size, 0)
            rows.append(r)
            print(
                f"{n:4d} planes of {args.size}² uint16: peak RSS {r['peak_mb']:7.0f} MB, {r['seconds']:7.1f} s; "
                f"per plane median {median(r['plane_wall_s']):.2f} s wall, {median(r['plane_cpu_s']):.2f} s CPU",
                flush=True,
            )
        if len(stacks) > 1:
            small, large = rows[0], rows[len(stacks) - 1]
            print(
                f"peak RSS {large['planes']} vs {small['planes']} planes: {large['peak_mb'] / small['peak_mb']:.3f}×; "
                f"median CPU s per plane {median(large['plane_cpu_s']) / median(small['plane_cpu_s']):.3f}×, "
                f"total CPU {sum(large['plane_cpu_s']) / sum(small['plane_cpu_s']):.2f}× for "
                f"{large['planes'] / small['planes']:.1f}× the planes",
                flush=True,
            )
        for side in [s for s in args.huge if s > 0]:
            r = run_child(args, tmp, 1, side, args.tile)
            rows.append(r)
            print(
                f"one {side}² plane ({2 * side}² output, tiles of {args.tile}): peak RSS {r['peak_mb']:7.0f} MB, "
                f"{r['seconds']:7.1f} s",
                flush=True,
            )
            if args.in_memory:
                r = run_child(args, tmp, 1, side, args.tile, in_memory=True)
                r["in_memory"] = True
                rows.append(r)
                print(f"  the same through reconstruct() (in memory): peak RSS {r['peak_mb']:7.0f} MB", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
