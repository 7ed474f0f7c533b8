#!/usr/bin/env bash
# Phase-model levers (docs/models.md, "Levers measured"): each candidate model on the held-out phase set with one
# protocol — n = 8 test images per row, 4 samples per image, the model's default sampler (50 steps) — and a figure
# per model.  The table in the model card is the shipped model's row of this protocol.  Run from the repository
# root after benchmarks/train_default_models.sh; pass the model files to compare (default: the candidates of
# session 3).  About 20 min per model on one free core.
set -euo pipefail
mkdir -p runs/levers
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(runs/phase-fft-tie-64.cvdm runs/phaseA.step8000.cvdm runs/phaseA.trained.cvdm \
    runs/phaseB.trained.cvdm)
for model in "${models[@]}"; do
    name="$(basename "$model" .cvdm)"
    [ -s "runs/levers/$name.md" ] && continue  # already measured
    OMP_NUM_THREADS=1 napari-cvdm bench --task phase --phase-model "$model" --n 8 --n-samples 4 \
        --figures "runs/levers/$name" -q > "runs/levers/$name.md"
done
