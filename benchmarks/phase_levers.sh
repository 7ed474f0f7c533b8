#!/usr/bin/env bash
# Phase-model levers (CHANGELOG.md, cvdm-phase-twoshot v2): each candidate model on the held-out phase set with one
# protocol — n = 8 test images per row, 4 samples per image, the model's default sampler — and a figure per model;
# `python benchmarks/lever_table.py runs/levers/*.md` combines the results.  The default sampler is not the same
# for every file: 50 steps for the registered cvdm-phase-twoshot v1 file, 20 for files written by `napari-cvdm train`
# (`napari-cvdm learn-grid --default-steps` sets it when a model is registered).  The comparison in CHANGELOG.md
# (cvdm-phase-twoshot v2) ran the candidates below that way; pass STEPS=50 to run every model at 50 steps.  The
# model card's table of the shipped model uses the full protocol instead
# (`napari-cvdm bench --task phase --n 8 --n-samples 8`).
# Run from the repository root; pass model files, or make the candidates first:
#   runs/phase-fft-tie-64.cvdm    cvdm-phase-twoshot v1 (FFT-TIE condition):
#                                 git show 9da2c4d:src/napari_cvdm/models/cvdm-phase-twoshot.cvdm
#   runs/cvdm-phase-twoshot.trained.cvdm   the phase command of benchmarks/train_default_models.sh (US-TIE, 64²)
#   runs/phase-us-tie-128.cvdm    the same command with --patch-size 128 --batch-size 4 --steps 4000
#                                 -o runs/phase-us-tie-128.cvdm (the same number of training pixels)
# 11–32 min per model on one core of the 2-core development machine, depending on what else runs.
set -euo pipefail
mkdir -p runs/levers
models=("$@")
steps=()
[ -n "${STEPS:-}" ] && steps=(--steps "$STEPS")
[ ${#models[@]} -eq 0 ] && models=(runs/phase-fft-tie-64.cvdm runs/cvdm-phase-twoshot.trained.cvdm \
    runs/phase-us-tie-128.cvdm)
for model in "${models[@]}"; do
    name="$(basename "$model" .cvdm)"
    [ -s "runs/levers/$name.md" ] && continue  # already measured
    OMP_NUM_THREADS=1 napari-cvdm bench --task phase --phase-model "$model" --n 8 --n-samples 4 "${steps[@]}" \
        --figures "runs/levers/$name" -q > "runs/levers/$name.md"
done
