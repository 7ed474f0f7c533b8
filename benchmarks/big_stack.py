"""Peak memory and time of ``napari-cvdm predict`` on stacks of 4 and 40 planes (512² uint16) into OME-Zarr.

Each stack size runs in its own child process, so ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is that run's
peak resident memory alone (the input TIFF is written by the parent beforehand).  The claim checked: the peak
is bounded by one plane's work, not by the stack (40 planes within 20 % of 4 planes, below 2 GB), and the time
grows linearly in planes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/big_stack.py            # bundled SR model, --steps 1 --n-samples 2
    .venv/bin/python benchmarks/big_stack.py --planes 4 40 --steps 2      # other settings
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


def child(args: argparse.Namespace) -> None:
    from napari_cvdm.cli import main

    start = time.perf_counter()
    flags = ["--steps", str(args.steps), "--n-samples", str(args.n_samples), "--device", args.device, "-q"]
    rc = main(["predict", args.input, "-o", args.output, "--model", args.model, *flags])
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"rc": rc, "seconds": seconds, "peak_mb": peak_kb / 1024}))


def write_stack(path: Path, planes: int, size: int) -> None:
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    with tifffile.TiffWriter(path) as tif:  # plane by plane: the parent never holds the stack either
        for _ in range(planes):
            plane = (rng.poisson(60, (size, size)) + 100).astype(np.uint16)
            tif.write(plane, photometric="minisblack", contiguous=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, nargs="+", default=[4, 40])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--model", default="cvdm-sr-widefield")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--n-samples", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.planes:
            src, out = Path(tmp) / f"stack{n}.tif", Path(tmp) / f"out{n}.zarr"
            write_stack(src, n, args.size)
            cmd = [sys.executable, __file__, "--child", "--input", str(src), "--output", str(out)]
            cmd += ["--model", args.model, "--steps", str(args.steps), "--n-samples", str(args.n_samples)]
            cmd += ["--device", args.device]
            run = subprocess.run(cmd, capture_output=True, text=True, check=True)
            result = json.loads(run.stdout.strip().splitlines()[-1])
            result.update(planes=n, per_plane=result["seconds"] / n)
            rows.append(result)
            print(
                f"{n:4d} planes of {args.size}² uint16: peak RSS {result['peak_mb']:7.0f} MB, "
                f"{result['seconds']:7.1f} s ({result['per_plane']:.2f} s/plane), exit {result['rc']}",
                flush=True,
            )
    small, large = rows[0], rows[-1]
    print(
        f"peak RSS {large['planes']} vs {small['planes']} planes: {large['peak_mb'] / small['peak_mb']:.3f}×; "
        f"time per plane {large['per_plane'] / small['per_plane']:.3f}×"
    )


if __name__ == "__main__":
    main()
