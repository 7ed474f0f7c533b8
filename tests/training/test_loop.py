"""Training: it learns, the EMA and learning rates are as stated, progress is reported, stopping is clean."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from napari_cvdm import Cancelled, CancelToken, load_model
from napari_cvdm.model import ModelMetadata
from napari_cvdm.settings import TrainJob, TrainSettings
from napari_cvdm.training.data import PairedDataset
from napari_cvdm.training.loop import iter_train, train
from tests.conftest import tiny_network

SR = ModelMetadata(task="super-resolution", scale_factor=2, input_pixel_um=0.0626)


@pytest.fixture
def data() -> PairedDataset:
    rng = np.random.default_rng(0)
    wfs = [rng.uniform(0, 1, (16, 16)).astype(np.float32) for _ in range(4)]
    sims = [np.kron(w, np.ones((2, 2), np.float32)) for w in wfs]  # target = nearest-upsampled input
    return PairedDataset.from_arrays(wfs, sims, SR)


FAST = dict(batch_size=4, patch_size=16, warmup_steps=1, val_every=5, val_batches=1, device="cpu")


def test_training_learns_the_held_out_pair_and_reports_every_step(data, tmp_path):
    """A real learning check: the validation loss (an unseen image of the same law, fixed t and ε, EMA weights, so
    a function of the weights alone) falls to under half its first value; the noisy training loss is not used."""
    settings = TrainSettings(steps=60, learning_rate=3e-3, val_fraction=0.25, checkpoint_every=20, **FAST)
    events = []
    model = train(tiny_network(residual=True), SR, data, settings, tmp_path / "m.cvdm", progress=events.append)
    assert [e.step for e in events] == list(range(1, 61))
    val = {e.step: e.val_loss for e in events if e.val_loss is not None}
    assert list(val) == list(range(5, 61, 5))
    assert val[60] < 0.5 * val[5], val  # measured: 1.00 → 0.22
    assert {"beta", "kl", "noise", "gamma_reg", "total"} <= events[0].losses.keys()
    assert [e.step for e in events if e.checkpoint is not None] == [20, 40]
    saved = load_model(tmp_path / "m.cvdm")
    assert saved.info.training["steps"] == 60 and saved.info.training["validation_loss"] == val[60]
    assert saved.info.training["pairs"] == {"train": 3, "validation": 1}
    assert saved.info.scale_factor == 2 and model.info.training["steps"] == 60


def test_the_saved_weights_are_the_warmed_up_ema_of_the_raw_weights(data):
    """EMA_k = d_k·EMA_{k−1} + (1 − d_k)·w_k, d_k = min(decay, (1 + k)/(10 + k)), EMA_0 = the initial weights."""
    settings = TrainSettings(steps=10, learning_rate=3e-3, ema_decay=0.5, val_fraction=0, **FAST)
    network = tiny_network(residual=True)
    expected = [p.detach().double().clone() for p in network.parameters()]
    for k, event in enumerate(iter_train(network, SR, data, settings), start=1):  # warm-up until k = 8, then 0.5
        d = min(0.5, (1 + k) / (10 + k))
        expected = [d * e + (1 - d) * w.detach().double() for e, w in zip(expected, network.parameters(), strict=True)]
        ema = [p.detach().double() for p in event.ema_network.parameters()]
        assert max(float((a - b).abs().max()) for a, b in zip(expected, ema, strict=True)) < 1e-5, k
        raw = max(float((a - w.detach()).abs().max()) for a, w in zip(ema, network.parameters(), strict=True))
        assert raw > 1e-3  # the raw weights are not what is saved


def test_the_first_adam_step_uses_the_warmed_up_rate_and_the_time_network_multiplier(data):
    """Adam's first step moves each weight by lr·g/(|g| + ε) ≈ ±lr: the largest move of each group is its rate."""
    settings = TrainSettings(
        steps=3, learning_rate=1e-3, time_lr_multiplier=10, ema_decay=0, val_fraction=0, **{**FAST, "warmup_steps": 4}
    )
    network = tiny_network(residual=True)
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    next(iter_train(network, SR, data, settings))
    moves = {name: float((p.detach() - before[name]).abs().max()) for name, p in network.named_parameters()}
    time_nets = max(v for k, v in moves.items() if k.startswith(("schedule.tau.", "schedule.rho.")))
    others = max(v for k, v in moves.items() if not k.startswith(("schedule.tau.", "schedule.rho.")))
    assert others == pytest.approx(1e-3 * 0.25, rel=1e-3)  # warm-up: step 1 of 4 runs at a quarter of the rate
    assert time_nets == pytest.approx(1e-3 * 0.25 * 10, rel=1e-3)
    assert moves["denoiser.unet.head.weight"] > 0 and moves["schedule.lambda_net.head.weight"] > 0


def test_the_seed_fixes_the_run_bit_for_bit_and_another_seed_changes_it(data):
    """Patches, t and ε all come from seeded generators: same seed, same weights; the seed is not ignored."""
    settings = TrainSettings(steps=3, learning_rate=3e-3, val_fraction=0, **FAST)

    def weights(seed: int) -> list:
        model = train(tiny_network(residual=True), SR, data, settings.model_copy(update={"seed": seed}))
        return [p.detach().clone() for p in model.network.parameters()]

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_cancel_stops_between_steps_and_saves_the_model_and_checkpoint(data, tmp_path):
    token = CancelToken()
    settings = TrainSettings(steps=50, checkpoint_every=5, val_fraction=0, **FAST)

    def progress(event):
        if event.step == 12:
            token.cancel()

    with pytest.raises(Cancelled, match="training stopped; the model and checkpoint at step 12 are saved"):
        train(tiny_network(residual=True), SR, data, settings, tmp_path / "m.cvdm", progress=progress, cancel=token)
    saved = load_model(tmp_path / "m.cvdm").info.training
    assert saved["steps"] == 12 and saved["stopped_early"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "m.cvdm"]  # no partial files


def test_cancel_before_the_first_step_says_nothing_was_saved(data, tmp_path):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled, match="before its first step; nothing was saved"):
        train(tiny_network(residual=True), SR, data, TrainSettings(steps=5, **FAST), tmp_path / "m.cvdm", cancel=token)
    assert list(tmp_path.iterdir()) == []


def test_the_learning_rate_warms_up_then_stays_or_follows_a_cosine_to_zero():
    from napari_cvdm.training.loop import lr_factor

    constant = TrainSettings(steps=1000, warmup_steps=100)
    cosine = TrainSettings(steps=1000, warmup_steps=100, lr_decay="cosine")
    for settings in (constant, cosine):
        assert lr_factor(0, settings) == pytest.approx(0.01) and lr_factor(99, settings) == 1.0
    assert lr_factor(999, constant) == 1.0
    assert lr_factor(549, cosine) == pytest.approx(0.5, abs=2e-3)  # halfway through the decay
    assert 0 < lr_factor(999, cosine) < 1e-4  # the last step still learns, barely
    rates = [lr_factor(k, cosine) for k in range(100, 1000)]
    assert all(b < a for a, b in itertools.pairwise(rates))


def test_a_patch_larger_than_the_images_is_explained(data):
    gen = iter_train(tiny_network(residual=True), SR, data, TrainSettings(steps=1, **{**FAST, "patch_size": 64}))
    with pytest.raises(ValueError, match="larger than the smallest image"):
        next(gen)


def test_a_job_needs_exactly_one_data_source():
    with pytest.raises(ValueError, match="either input_dir and target_dir"):
        TrainJob(task="sr", output="m.cvdm")
    with pytest.raises(ValueError, match="either input_dir and target_dir"):
        TrainJob(task="sr", output="m.cvdm", simulate_n=4, input_dir="a", target_dir="b")
    with pytest.raises(ValueError, match="both input_dir and target_dir"):
        TrainJob(task="sr", output="m.cvdm", input_dir="a")


def test_fine_tuning_refuses_a_different_tie_condition_than_the_base_model(tmp_path):
    from napari_cvdm.training.data import DataError
    from napari_cvdm.training.jobs import prepare_job
    from tests.conftest import save_tiny_models

    base = save_tiny_models(tmp_path, condition_on_tie=True)["tiny-phase"]  # conditioned on FFT-TIE
    job = TrainJob(
        task="phase", output=str(tmp_path / "ft.cvdm"), base_model=str(base), simulate_n=2, tie_method="us-tie"
    )
    with pytest.raises(DataError, match="conditioned on the 'fft' TIE estimate, not 'us-tie'"):
        prepare_job(job)
    other = TrainJob(task="sr", output=str(tmp_path / "ft2.cvdm"), base_model=str(base), simulate_n=2)
    with pytest.raises(DataError, match="is a phase model, not super-resolution: give --task phase to fine-tune it"):
        prepare_job(other)


def test_a_phase_model_from_scratch_records_its_tie_condition(tmp_path):
    from napari_cvdm.training.jobs import prepare_job

    job = TrainJob(task="phase", output=str(tmp_path / "m.cvdm"), simulate_n=2, simulate_size=32, tie_method="us-tie")
    network, info, data = prepare_job(job)
    assert info.condition_on_tie and info.tie_method == "us-tie"
    assert data.pairs[0].condition.shape[0] == 3 == network.config.cond_channels


def test_the_loss_weights_weight_the_reported_and_validated_totals(data):
    """total = w_β L_β + w_KL L_KL + w_ε L_ε + w_γ L_γ, in the progress and in the validation loss."""
    weights = (2.0, 2.0, 1.0, 2.0)  # the authors' weighting, in this package's term order
    plain = TrainSettings(steps=1, val_fraction=0.25, **FAST)
    weighted = plain.model_copy(update={"loss_weights": weights})
    a = next(iter_train(tiny_network(residual=True), SR, data, plain))
    b = next(iter_train(tiny_network(residual=True), SR, data, weighted))
    terms = ("beta", "kl", "noise", "gamma_reg")
    assert all(a.losses[k] == pytest.approx(b.losses[k]) for k in terms)  # same first step before the update
    assert b.losses["total"] == pytest.approx(sum(w * b.losses[k] for w, k in zip(weights, terms, strict=True)))
    assert a.losses["total"] == pytest.approx(sum(a.losses[k] for k in terms))
    assert b.val_loss != pytest.approx(a.val_loss)


@pytest.mark.parametrize("weights", [(0, 0, 0, 0), (1, -1, 1, 1)])
def test_impossible_loss_weights_are_refused(weights):
    with pytest.raises(ValueError, match="loss weights must be ≥ 0 and not all 0"):
        TrainSettings(loss_weights=weights)
