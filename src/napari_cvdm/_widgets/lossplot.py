"""The live loss plot of the fine-tuning widget: training loss (raw and smoothed), validation loss, and on request
the four terms of the loss (β PDE, KL prior, noise prediction, γ regulariser), on a log scale.

matplotlib's Qt canvas; matplotlib is optional (``pip install matplotlib``): without it the widget shows a
one-line hint instead and everything else works.  Redraws are throttled (at most ``max_fps`` per second) so a
fast run never floods the GUI thread.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

TERM_LABELS = {"beta": "L_β (PDE)", "kl": "L_KL (prior)", "noise": "L_ε (noise)", "gamma_reg": "L_γ (smoothness)"}
TERM_COLORS = {"beta": "tab:green", "kl": "tab:red", "noise": "tab:purple", "gamma_reg": "tab:brown"}


def smooth(values: list[float], window: int = 25) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return arr
    csum = np.cumsum(arr)
    out = csum.copy()
    out[window:] = csum[window:] - csum[:-window]
    return out / np.minimum(np.arange(1, arr.size + 1), window)


class LossPlot:
    """Collects losses per step and draws them into a Qt canvas (``self.widget``)."""

    def __init__(self, max_fps: float = 4.0) -> None:
        self.steps: list[int] = []
        self.losses: dict[str, list[float]] = {k: [] for k in (*TERM_LABELS, "total")}
        self.val_steps: list[int] = []
        self.val_losses: list[float] = []
        self.show_terms = False
        self._interval, self._last_draw = 1.0 / max_fps, 0.0
        self.widget: Any = None
        self.available = False
        try:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure
        except ImportError:
            return
        self.figure = Figure(figsize=(4.0, 2.6), layout="constrained")
        self.axes = self.figure.add_subplot(1, 1, 1)
        self.widget = FigureCanvasQTAgg(self.figure)
        self.widget.setMinimumHeight(200)
        self.available = True
        self.draw(force=True)

    def clear(self) -> None:
        self.steps.clear()
        for values in self.losses.values():
            values.clear()
        self.val_steps.clear()
        self.val_losses.clear()
        self.draw(force=True)

    def add(self, step: int, losses: dict[str, float], val_loss: float | None = None) -> None:
        self.steps.append(step)
        for key, values in self.losses.items():
            values.append(float(losses.get(key, np.nan)))
        if val_loss is not None:
            self.val_steps.append(step)
            self.val_losses.append(float(val_loss))
        self.draw()

    def set_show_terms(self, show: bool) -> None:
        self.show_terms = bool(show)
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        """Redraw now if ``force`` or if the last redraw is older than the throttle interval."""
        if not self.available or (not force and time.monotonic() - self._last_draw < self._interval):
            return
        self._last_draw = time.monotonic()
        ax = self.axes
        ax.clear()
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if self.steps:
            total = self.losses["total"]
            ax.plot(self.steps, total, color="tab:blue", alpha=0.25, linewidth=0.8)
            ax.plot(self.steps, smooth(total), color="tab:blue", label="training (smoothed)")
            if self.show_terms:
                for key, label in TERM_LABELS.items():
                    ax.plot(self.steps, smooth(self.losses[key]), color=TERM_COLORS[key], linewidth=0.9, label=label)
            if self.val_steps:
                ax.plot(self.val_steps, self.val_losses, "o-", color="tab:orange", markersize=3, label="validation")
            shown = [*total, *self.val_losses]
            if self.show_terms:
                shown += [v for key in TERM_LABELS for v in self.losses[key]]
            if min(shown) > 0:  # every loss term is ≥ 0; a log axis shows their decades
                ax.set_yscale("log")
            ax.legend(fontsize="x-small", loc="upper right", ncols=2 if self.show_terms else 1, framealpha=0.6)
        else:
            ax.text(0.5, 0.5, "losses appear here during training", ha="center", va="center", transform=ax.transAxes)
        self.widget.draw_idle()
