"""Training: losses go down, progress and validation are reported, stopping is clean, files are complete."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

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


def test_training_reduces_the_loss_and_reports_every_step(data, tmp_path):
    settings = TrainSettings(steps=60, learning_rate=3e-3, val_fraction=0.25, checkpoint_every=20, **FAST)
    events = []
    model = train(tiny_network(residual=True), SR, data, settings, tmp_path / "m.cvdm", progress=events.append)
    assert [e.step for e in events] == list(range(1, 61))
    first = np.mean([e.losses["total"] for e in events[:10]])
    last = np.mean([e.losses["total"] for e in events[-10:]])
    assert last < first
    assert {"beta", "kl", "noise", "gamma_reg", "total"} <= events[0].losses.keys()
    assert [e.step for e in events if e.val_loss is not None] == list(range(5, 61, 5))
    assert [e.step for e in events if e.checkpoint is not None] == [20, 40]
    saved = load_model(tmp_path / "m.cvdm")
    assert saved.info.training["steps"] == 60
    assert saved.info.training["pairs"] == {"train": 3, "validation": 1}
    assert saved.info.scale_factor == 2 and model.info.training["steps"] == 60


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
    from napari_cvdm.training.jobs import prepare_job
    from tests.conftest import save_tiny_models

    base = save_tiny_models(tmp_path, condition_on_tie=True)["tiny-phase"]  # conditioned on FFT-TIE
    job = TrainJob(
        task="phase", output=str(tmp_path / "ft.cvdm"), base_model=str(base), simulate_n=2, tie_method="us-tie"
    )
    with pytest.raises(ValueError, match="conditioned on the 'fft' TIE estimate, not 'us-tie'"):
        prepare_job(job)


def test_a_phase_model_from_scratch_records_its_tie_condition(tmp_path):
    from napari_cvdm.training.jobs import prepare_job

    job = TrainJob(task="phase", output=str(tmp_path / "m.cvdm"), simulate_n=2, simulate_size=32, tie_method="us-tie")
    network, info, data = prepare_job(job)
    assert info.condition_on_tie and info.tie_method == "us-tie"
    assert data.pairs[0].condition.shape[0] == 3 == network.config.cond_channels
