#!/usr/bin/env bash
# Second-generation SR candidate: the bundled cvdm-sr-widefield fine-tuned on pairs with randomised optics and noise
# (physics.SROpticsRange; blind: the model is not told the optics), then benched against the bundled model on every
# SR row, the held-out microscopes included.  Run from the repository root.  5000 steps took 4140 s on one CPU thread
# (0.6–1.2 s/step with the 2 cores shared); each bench below about 6–17 min on one thread.
set -euo pipefail
mkdir -p runs
# --base-model keeps the bundled model's 'separate' schedule (add --time-parameterisation exact to convert it)
OMP_NUM_THREADS=1 napari-cvdm train --task sr --name cvdm-sr-widefield --base-model cvdm-sr-widefield \
    --simulate-n 1024 --simulate-size 128 --simulate-seed 0 --simulate-optics random --seed 3 --steps 5000 \
    --batch-size 8 --patch-size 64 --learning-rate 2e-4 --lr-decay cosine --precision bf16 --checkpoint-every 250 \
    --val-every 500 --log-every 50 -o runs/sr-gen2.trained.cvdm > runs/sr-gen2.log 2>&1
for model in cvdm-sr-widefield runs/sr-gen2.trained.cvdm; do
    tag=$(basename "$model" .cvdm)
    OMP_NUM_THREADS=1 napari-cvdm bench --task sr --sr-model "$model" --n 4 --n-samples 8 --figures '' \
        --reliability-out "runs/reliability_$tag.json" > "runs/bench_sr_$tag.md"
done
