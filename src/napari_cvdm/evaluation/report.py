"""Benchmark results as a markdown table and a figure of example rows (matplotlib, optional)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Example:
    """One test image with everything needed for a figure row."""

    label: str
    panels: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reliability: list[dict] = field(default_factory=list)  # reliability-diagram bins per row (Uncertainty.reliability)

    def markdown(self) -> str:
        header = [cell.replace("|", "\\|") for cell in self.header]  # e.g. |err| must not split a column
        lines = [f"### {self.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in self.rows]
        lines += ["", *self.notes] if self.notes else []
        return "\n".join(lines)


def save_figure(table: Table, path: Path) -> Path | None:
    """Input / baseline / CVDM mean / std / ∫β / truth, one row per example (needs matplotlib)."""
    if not table.examples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(table.examples[0].panels)
    fig, axes = plt.subplots(len(table.examples), len(cols), figsize=(2.2 * len(cols), 2.3 * len(table.examples)))
    axes = np.atleast_2d(axes)
    for r, example in enumerate(table.examples):
        for c, name in enumerate(cols):
            ax = axes[r, c]
            img = example.panels[name]
            cmap = "magma" if name in ("CVDM std", "∫β") else "gray"
            ax.imshow(img, cmap=cmap, vmin=np.percentile(img, 0.5), vmax=np.percentile(img, 99.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(example.label, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
