"""Exact resume: stop or crash, then resume, gives bit-identical weights; bad checkpoints and crashed writes."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from napari_cvdm import CancelToken, load_model
from napari_cvdm.model import ModelMetadata, files
from napari_cvdm.model.files import save_model
from napari_cvdm.settings import TrainJob, TrainSettings
from napari_cvdm.training.checkpoint import CheckpointError, checkpoint_path, read_checkpoint
from napari_cvdm.training.data import PairedDataset
from napari_cvdm.training.jobs import finetune_start, run_job
from napari_cvdm.training.loop import iter_train, train
from tests.conftest import tiny_network

SR = ModelMetadata(task="super-resolution", name="tiny", scale_factor=2, input_pixel_um=0.0626)
# warm-up longer than the run and EMA on: the scheduler and EMA states must both be restored exactly
SETTINGS = TrainSettings(
    steps=12,
    batch_size=3,
    patch_size=16,
    warmup_steps=20,
    learning_rate=3e-3,
    val_fraction=0.25,
    val_every=4,
    val_batches=1,
    checkpoint_every=5,
    device="cpu",
)


@pytest.fixture
def data() -> PairedDataset:
    rng = np.random.default_rng(1)
    wfs = [rng.uniform(0, 1, (16, 16)).astype(np.float32) for _ in range(4)]
    return PairedDataset.from_arrays(wfs, [np.kron(w, np.ones((2, 2), np.float32)) for w in wfs], SR)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_identical(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture
def reference(data, tmp_path) -> tuple[Path, Path]:
    """An uninterrupted run, plus a copy of its files right after the step-5 checkpoint (as a crash would leave)."""
    out, crash = tmp_path / "full.cvdm", tmp_path / "crash" / "run.cvdm"
    crash.parent.mkdir()

    def keep_step_5(event):
        if event.step == 5:
            assert event.checkpoint == out
            shutil.copy(out, crash)
            shutil.copy(checkpoint_path(out), checkpoint_path(crash))

    train(tiny_network(residual=True), SR, data, SETTINGS, out, progress=keep_step_5)
    return out, crash


def test_stop_then_resume_is_bit_identical_to_an_uninterrupted_run(data, reference, tmp_path):
    full, _ = reference
    part = tmp_path / "part.cvdm"
    gen = iter_train(tiny_network(residual=True), SR, data, SETTINGS, part)
    for event in gen:
        if event.step == 7:
            break
    gen.close()  # stopping writes the model file and the checkpoint at step 7
    assert read_checkpoint(checkpoint_path(part)).step == 7
    assert load_model(part).info.training["steps"] == 7
    # a differently initialised network: everything must come from the checkpoint
    resumed = train(tiny_network(residual=True, seed=3), SR, data, SETTINGS, part, resume=True)
    assert resumed.info.training["steps"] == 12 and resumed.info.training["resumed_at_steps"] == [7]
    _assert_identical(full, part)  # EMA weights
    _assert_identical(checkpoint_path(full), checkpoint_path(part))  # raw weights, Adam moments, RNG states


def test_stop_token_saves_and_returns_and_a_crash_resumes_from_the_last_checkpoint(data, reference, tmp_path):
    full, crash = reference
    token = CancelToken()
    out = tmp_path / "stopped.cvdm"
    gen = iter_train(tiny_network(residual=True), SR, data, SETTINGS, out, stop=token)
    for event in gen:
        if event.step == 3:
            token.cancel()
    assert read_checkpoint(checkpoint_path(out)).step == 3
    assert load_model(out).info.training["stopped_early"]
    # a crash after step 5 left only the periodic checkpoint: resuming from it reproduces the full run
    train(tiny_network(residual=True), SR, data, SETTINGS, crash, resume=True)
    _assert_identical(full, crash)


def test_training_time_counts_every_session_and_a_resume_continues_the_clock(data, tmp_path, monkeypatch):
    """On a clock that advances 2.5 s per step: progress, ETA, checkpoint and model file all count earlier sessions."""
    from types import SimpleNamespace

    import napari_cvdm.training.loop as loop

    clock = [1000.0]
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    out, seconds = tmp_path / "m.cvdm", []
    gen = iter_train(tiny_network(residual=True), SR, data, SETTINGS, out)
    for event in gen:
        seconds.append(event.seconds)
        clock[0] += 2.5
        if event.step == 7:
            break
    gen.close()  # 17.5 s into the run
    assert seconds == [2.5 * k for k in range(7)]
    assert read_checkpoint(checkpoint_path(out)).seconds == 17.5 and load_model(out).info.training["seconds"] == 17.5
    clock[0] += 3600  # an hour between the sessions is not training time
    resumed = []
    for event in iter_train(tiny_network(residual=True), SR, data, SETTINGS, out, resume=True):
        resumed.append((event.step, event.seconds, event.eta_seconds))
        clock[0] += 2.5
    assert resumed == [(k, 2.5 * (k - 1), 2.5 * (k - 1) / k * (12 - k)) for k in range(8, 13)]
    assert read_checkpoint(checkpoint_path(out)).seconds == 30.0 and load_model(out).info.training["seconds"] == 30.0


def test_resume_can_extend_a_finished_run_exactly(data, reference, tmp_path):
    full, _ = reference
    short = tmp_path / "short.cvdm"
    train(tiny_network(residual=True), SR, data, SETTINGS.model_copy(update={"steps": 8}), short)
    train(tiny_network(residual=True), SR, data, SETTINGS, short, resume=True)  # steps may change
    _assert_identical(full, short)


def test_resume_refuses_other_settings_data_or_a_missing_checkpoint(data, reference, tmp_path):
    _, crash = reference
    changed = SETTINGS.model_copy(update={"learning_rate": 1e-3, "batch_size": 2})
    with pytest.raises(CheckpointError, match=r"batch_size: checkpoint 3, now 2; learning_rate"):
        next(iter_train(tiny_network(residual=True), SR, data, changed, crash, resume=True))
    other = PairedDataset(data.pairs[::-1])
    with pytest.raises(CheckpointError, match="the training data differs"):
        next(iter_train(tiny_network(residual=True), SR, other, SETTINGS, crash, resume=True))
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        next(iter_train(tiny_network(residual=True), SR, data, SETTINGS, tmp_path / "none.cvdm", resume=True))
    bad = tmp_path / "bad.cvdm"
    checkpoint_path(bad).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        next(iter_train(tiny_network(residual=True), SR, data, SETTINGS, bad, resume=True))


@pytest.mark.parametrize("kind", [".ckpt", ".cvdm"])
def test_a_crashed_write_leaves_the_previous_files_intact(data, tmp_path, monkeypatch, kind):
    out = tmp_path / "m.cvdm"
    real = files.save_file
    calls = {"n": 0}

    def dies_on_the_second_write(tensors, filename, metadata=None):
        if Path(filename).name.startswith(f"m{kind}."):
            calls["n"] += 1
            if calls["n"] == 2:
                Path(filename).write_bytes(b"\0" * 64)  # half-written
                raise OSError(28, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(files, "save_file", dies_on_the_second_write)
    with pytest.raises(OSError, match="No space left"):
        for _ in iter_train(tiny_network(residual=True), SR, data, SETTINGS, out):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "m.cvdm"]  # no temporary files
    model_steps = load_model(out).info.training["steps"]
    ckpt_steps = read_checkpoint(checkpoint_path(out)).step
    # the checkpoint is written before the model file: whichever write died, both files are whole
    assert (ckpt_steps, model_steps) == ((5, 5) if kind == ".ckpt" else (10, 5))
    monkeypatch.setattr(files, "save_file", real)
    assert train(tiny_network(residual=True), SR, data, SETTINGS, out, resume=True).info.training["steps"] == 12


def test_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """fsync of the finished temporary file, then the rename, then fsync of the folder: durable after a power cut."""
    log: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        log.append("fsync")
        real_fsync(fd)

    def replace(src, dst) -> None:
        log.append(f"replace {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_model(tmp_path / "m.cvdm", tiny_network(residual=True), SR)
    folder_fsync = ["fsync"] if sys.platform != "win32" else []  # Windows cannot open (or fsync) a folder
    assert log == ["fsync", "replace m.cvdm", *folder_fsync]
    assert (tmp_path / "m.cvdm").stat().st_mode & 0o777 == 0o644


def test_fine_tuning_records_base_model_data_and_run(tmp_path):
    base_path = save_model(tmp_path / "base.cvdm", tiny_network(residual=True), SR)
    before = _tensors(base_path)
    job = TrainJob(
        task="sr",
        output=str(tmp_path / "tuned.cvdm"),
        base_model=str(base_path),
        simulate_n=4,
        simulate_size=32,
        train=TrainSettings(steps=3, batch_size=2, patch_size=32, val_fraction=0.25, val_every=3, device="cpu"),
    )
    gen = run_job(job)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            model = stop.value
            break
    assert [(e.step, e.val_loss is not None) for e in events] == [(1, False), (2, False), (3, True)]  # val_every=3
    training = load_model(tmp_path / "tuned.cvdm").info.training
    assert model.info.name == "tuned" and training["fine_tuned_from"] == "tiny"
    assert training["base_model"]["sha256"] == load_model(base_path).sha256
    assert training["data"]["pairs"] == 4 and training["data"]["input_pixel_um"] == 0.0626
    assert training["data"]["normalization"]["input"] == "percentile" and len(training["data"]["fingerprint"]) == 64
    assert training["pairs"] == {"train": 3, "validation": 1}
    assert training["steps"] == 3 and training["device"].startswith("cpu")
    assert training["processes"] == 1 and "saved_at" in training
    # the base model's file is untouched, and a loaded base model is copied, never trained in place
    assert all(torch.equal(v, _tensors(base_path)[k]) for k, v in before.items())
    base = load_model(base_path)
    base.info.sampler.learned_grids = {2: [1.0, 0.3, 0.0]}
    base.network.to(memory_format=torch.channels_last)  # a base model a caller laid out for fast CPU inference
    network, info = finetune_start(base, "copy")
    assert network.denoiser.unet.stem.weight.is_contiguous()
    assert network is not base.network and info.name == "copy" and base.info.name == "tiny"
    assert info.sampler.learned_grids == {} and base.info.sampler.learned_grids  # grids belong to the base weights


def test_a_stop_before_the_first_step_leaves_an_older_run_untouched(data, tmp_path):
    out = tmp_path / "m.cvdm"
    train(tiny_network(residual=True), SR, data, SETTINGS.model_copy(update={"steps": 2}), out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    token = CancelToken()
    token.cancel()  # e.g. Ctrl-C while the data were loading
    events = list(iter_train(tiny_network(residual=True), SR, data, SETTINGS, out, stop=token))
    assert events == [] and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
