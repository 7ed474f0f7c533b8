"""Paired data → a model file: datasets, the training loop, checkpoints and resume, DDP, presets, jobs."""
