"""``napari-cvdm`` command line: predict, train, simulate, bench, learn-grid, models.

Each command is a thin layer: parse the flags (generated from the same settings objects as the napari widgets'
controls), call the package's generator, print its progress.  Nothing here imports napari or Qt.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from .._version import __version__
from . import adapt, bench, calibrate, models, predict, sampling, simulate, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-cvdm", description="CVDM restoration for microscopy")
    parser.add_argument("--version", action="version", version=f"napari-cvdm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (predict, train, calibrate, adapt, simulate, bench, sampling, models):
        command.add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .._runtime.device import DeviceUnavailable
    from ..model.files import ModelFileError
    from ..sampling.calibration import CalibrationError
    from ..tasks import InputError
    from ..training.checkpoint import CheckpointError
    from ..training.data import DataError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        InputError,
        ModelFileError,
        DataError,
        CheckpointError,
        CalibrationError,
        DeviceUnavailable,
        FileExistsError,
        FileNotFoundError,
    ) as err:
        print(f"napari-cvdm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ValidationError as err:  # a settings object of flags or a YAML job: one line, by flag
        from .flags import OPTICS_FLAGS, validation_message

        named = {name: flag for name, (flag, _, _) in OPTICS_FLAGS.items()}  # the optics flags as typed
        print(f"napari-cvdm {args.command}: error: invalid setting: {validation_message(err, named)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nnapari-cvdm {args.command}: interrupted", file=sys.stderr)
        return 130
