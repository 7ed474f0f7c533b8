#!/usr/bin/env bash
# The exact commands that trained the bundled default models (docs/models.md).  Each run writes its model file
# atomically every 250 steps, so a run stopped early leaves the last checkpoint; the model card records the step.
# Run from the repository root.  On 2 CPU cores both runs together take about 0.6–1 s per step each.
set -euo pipefail
mkdir -p runs
OMP_NUM_THREADS=1 napari-cvdm train --task sr --name cvdm-sr-widefield --simulate-n 256 --simulate-size 128 \
    --simulate-seed 0 --steps 8000 --batch-size 8 --patch-size 64 --learning-rate 4e-4 --precision bf16 \
    --checkpoint-every 250 --val-every 500 --log-every 50 -o runs/cvdm-sr-widefield.trained.cvdm > runs/sr.log 2>&1 &
# Phase: conditioned on the US-TIE estimate (--tie-method us-tie).  The bundled model's first run is this command
# run with --steps 12000 and stopped after step 8000 (the learning rate is constant after warm-up, so the weights at
# step 8000 do not depend on --steps; only the header's total_steps says 12000).  The same command without
# --tie-method (FFT-TIE) gives cvdm-phase-twoshot v1 (CHANGELOG.md); benchmarks/phase_levers.sh compares them.
OMP_NUM_THREADS=1 napari-cvdm train --task phase --name cvdm-phase-twoshot --tie-method us-tie --simulate-n 256 \
    --simulate-size 192 --simulate-seed 0 --steps 8000 --batch-size 8 --patch-size 64 --learning-rate 4e-4 \
    --precision bf16 --checkpoint-every 250 --val-every 500 --log-every 50 -o runs/cvdm-phase-twoshot.trained.cvdm \
    > runs/phase.log 2>&1 &
wait
# Second run: both models train 4000 more steps from those weights with the learning rate decaying along a cosine
# to 0 (--lr-decay cosine; fresh t/ε draws with --seed 1): 1735 s (SR) and 1790 s (phase) on one CPU thread each.
# (The SR model's header records --base-model cvdm-sr-widefield, i.e. the registered v1 file: the same weights as
# runs/cvdm-sr-widefield.trained.cvdm plus LD3 grids, which fine-tuning drops.)
OMP_NUM_THREADS=1 napari-cvdm train --task sr --name cvdm-sr-widefield --base-model runs/cvdm-sr-widefield.trained.cvdm \
    --simulate-n 256 --simulate-size 128 --simulate-seed 0 --seed 1 --steps 4000 --batch-size 8 --patch-size 64 \
    --learning-rate 4e-4 --lr-decay cosine --precision bf16 --checkpoint-every 250 --val-every 500 --log-every 50 \
    -o runs/sr-cosine.trained.cvdm > runs/sr-cosine.log 2>&1 &
OMP_NUM_THREADS=1 napari-cvdm train --task phase --name cvdm-phase-twoshot \
    --base-model runs/cvdm-phase-twoshot.trained.cvdm --simulate-n 256 --simulate-size 192 --simulate-seed 0 \
    --seed 1 --steps 4000 --batch-size 8 --patch-size 64 --learning-rate 4e-4 --lr-decay cosine --precision bf16 \
    --checkpoint-every 250 --val-every 500 --log-every 50 -o runs/phase-cosine.trained.cvdm > runs/phase-cosine.log 2>&1 &
wait
# Third run: a second cosine cycle from the second run's weights, 6000 steps at half the peak rate (2e-4), on 4×
# more simulated pairs (1024; the first 256 are those of the first two runs), fresh draws with --seed 2: 2663 s (SR)
# and 2602 s (phase) on one CPU thread each.  These are the bundled weights (cvdm-sr-widefield v3,
# cvdm-phase-twoshot v4 in CHANGELOG.md).
OMP_NUM_THREADS=1 napari-cvdm train --task sr --name cvdm-sr-widefield --base-model runs/sr-cosine.trained.cvdm \
    --simulate-n 1024 --simulate-size 128 --simulate-seed 0 --seed 2 --steps 6000 --batch-size 8 --patch-size 64 \
    --learning-rate 2e-4 --lr-decay cosine --precision bf16 --checkpoint-every 250 --val-every 500 --log-every 50 \
    -o runs/sr-cycle2.trained.cvdm > runs/sr-cycle2.log 2>&1 &
OMP_NUM_THREADS=1 napari-cvdm train --task phase --name cvdm-phase-twoshot \
    --base-model runs/phase-cosine.trained.cvdm --simulate-n 1024 --simulate-size 192 --simulate-seed 0 --seed 2 \
    --steps 6000 --batch-size 8 --patch-size 64 --learning-rate 2e-4 --lr-decay cosine --precision bf16 \
    --checkpoint-every 250 --val-every 500 --log-every 50 -o runs/phase-cycle2.trained.cvdm > runs/phase-cycle2.log 2>&1 &
wait
# Few-step sampling (docs/performance.md): LD3 grids for the deterministic sampler at 5 and 10 steps, and the
# default number of steps (SR 10, phase 20; stochastic sampler, η = 1; chosen with `napari-cvdm bench --nfe`, see
# docs/performance.md for why SR keeps 10).  About 6–9 min each on one core; the result is bit-identical on a
# rerun (one thread, fixed seed).
for spec in sr:cvdm-sr-widefield:10:sr-cycle2.trained phase:cvdm-phase-twoshot:20:phase-cycle2.trained; do
    IFS=: read -r task name steps trained <<< "$spec"
    OMP_NUM_THREADS=1 napari-cvdm learn-grid --model "runs/$trained.cvdm" -o "runs/$name.cvdm" --steps 5 10 \
        --iterations 100 --default-steps "$steps" --default-eta 1 --overwrite > "runs/ld3_$task.log" 2>&1 &
done
wait
# Then bundle them: python benchmarks/register_models.py runs/cvdm-sr-widefield.cvdm runs/cvdm-phase-twoshot.cvdm
# Calibrated uncertainty (docs/uncertainty.md): the bundled files are these weights with calibrations in the header,
# fitted on held-out simulated pairs (seeds 20 000+): SR at 10 and 20 steps on 24 pairs (1559 s), phase at 20 steps on
# 16 pairs, pooled and one per third of the pairs by their estimated noise ξ (automatic for phase; 941 s), one
# thread each, side by side.
OMP_NUM_THREADS=1 napari-cvdm calibrate --model runs/cvdm-sr-widefield.cvdm -o runs/cvdm-sr-widefield.cal.cvdm \
    --steps 10 20 --n 24 --n-samples 8 --overwrite &
OMP_NUM_THREADS=1 napari-cvdm calibrate --model runs/cvdm-phase-twoshot.cvdm -o runs/cvdm-phase-twoshot.cal.cvdm \
    --steps 20 --n 16 --n-samples 8 --overwrite &
wait
# Then bundle them: python benchmarks/register_models.py runs/cvdm-sr-widefield.cal.cvdm runs/cvdm-phase-twoshot.cal.cvdm
# Calibrations for fewer steps (SR: 3, 5 and 7, on the same 24 pairs; the 10- and 20-step ones stay as they are),
# added to the bundled file (622 s on one thread):
OMP_NUM_THREADS=1 napari-cvdm calibrate --model cvdm-sr-widefield --steps 3 5 7 --n 24 --n-samples 8 \
    -o runs/cvdm-sr-widefield.cvdm --overwrite
# Then bundle it: python benchmarks/register_models.py runs/cvdm-sr-widefield.cvdm
# Phase calibrations for fewer steps (5 and 10, on the same 48 held-out pairs as the 20-step header, which stays as
# it is), added to the bundled file (2020 s for 5 steps and 2522 s for 10, one thread each, side by side):
OMP_NUM_THREADS=1 napari-cvdm calibrate --model cvdm-phase-twoshot --steps 5 10 --n 48 --n-samples 8 \
    -o runs/cvdm-phase-twoshot.cvdm --overwrite
# Then bundle it: python benchmarks/register_models.py runs/cvdm-phase-twoshot.cvdm
