"""Copy trained model files into the package and print their registry entries (name, file, SHA-256, task).

Usage: ``python benchmarks/register_models.py runs/cvdm-sr-widefield.cvdm runs/cvdm-phase-twoshot.cvdm``
Paste the printed entries into ``REGISTRY`` in ``src/napari_cvdm/registry.py``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from napari_cvdm.model import load_model_file, sha256_of
from napari_cvdm.registry import BUNDLED_DIR


def main(paths: list[str]) -> None:
    BUNDLED_DIR.mkdir(exist_ok=True)
    for path in map(Path, paths):
        model = load_model_file(path)
        target = BUNDLED_DIR / f"{model.info.name}.cvdm"
        shutil.copyfile(path, target)
        size_mb = target.stat().st_size / 2**20
        print(
            f'    "{model.info.name}": RegisteredModel(\n'
            f'        "{model.info.name}",\n'
            f'        "{target.name}",\n'
            f'        "{sha256_of(target)}",\n'
            f'        "{model.info.description}",\n'
            f'        task="{model.info.task}",\n'
            f"    ),  # {size_mb:.1f} MB, {model.info.training.get('steps')} steps"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
