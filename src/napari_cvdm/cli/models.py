"""``napari-cvdm models``: the installed models (bundled, downloaded, the user's own)."""

from __future__ import annotations

import argparse
import json


def cmd_models(args: argparse.Namespace) -> int:
    from ..registry import list_models, load_model

    names = list_models()
    if not names:
        print("no models installed")
    for name in names:
        info = load_model(name).metadata
        if args.json:
            print(json.dumps({"name": name, **info}))
        else:
            print(f"{name}: {info['task']}, scale ×{info['scale_factor']}, input pixel {info['input_pixel_um']} µm")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="list installed models")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)
