"""Combine the CVDM rows of several `napari-cvdm bench --task phase` outputs into one table
(CHANGELOG.md, cvdm-phase-twoshot v2).

Usage: ``python benchmarks/lever_table.py runs/levers/phase-fft-tie-64.md runs/levers/phaseA.step8000.md ...``
Each column is one model file (its results file's name, with the folder where two share a name); each cell is
"MAE / MS-SSIM" of the CVDM mean, with the US-TIE baseline of the same images in the last column.
"""

from __future__ import annotations

import sys
from pathlib import Path


def rows(path: Path) -> dict[str, dict[str, tuple[str, str]]]:
    """{test images: {method: (MAE, MS-SSIM)}} of one benchmark table."""
    table: dict[str, dict[str, tuple[str, str]]] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) >= 4 and cells[1] in ("TIE", "US-TIE", "CVDM"):
            table.setdefault(cells[0], {})[cells[1]] = (cells[2], cells[3])
    return table


def main(paths: list[str]) -> None:
    stems = [Path(p).stem for p in paths]  # a column per file; the folder too where two files share a stem
    names = [str(Path(p).with_suffix("")) if stems.count(Path(p).stem) > 1 else Path(p).stem for p in paths]
    tables = {name: rows(Path(p)) for name, p in zip(names, paths, strict=True)}
    first = next(iter(tables.values()))
    print("| test images | " + " | ".join(tables) + " | US-TIE |")
    print("|---" * (len(tables) + 2) + "|")
    for label, methods in first.items():
        cells = [" / ".join(t[label]["CVDM"]) for t in tables.values()]
        print(f"| {label} | " + " | ".join(cells) + f" | {' / '.join(methods['US-TIE'])} |")


if __name__ == "__main__":
    main(sys.argv[1:])
