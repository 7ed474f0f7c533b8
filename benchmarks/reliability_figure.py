"""Reliability diagrams from `napari-cvdm bench --reliability-out FILE`: predicted error std vs RMS error per bin.

One panel per task in the file.  Each row of the bench is one colour: the raw spread of the N-sample mean
(√(var·(1 + 1/N)), dashed) and, when the model is calibrated, the calibrated std σ_cal (solid).  A calibrated model
lies on the diagonal.  Axes are in the units the spread describes (SR: network units, the SIM truth normalised by
its percentiles; phase: rad).

    .venv/bin/napari-cvdm bench --task sr --n 4 --reliability-out runs/reliability.json
    .venv/bin/python benchmarks/reliability_figure.py runs/reliability.json -o docs/figures/reliability.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def draw(data: dict, out: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ("sr", "phase") if t in data] or list(data)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        entry = data[task]
        lo, hi = float("inf"), 0.0
        for i, row in enumerate(entry["rows"]):
            colour = f"C{i % 10}"
            for kind, style in (("raw", "--"), ("calibrated", "-")):
                bins = row.get(kind) or []
                if not bins:
                    continue
                x = [b["predicted_std"] for b in bins]
                y = [b["rmse"] for b in bins]
                label = row["row"] if kind == "calibrated" or not row.get("calibrated") else None
                ax.plot(x, y, style, marker="o", ms=3, color=colour, label=label)
                lo, hi = min(lo, *x, *y), max(hi, *x, *y)
        if hi > 0:
            lo = max(lo, hi * 1e-4)
            ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, zorder=0)
            ax.set_xscale("log")
            ax.set_yscale("log")
        units = "rad" if task == "phase" else "network units"
        ax.set_xlabel(f"predicted error std ({units})")
        ax.set_ylabel(f"RMS error ({units})")
        state = "calibrated: solid, raw: dashed" if entry.get("calibrated") else "raw sample spread (not calibrated)"
        ax.set_title(
            f"{task}: {Path(str(entry.get('model', ''))).name}, N = {entry.get('n_samples')}\n{state}", fontsize=9
        )
        ax.legend(fontsize=7, loc="upper left")
    if title:
        import textwrap

        fig.suptitle("\n".join(textwrap.wrap(title, 40 * len(tasks) + 30)), fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", help="file written by napari-cvdm bench --reliability-out")
    p.add_argument("-o", "--output", default="docs/figures/reliability.png")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    print(draw(json.loads(Path(args.json).read_text()), Path(args.output), args.title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
