"""The sampler plan: the model's benchmarked defaults, and Algorithm 2's own default number of steps."""

from __future__ import annotations

import pytest

from napari_cvdm.model.metadata import SamplerDefaults
from napari_cvdm.sampling.plan import ALGORITHM_2_STEPS, plan_sampler
from napari_cvdm.settings import ReconstructSettings

DEFAULTS = SamplerDefaults(method="gamma", steps=10)


def test_the_model_default_sampler_takes_the_model_default_steps():
    plan = plan_sampler(DEFAULTS, ReconstructSettings())
    assert (plan.method, plan.steps) == ("gamma", 10)


@pytest.mark.parametrize("method", ["ancestral", "ancestral-euler"])
def test_algorithm_2_gets_its_own_default_steps_not_the_gamma_samplers(method):
    """Asked for without steps, Algorithm 2 does not inherit the γ-sampler's 10 steps (its MSE was 30× higher)."""
    plan = plan_sampler(DEFAULTS, ReconstructSettings(method=method))
    assert (plan.method, plan.steps) == (method, ALGORITHM_2_STEPS)
    assert plan_sampler(DEFAULTS, ReconstructSettings(method=method, steps=7)).steps == 7  # explicit steps win


def test_a_model_whose_default_is_algorithm_2_keeps_its_steps():
    defaults = SamplerDefaults(method="ancestral", steps=60)
    assert plan_sampler(defaults, ReconstructSettings()).steps == 60
    assert plan_sampler(defaults, ReconstructSettings(method="gamma")).steps == 60
