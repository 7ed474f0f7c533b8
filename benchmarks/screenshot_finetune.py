"""Take docs/figures/widget_finetune.png: a real napari window with the fine-tuning widget after a short run.

Usage (needs a display; on a headless machine run it under ``xvfb-run -a -s "-screen 0 1920x1200x24"``)::

    python benchmarks/screenshot_finetune.py --base runs/finetune_demo/base.cvdm [--steps 150] [--out PATH]

Simulates 6 F-actin pairs at NA 1.1 (WF 128² → SIM 256²) as two stack layers, docks "CVDM fine-tuning", fine-tunes
``--base`` (e.g. the base model of ``benchmarks/finetune_demo.py``) for ``--steps`` steps with previews, and grabs
the window.  The model is saved into a temporary model folder (``NAPARI_CVDM_MODELS``), never into yours.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from screenshot_common import open_viewer, save_window, wait_for

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help=".cvdm file of a super-resolution model to fine-tune")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "widget_finetune.png")
    args = parser.parse_args()
    os.environ["NAPARI_CVDM_MODELS"] = tempfile.mkdtemp(prefix="napari-cvdm-models-")

    import torch

    from napari_cvdm.physics import SRSimulation
    from napari_cvdm.training import presets

    torch.set_num_threads(1)
    physics = SRSimulation(structure="f-actin", na=1.1)
    wf, sim = presets.simulate_pairs("sr", 6, 128, 2, physics)
    viewer = open_viewer((1600, 1100))
    p = physics.wf_pixel_um
    viewer.add_image(np.stack(wf), name="widefield F-actin (6 fields)", scale=(1, p, p))
    viewer.add_image(np.stack(sim), name="SIM truth", scale=(1, p / 2, p / 2), translate=(0, -p / 4, -p / 4))
    _, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "CVDM fine-tuning")
    widget.base_file.value = Path(args.base)
    widget.model_name.value = "f-actin-na1.1"
    widget.steps.value, widget.batch_size.value, widget.patch_size.value = args.steps, 8, 64
    widget.val_fraction.value, widget.preview_every.value = 0.34, 25
    widget.show_terms.value = True
    job = widget.train()
    seconds = wait_for(job, args.timeout)
    print(f"{job.outcome} in {seconds:.1f} s")
    viewer.layers["SIM truth"].visible = False
    save_window(viewer, args.out)


if __name__ == "__main__":
    main()
