"""``napari-cvdm simulate sr|phase``: a simulated paired TIFF dataset with a manifest."""

from __future__ import annotations

import argparse
import sys

from .flags import add_model_flags, model_overrides, progress_line


def cmd_simulate(args: argparse.Namespace) -> int:
    from ..physics import PhaseSimulation, SRSimulation, write_dataset
    from ..physics.simulate import MIN_SIZE
    from ..tasks import InputError

    if args.n < 1 or args.size < MIN_SIZE:  # write_dataset's own bounds, said in flags
        raise InputError(
            f"give --n of at least 1 pair and --size of at least {MIN_SIZE} pixels (got --n {args.n}, --size "
            f"{args.size})"
        )
    model = SRSimulation if args.task == "sr" else PhaseSimulation
    settings = model(**model_overrides(args, model))
    out = write_dataset(
        args.task,
        args.n,
        args.size,
        args.output,
        seed=args.seed,
        settings=settings,
        overwrite=args.overwrite,
        progress=None if args.quiet else lambda k, n: progress_line(f"simulated {k}/{n} pairs"),
    )
    if not args.quiet:
        sys.stderr.write("\n")
    print(f"wrote {args.n} {args.task} pairs to {out} (input/, target/, manifest.json)")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    from ..physics import PhaseSimulation, SRSimulation

    s = sub.add_parser("simulate", help="write a simulated paired TIFF dataset with a manifest")
    sims = s.add_subparsers(dest="task", required=True)
    for task, model in (("sr", SRSimulation), ("phase", PhaseSimulation)):
        sp = sims.add_parser(task, help=f"{task} pairs")
        sp.add_argument("--n", type=int, required=True, help="number of pairs")
        sp.add_argument("--size", type=int, default=128, help="input image side (pixels)")
        sp.add_argument("-o", "--output", required=True, help="output folder")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--overwrite", action="store_true")
        sp.add_argument("-q", "--quiet", action="store_true")
        add_model_flags(sp, model)
        sp.set_defaults(func=cmd_simulate)
