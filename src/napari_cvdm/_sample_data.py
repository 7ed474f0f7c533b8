"""npe2 sample-data hooks: the bundled simulated images as napari layers with their pixel sizes (µm).

Each hook returns the input first and its ground truth second (hidden), placed so that the truth overlays the
input exactly — the same geometry the reconstruction widget gives its outputs.
"""

from __future__ import annotations

from typing import Any

from .sample_data import SAMPLES, load_sample

LayerDataTuple = tuple[Any, dict[str, Any], str]


def _layer(name: str, **kwargs: Any) -> LayerDataTuple:
    data, meta = load_sample(name)
    px = float(meta["pixel_um"])
    lead = (1.0,) * (data.ndim - 2)
    kwargs.setdefault("scale", (*lead, px, px))
    attrs = {"name": SAMPLES[name].display_name, "metadata": {"napari_cvdm_sample": meta}, **kwargs}
    return data, attrs, "image"


def _overlay_translate(input_px: float, output_px: float) -> tuple[float, float]:
    """Translate that puts a finer grid's pixel edges on the coarser grid's edges (pixel centres at 0)."""
    shift = -(input_px - output_px) / 2
    return shift, shift


def widefield_sample() -> list[LayerDataTuple]:
    """Simulated widefield microtubules (256²) and, hidden, their SIM ground truth (512²)."""
    wf = _layer("widefield")
    truth_px = load_sample("widefield-sim-truth")[1]["pixel_um"]
    truth = _layer(
        "widefield-sim-truth",
        visible=False,
        translate=_overlay_translate(wf[1]["scale"][-1], truth_px),
    )
    return [wf, truth]


def defocus_pair_sample() -> list[LayerDataTuple]:
    """Simulated two-shot defocus stack (2×256², ordered I(−d), I(+d)) and, hidden, the phase truth (rad)."""
    return [_layer("defocus-pair"), _layer("defocus-pair-phase-truth", visible=False)]
