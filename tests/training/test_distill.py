"""Distillation: the student keeps the teacher's schedule, learns the teacher's noise predictions, and is saved
as a model file that says what it was distilled from and carries no calibration of the teacher's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_cvdm import CancelToken, load_model
from napari_cvdm.model import TrainedModel
from napari_cvdm.model.cvdm import GAMMA_MAX, GAMMA_MIN
from napari_cvdm.settings import TrainSettings
from napari_cvdm.training.data import PairedDataset
from napari_cvdm.training.distill import _distill_loss, iter_distill, student_network
from tests.conftest import tiny_model

FAST = dict(batch_size=4, patch_size=16, warmup_steps=1, val_every=10, val_batches=2, device="cpu")


@pytest.fixture
def teacher() -> TrainedModel:
    """A tiny SR model whose denoiser computes a non-trivial function (the head is not left at zero)."""
    model = tiny_model("sr", name="tiny-teacher", wavelength_um=0.515)
    torch.manual_seed(1)
    torch.nn.init.normal_(model.network.denoiser.unet.head.weight, std=0.3)
    return model


@pytest.fixture
def data(teacher) -> PairedDataset:
    rng = np.random.default_rng(0)
    wfs = [rng.uniform(0, 1, (16, 16)).astype(np.float32) for _ in range(4)]
    sims = [np.kron(w, np.ones((2, 2), np.float32)) for w in wfs]
    return PairedDataset.from_arrays(wfs, sims, teacher.info)


def test_the_student_has_the_teachers_schedule_a_coarse_grid_denoiser_and_a_zero_head(teacher):
    student = student_network(teacher.network, pixel_unshuffle=2, fine_head=4)
    assert student.config.denoiser.pixel_unshuffle == 2 and student.config.denoiser.fine_head == 4
    assert student.config.schedule == teacher.network.config.schedule
    for name, value in teacher.network.schedule.state_dict().items():
        assert torch.equal(student.schedule.state_dict()[name], value), name
    assert float(student.denoiser.unet.head.weight.detach().abs().max()) == 0.0
    x = torch.rand(2, 1, 32, 32)
    gamma = torch.full_like(x, 0.5)
    with torch.no_grad():
        assert float(student.predict_noise(torch.randn_like(x), x, gamma).abs().max()) == 0.0  # starts at ε̂ = 0
    shared = [
        k
        for k, v in teacher.network.denoiser.state_dict().items()
        if torch.equal(student.denoiser.state_dict().get(k, torch.empty(0)), v)
    ]
    assert shared, "no inner denoiser weight started from the teacher's"


def test_a_student_equal_to_its_teacher_has_zero_match_loss_and_the_teachers_noise_loss(teacher):
    """Known answer: the loss compares the student with the teacher's ε̂ on the teacher's z_t, and with ε."""
    twin = copy.deepcopy(teacher.network)
    x = torch.rand(3, 1, 32, 32)
    y = torch.rand(3, 1, 32, 32)
    t, noise = torch.tensor([0.2, 0.5, 0.9]), torch.randn(3, 1, 32, 32)
    loss, parts = _distill_loss(twin, teacher.network, x, y, t, noise, data_weight=0.5)
    with torch.no_grad():
        reference = teacher.network.loss(y, x, t=t, noise=noise).noise
    assert parts["match"] == 0.0
    assert parts["noise"] == pytest.approx(float(reference), rel=1e-6)
    assert float(loss.detach()) == pytest.approx(0.5 * float(reference), rel=1e-6)


def test_the_x0_weighting_weights_each_pixel_by_the_truncated_inverse_snr(teacher):
    """Known answer: with x0_weight_max, the term of a pixel is weighted by clamp((1 − γ)/γ, 1, max)."""
    twin = copy.deepcopy(teacher.network)
    x, y = torch.rand(3, 1, 32, 32), torch.rand(3, 1, 32, 32)
    t, noise = torch.tensor([0.05, 0.5, 0.95]), torch.randn(3, 1, 32, 32)
    loss, parts = _distill_loss(twin, teacher.network, x, y, t, noise, data_weight=1.0, x0_weight_max=10.0)
    with torch.no_grad():
        net = teacher.network
        gamma = net.schedule.at(net.schedule.lam(x).float(), t).gamma.clamp(GAMMA_MIN, GAMMA_MAX)
        z = gamma.sqrt() * net.to_diffused(y, x) + (1 - gamma).sqrt() * noise
        error = (net.predict_noise(z, x, gamma) - noise) ** 2
        weight = ((1 - gamma) / gamma).clamp(1, 10)
    assert parts["match"] == 0.0
    assert float(weight.min()) == 1.0 and float(weight.max()) == 10.0  # both ends of the truncation are reached
    assert float(loss.detach()) == pytest.approx(float((weight * error).mean()), rel=1e-5)


def test_distillation_learns_the_teachers_predictions_and_changes_neither_schedule_nor_teacher(teacher, data, tmp_path):
    """A teacher the student can represent (a coarse-grid network): the student starts from its weights but a zero
    head, and its validation match loss (fixed patches, t and ε) falls; measured 1.38 → 1.01 over 60 steps."""
    coarse = student_network(teacher.network, pixel_unshuffle=2, fine_head=0)
    torch.manual_seed(1)
    torch.nn.init.normal_(coarse.denoiser.unet.head.weight, std=0.3)
    coarse_teacher = TrainedModel(network=coarse, info=teacher.info, source="tiny-teacher")
    before = {k: v.clone() for k, v in coarse.state_dict().items()}
    student = student_network(coarse, pixel_unshuffle=2, fine_head=0)
    settings = TrainSettings(steps=60, learning_rate=3e-3, ema_decay=0, val_fraction=0.25, checkpoint_every=30, **FAST)
    events = list(iter_distill(coarse_teacher, student, data, settings, tmp_path / "s.cvdm"))
    val = {e.step: e.val_loss for e in events if e.val_loss is not None}
    assert list(val) == [10, 20, 30, 40, 50, 60]
    assert val[60] < 0.8 * val[10], val
    for k, v in coarse.state_dict().items():
        assert torch.equal(before[k], v), k
    saved = load_model(tmp_path / "s.cvdm")
    for k, v in coarse.schedule.state_dict().items():
        assert torch.equal(saved.network.schedule.state_dict()[k], v), k
    assert saved.network.config.denoiser.pixel_unshuffle == 2
    assert saved.info.calibrations == [] and saved.info.sampler.learned_grids == {}
    assert saved.info.training["distilled_from"]["name"] == "tiny-teacher"
    assert saved.info.training["steps"] == 60 and saved.info.training["validation_match_loss"] == val[60]


def test_a_stop_ends_distillation_after_the_current_step_and_saves(teacher, data, tmp_path):
    stop = CancelToken()
    student = student_network(teacher.network, pixel_unshuffle=2, fine_head=0)
    settings = TrainSettings(steps=50, val_fraction=0, checkpoint_every=100, **FAST)
    steps = []
    for event in iter_distill(teacher, student, data, settings, tmp_path / "s.cvdm", stop=stop):
        steps.append(event.step)
        if event.step == 3:
            stop.cancel()
    assert steps == [1, 2, 3]
    assert load_model(tmp_path / "s.cvdm").info.training["steps"] == 3


def test_a_student_with_another_schedule_is_refused_before_any_step(teacher, data):
    student = student_network(teacher.network, pixel_unshuffle=2, fine_head=0)
    with torch.no_grad():
        next(student.schedule.parameters()).add_(0.1)
    with pytest.raises(ValueError, match="schedule is not the teacher's"):
        next(iter_distill(teacher, student, data, TrainSettings(steps=2, **FAST)))
