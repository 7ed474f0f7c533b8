"""Recalibration after training: on the validation pairs, for every calibrated setting; too few pairs keep the base."""

from __future__ import annotations

import numpy as np

import napari_cvdm as nc
from napari_cvdm._runtime import drive
from napari_cvdm.model.metadata import Calibration
from napari_cvdm.training.data import PairedDataset
from napari_cvdm.training.recalibrate import iter_recalibrate, settings_to_calibrate
from tests.conftest import tiny_model

BASE = Calibration(
    method="gamma",
    eta=0.0,
    steps=3,
    n_samples=8,
    raw_std=[0.01, 1.0],
    calibrated_std=[0.02, 2.0],
    interval_z={"0.9": 1.7},
    n_images=16,
    n_pixels=1_000_000,
    data="the base model's held-out pairs",
)


def _pairs(model, n: int, size: int = 64) -> PairedDataset:
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(100, 200, (size, size)) for _ in range(n)]
    targets = [rng.uniform(0, 1, (2 * size, 2 * size)) for _ in range(n)]
    return PairedDataset.from_arrays(inputs, targets, model.info)


def test_the_default_sampler_and_every_calibrated_setting_are_refitted_on_the_validation_pairs():
    model = tiny_model("sr", sampler={"steps": 2}, calibrations=[BASE])
    assert settings_to_calibrate(model.info) == [("gamma", 1.0, 2), ("gamma", 0.0, 3)]
    out = drive(iter_recalibrate(model, _pairs(model, 2), n_samples=3, crop=128))
    assert out.recalibrated and "2 validation images (32,768 pixels)" in out.message
    assert [(c.method, c.eta, c.steps, c.n_samples, c.n_images) for c in out.info.calibrations] == [
        ("gamma", 1.0, 2, 3, 2),
        ("gamma", 0.0, 3, 3, 2),
    ]
    assert all("validation pairs" in c.data for c in out.info.calibrations)
    assert model.info.calibrations == [BASE]  # the model passed in is unchanged
    result = nc.reconstruct(
        model.__class__(model.network, out.info, "t"), np.random.default_rng(1).uniform(100, 200, (16, 16)), 3
    )
    assert result.calibrated_std is not None and result.calibration.startswith("calibrated on 2 held-out")


def test_too_few_validation_pixels_keep_the_base_calibration_and_say_why():
    model = tiny_model("sr", sampler={"steps": 2}, calibrations=[BASE])
    out = drive(iter_recalibrate(model, _pairs(model, 2, size=32), n_samples=3))
    assert not out.recalibrated and out.info.calibrations == [BASE]
    assert out.message.startswith("not recalibrated: 2 validation image(s), 8,192 pixels")
    assert "kept the base model's calibration (the base model's held-out pairs)" in out.message
    none = drive(iter_recalibrate(tiny_model("sr"), None))
    assert not none.recalibrated and "no calibrated uncertainty" in none.message


def test_training_ends_with_a_calibration_on_its_own_validation_pairs(tmp_path):
    from napari_cvdm.model.files import load_model_file
    from napari_cvdm.settings import TrainSettings
    from napari_cvdm.training.recalibrate import iter_train_recalibrated

    model = tiny_model("sr", sampler={"steps": 2}, calibrations=[BASE])
    data = _pairs(model, 10)
    settings = TrainSettings(steps=2, batch_size=2, patch_size=32, val_fraction=0.2, device="cpu")
    events = []
    out = drive(
        iter_train_recalibrated(model.network, model.info, data, settings, tmp_path / "m.cvdm", n_samples=2),
        events.append,
    )
    assert {type(e).__name__ for e in events} == {"TrainProgress", "Progress"}
    saved = load_model_file(tmp_path / "m.cvdm")
    assert saved.info.calibrations == out.info.calibrations and saved.info.calibrations != [BASE]
    assert [c.steps for c in saved.info.calibrations] == [2, 3]
    assert saved.info.training["calibration"].startswith("recalibrated on 2 validation images")


def test_a_stopped_training_keeps_its_calibration_and_says_so(tmp_path):
    from napari_cvdm._runtime import CancelToken
    from napari_cvdm.settings import TrainSettings
    from napari_cvdm.training.recalibrate import iter_train_recalibrated

    model = tiny_model("sr", sampler={"steps": 2}, calibrations=[BASE])
    token = CancelToken()
    settings = TrainSettings(steps=50, batch_size=2, patch_size=32, val_fraction=0.2, device="cpu")
    job = iter_train_recalibrated(
        model.network, model.info, _pairs(model, 10), settings, tmp_path / "m.cvdm", stop=token
    )
    out = drive(job, lambda event: token.cancel())
    assert out.info.calibrations == [BASE]
    assert out.info.training["calibration"].startswith("not recalibrated: training was stopped early")


def test_a_stop_during_the_recalibration_ends_it_and_keeps_the_trained_weights(tmp_path):
    """Ctrl-C (or SIGTERM) after the last training step used to wait for every validation image."""
    from napari_cvdm._runtime import CancelToken, Progress
    from napari_cvdm.model.files import load_model_file
    from napari_cvdm.settings import TrainSettings
    from napari_cvdm.training.recalibrate import iter_train_recalibrated

    model = tiny_model("sr", sampler={"steps": 2}, calibrations=[BASE])
    token = CancelToken()
    settings = TrainSettings(steps=2, batch_size=2, patch_size=32, val_fraction=0.4, device="cpu")
    job = iter_train_recalibrated(
        model.network, model.info, _pairs(model, 10), settings, tmp_path / "m.cvdm", n_samples=2, stop=token
    )
    stages = []

    def on_event(event):
        if isinstance(event, Progress):
            stages.append(event.stage)
            token.cancel()  # at the first recalibration event: training itself has finished

    out = drive(job, on_event)
    assert out.info.training["steps"] == 2 and not out.info.training.get("stopped_early")
    assert out.info.calibrations == [BASE]
    assert out.info.training["calibration"].startswith("not recalibrated: stopped during the recalibration")
    assert len({s for s in stages if "validation image" in s}) == 1  # it stopped before the second image
    assert load_model_file(tmp_path / "m.cvdm").info.training["calibration"] == out.info.training["calibration"]
