"""The job settings: defaults derived from the number of steps, and what a resume may change."""

from __future__ import annotations

import pytest

from napari_cvdm.settings import TrainSettings
from napari_cvdm.training.checkpoint import settings_changes


@pytest.mark.parametrize(("steps", "warmup", "val_every"), [(3, 1, 1), (50, 5, 5), (2000, 100, 200), (10**5, 100, 200)])
def test_automatic_warmup_and_validation_follow_the_steps(steps, warmup, val_every):
    settings = TrainSettings(steps=steps)
    assert (settings.warmup, settings.validation_interval) == (warmup, val_every)
    assert settings.resolved().model_dump() == {**settings.model_dump(), "warmup_steps": warmup, "val_every": val_every}


def test_explicit_values_win_over_the_automatic_ones():
    settings = TrainSettings(steps=3, warmup_steps=0, val_every=7)
    assert (settings.warmup, settings.validation_interval) == (0, 7)


def test_a_resume_with_an_automatic_warmup_keeps_the_checkpoints():
    stored = TrainSettings(steps=1000).resolved().model_dump(mode="json")  # warm-up 100, what the trainer stores
    more_steps = TrainSettings(steps=20).model_dump(mode="json")  # automatic: would be 2 for a fresh run
    assert settings_changes(stored, more_steps) == []
    explicit = TrainSettings(steps=20, warmup_steps=2).model_dump(mode="json")
    assert settings_changes(stored, explicit) == ["warmup_steps: checkpoint 100, now 2"]
