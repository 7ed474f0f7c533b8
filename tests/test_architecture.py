"""The package's layout keeps its arrows: the science in the middle, napari, Qt and the CLI at the edge.

Every import of every module (module level and inside functions, relative ones resolved) is read with ``ast``;
the rules are the "never" list of the architecture: model/ uses only torch, NumPy and its own files; physics/ and
the metrics are NumPy/SciPy only and never touch the model; training/ does not depend on inference/; nothing but
the manifest and the console script reaches into _widgets/ or cli/; only _widgets/ imports napari or Qt.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import napari_cvdm

PACKAGE = Path(napari_cvdm.__file__).parent
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "psygnal", "vispy")
STDLIB = set(sys.stdlib_module_names)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _in(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _violations(source: str, rule) -> list[str]:
    """``"<module> imports <name>"`` for each import of a module in ``source`` that ``rule`` rejects."""
    return [
        f"{mod} imports {name}" for mod, names in MODULES.items() if _in(mod, source) for name in names if rule(name)
    ]


def test_the_import_reader_sees_relative_and_function_level_imports():
    names = MODULES["napari_cvdm.cli.predict"]
    assert "napari_cvdm.inference.reconstruct" in names  # `from ..inference.reconstruct import …` inside a function
    assert "napari_cvdm.cli.flags" in names  # `from .flags import …` at module level


def test_model_imports_only_torch_numpy_and_itself():
    allowed_third_party = ("torch", "numpy", "safetensors", "pydantic")

    def bad(name: str) -> bool:
        top = name.split(".")[0]
        if top == "napari_cvdm":
            return not _in(name, "napari_cvdm.model")
        return top not in STDLIB and top not in allowed_third_party and top != "__future__"

    assert _violations("napari_cvdm.model", bad) == []


@pytest.mark.parametrize("source", ["napari_cvdm.physics", "napari_cvdm.evaluation.metrics"])
def test_physics_and_metrics_stay_numpy_and_never_touch_the_model(source):
    def bad(name: str) -> bool:
        return _in(name, "torch", "napari_cvdm.model", "napari_cvdm.sampling", *GUI)

    assert _violations(source, bad) == []


def test_training_does_not_depend_on_inference():
    assert _violations("napari_cvdm.training", lambda name: _in(name, "napari_cvdm.inference")) == []


@pytest.mark.parametrize("core", ["napari_cvdm.inference", "napari_cvdm.training", "napari_cvdm.sampling"])
def test_the_core_never_imports_the_file_io(core):
    assert _violations(core, lambda name: _in(name, "napari_cvdm.io")) == []


@pytest.mark.parametrize("edge", ["napari_cvdm._widgets", "napari_cvdm.cli"])
def test_nothing_reaches_into_the_edges(edge):
    found = [
        f"{mod} imports {name}"
        for mod, names in MODULES.items()
        if not _in(mod, edge)
        for name in names
        if _in(name, edge)
    ]
    assert found == []


def test_only_the_widgets_import_napari_or_qt():
    found = [
        f"{mod} imports {name}"
        for mod, names in MODULES.items()
        if not _in(mod, "napari_cvdm._widgets")
        for name in names
        if _in(name, *GUI)
    ]
    assert found == []


def test_the_runtime_imports_nothing_of_the_package_but_itself():
    def bad(name: str) -> bool:
        return _in(name, "napari_cvdm") and not _in(name, "napari_cvdm._runtime")

    assert _violations("napari_cvdm._runtime", bad) == []


def test_no_module_is_much_over_400_lines():
    long = {p.name: n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert long == {}
