"""CLI flags generated from the settings models, so each default and limit lives in one place."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

OPTICS_FLAGS = {  # optics field (settings models) → flag; lengths take a unit (62.6nm, 0.0626um; none: µm)
    "pixel_size_um": ("--pixel-size", str, "input pixel in the sample: µm (0.108) or with a unit (108nm); default: "
                      "the input files' OME-TIFF / ImageJ metadata, {else_}"),
    "wavelength_um": ("--wavelength", str, "SR: emission λ, phase: illumination λ; µm or with a unit (670nm); "
                      "default: the model's"),
    "numerical_aperture": ("--na", float, "SR: detection NA of the objective; default: the model's"),
    "defocus_um": ("--defocus", str, "phase: the planes are at −d and +d; µm or with a unit; default: the model's"),
}  # fmt: skip


def add_optics_flags(parser: argparse.ArgumentParser, model: type[BaseModel], otherwise: str) -> None:
    """--pixel-size, --wavelength, --na, --defocus (lengths with units) into ``model``'s fields of those names;
    ``otherwise`` ends the pixel size's help (what happens when no file states one)."""
    for name, (flag, kind, text) in OPTICS_FLAGS.items():
        help_text = text.format(else_=otherwise)
        metavar = flag.removeprefix("--").replace("-", "_").upper()  # PIXEL_SIZE, not PAIROPTICS.PIXEL_SIZE_UM
        parser.add_argument(
            flag, dest=f"{model.__name__}.{name}", type=kind, default=None, help=help_text, metavar=metavar
        )


def flag_name(name: str) -> str:
    """The CLI flag of a settings field: ``tile_size`` → ``--tile-size``."""
    return "--" + name.replace("_", "-")


def validation_message(err: ValidationError, flags: Mapping[str, str] | None = None) -> str:
    """A pydantic error as one line of ``--flag: what is wrong`` per problem: each field, in the location and in
    the message, becomes its flag (``flags`` maps the fields whose flag differs, e.g. ``pixel_size_um`` →
    ``--pixel-size``)."""
    flags = dict(flags or {})

    def flag(name: str) -> str:
        return flags.get(name) or flag_name(name)

    problems = []
    for e in err.errors():
        message = e["msg"].removeprefix("Value error, ")
        if flags:
            message = re.sub(r"\b(" + "|".join(map(re.escape, flags)) + r")\b", lambda m: flags[m.group(1)], message)
        field = str(e["loc"][-1]) if e["loc"] else ""
        problems.append(f"{flag(field)}: {message}" if field else message)
    return "; ".join(problems)


def add_model_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    skip: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
) -> None:
    """One optional flag per field of a flat pydantic model (default None = keep the model's default)."""
    aliases = aliases or {}
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        ann = info.annotation
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        kwargs: dict[str, Any] = {"default": None, "help": info.description or "", "metavar": name.upper()}
        if ann is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            del kwargs["metavar"]
        elif origin is typing.Literal:
            kwargs["choices"] = list(args)
            del kwargs["metavar"]
        elif origin is tuple:
            kwargs.update(nargs=len(args), type=args[0], metavar=tuple(a.__name__.upper() for a in args))
        elif ann in (int, float, str):
            kwargs["type"] = ann
        else:  # Optional[...] and friends
            inner = [a for a in args if a is not type(None)]
            kwargs["type"] = inner[0] if inner and inner[0] in (int, float, str) else str
        flags = [flag_name(name), *([aliases[name]] if name in aliases else [])]
        parser.add_argument(*flags, dest=f"{model.__name__}.{name}", **kwargs)


def model_overrides(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    prefix = f"{model.__name__}."
    return {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}


def progress_line(text: str) -> None:
    sys.stderr.write("\r" + text[:150].ljust(150))
    sys.stderr.flush()


@contextlib.contextmanager
def stop_on_signals(token: Any, say: Callable[[str], None]) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM, e.g. from torchrun) sets ``token`` (a training job then stops after the current
    step and saves); the second aborts."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        say("\nstopping after this step; the model and checkpoint are saved (Ctrl-C again to abort)")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
