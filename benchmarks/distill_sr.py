"""Distil the bundled SR model into the coarse-grid denoiser (``pixel_unshuffle=2, fine_head=8``).

The student keeps the teacher's schedule and learns to reproduce its noise predictions on the teacher's own
training data (1024 simulated pairs, WF 128² → SIM 256², ``SeedSequence(0)``; :mod:`napari_cvdm.training.distill`).
Writes the student's model file (every ``--checkpoint-every`` steps and at the end) and a log line every 50 steps.

    OMP_NUM_THREADS=1 python benchmarks/distill_sr.py --steps 6000 -o runs/sr-distill.cvdm
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from napari_cvdm.registry import load_model
from napari_cvdm.settings import TrainSettings
from napari_cvdm.training import presets
from napari_cvdm.training.data import PairedDataset
from napari_cvdm.training.distill import iter_distill, student_network


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="cvdm-sr-widefield")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--simulate-n", type=int, default=1024)
    p.add_argument("--simulate-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=4e-4)
    p.add_argument("--data-weight", type=float, default=0.0)
    p.add_argument("--x0-weight-max", type=float, default=0.0)
    p.add_argument("--init", help="a student model file to continue from (instead of the teacher's inner weights)")
    p.add_argument("--pixel-unshuffle", type=int, default=2)
    p.add_argument("--fine-head", type=int, default=8)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True)
    a = p.parse_args(argv)

    teacher = load_model(a.teacher)
    t0 = time.perf_counter()
    inputs, targets = presets.simulate_pairs("sr", a.simulate_n, a.simulate_size, 0)
    about = f"{a.simulate_n} simulated pairs, size {a.simulate_size}, seed 0 (the teacher's training data)"
    data = PairedDataset.from_arrays(
        inputs, targets, teacher.info, description=about, input_pixel_um=teacher.info.input_pixel_um
    )
    print(f"simulated {a.simulate_n} pairs in {time.perf_counter() - t0:.0f} s", flush=True)
    torch.manual_seed(a.seed)
    student = student_network(teacher.network, a.pixel_unshuffle, a.fine_head)
    if a.init:
        student.load_state_dict(load_model(a.init).network.state_dict())
    settings = TrainSettings(
        steps=a.steps,
        batch_size=a.batch_size,
        patch_size=a.patch_size,
        learning_rate=a.learning_rate,
        lr_decay="cosine",
        precision="bf16",
        seed=a.seed,
        checkpoint_every=a.checkpoint_every,
        val_every=250,
    )
    for event in iter_distill(
        teacher, student, data, settings, a.output, data_weight=a.data_weight, x0_weight_max=a.x0_weight_max
    ):
        if event.step % 50 == 0 or event.val_loss is not None:
            val = f" val match {event.val_loss:.5f}" if event.val_loss is not None else ""
            print(
                f"step {event.step}/{event.total} match {event.losses['match']:.5f} "
                f"noise {event.losses['noise']:.5f}{val} {event.seconds:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
