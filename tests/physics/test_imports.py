"""physics/ and metrics.py stay NumPy/SciPy/scikit-image only (no torch, napari or the model)."""

import ast
from pathlib import Path

import napari_cvdm.metrics
import napari_cvdm.physics

FORBIDDEN = ("torch", "napari", "napari_cvdm.model", "qtpy", "magicgui")


def _modules() -> list[Path]:
    physics = Path(napari_cvdm.physics.__file__).parent
    return [*sorted(physics.glob("*.py")), Path(napari_cvdm.metrics.__file__)]


def test_no_heavy_or_gui_imports():
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            else:
                continue
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
                assert not name.startswith("..model"), f"{path.name} imports {name}"
