"""Take docs/figures/widget_reconstruct.png from a real napari window with the reconstruction widget docked.

Usage (needs a display; on a headless machine run it under ``xvfb-run -s "-screen 0 1920x1200x24"``)::

    python benchmarks/screenshot_widget.py [--model NAME_OR_PATH] [--samples 4] [--steps 10] [--out PATH]

Opens the bundled widefield sample, docks "CVDM reconstruction", runs a super-resolution model on the whole
256² image and grabs the window.  The model is ``--model`` (e.g. ``runs/cvdm-sr-widefield.cvdm``), else the first
installed super-resolution model, else a small demo model trained here for ``--demo-steps`` steps on simulated
pairs (about a minute on a CPU; it shows the widget and the kind of output, not the released model's quality).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from screenshot_common import open_viewer, save_window, wait_for

ROOT = Path(__file__).resolve().parents[1]


def train_demo_model(steps: int, out: Path) -> str:
    """A small SR model trained for ``steps`` on simulated pairs with the package's own loop (~1 min / 300 steps)."""
    import torch

    from napari_cvdm.settings import TrainJob, TrainSettings
    from napari_cvdm.training.jobs import run_job

    torch.set_num_threads(1)
    settings = TrainSettings(
        steps=steps, batch_size=4, patch_size=64, learning_rate=1e-3, warmup_steps=20, ema_decay=0,
        val_fraction=0, device="cpu", checkpoint_every=10 * steps,
    )  # fmt: skip
    job = TrainJob(
        task="sr", output=str(out), name="demo-sr", simulate_n=16, simulate_size=64, width=16, depth=2, train=settings
    )
    for event in run_job(job):
        if event.step % 100 == 0:
            print(f"demo training step {event.step}/{steps}: loss {event.losses['total']:.3f}")
    return str(out)


def pick_model(requested: str | None, demo_steps: int) -> str:
    """The requested model, else the first installed super-resolution model, else a quickly trained demo model."""
    from napari_cvdm._widgets.catalog import available_models

    if requested:
        return requested
    entries, _ = available_models()
    for entry in entries:
        if entry.task == "super-resolution":
            return entry.value
    return train_demo_model(demo_steps, Path(tempfile.mkdtemp()) / "demo-sr.cvdm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="registered name or .cvdm path (default: see above)")
    parser.add_argument("--demo-steps", type=int, default=300, help="training steps of the fallback demo model")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "widget_reconstruct.png")
    args = parser.parse_args()

    model = pick_model(args.model, args.demo_steps)
    viewer = open_viewer((1500, 950))
    viewer.open_sample("napari-cvdm", "widefield")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "CVDM reconstruction")
    if Path(model).suffix == ".cvdm":
        widget.model_file.value = Path(model)
    else:
        widget.model.value = model
    widget.n_samples.value, widget.steps.value = args.samples, args.steps
    job = widget.reconstruct()
    seconds = wait_for(job, args.timeout)
    print(f"{job.outcome} in {seconds:.1f} s with {model}")
    viewer.layers.selection.active = viewer.layers[job.output_names["mean"]]
    save_window(viewer, args.out)


if __name__ == "__main__":
    main()
