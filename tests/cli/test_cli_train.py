"""``napari-cvdm train``: --resume continues exactly, refuses a mismatched checkpoint; torchrun runs DDP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from napari_cvdm import load_model
from napari_cvdm.cli import main
from napari_cvdm.training.checkpoint import read_checkpoint, write_checkpoint

TINY_JOB = [
    "train",
    "--task",
    "sr",
    "--simulate-n",
    "3",
    "--simulate-size",
    "16",
    "--width",
    "8",
    "--depth",
    "2",
    "--batch-size",
    "2",
    "--patch-size",
    "32",
    "--val-fraction",
    "0",
    "--device",
    "cpu",
    "-q",
]


def test_train_resume_continues_a_run_exactly(tmp_path, capsys):
    once = tmp_path / "once.cvdm"
    assert main([*TINY_JOB, "--steps", "6", "-o", str(once)]) == 0
    twice = tmp_path / "twice.cvdm"
    assert main([*TINY_JOB, "--steps", "3", "-o", str(twice)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main([*TINY_JOB, "--steps", "6", "--resume", "-o", str(twice)]) == 0
    assert load_model(twice).info.training["resumed_at_steps"] == [3]
    a, b = load_file(str(once)), load_file(str(twice))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_resume_refuses_a_mismatched_or_missing_checkpoint(tmp_path, capsys):
    out = tmp_path / "m.cvdm"
    assert main([*TINY_JOB, "--steps", "2", "-o", str(out)]) == 0
    assert main([*TINY_JOB, "--steps", "4", "--learning-rate", "0.01", "--resume", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot resume from" in err and "learning_rate: checkpoint 0.0002, now 0.01" in err
    assert read_checkpoint(tmp_path / "m.ckpt").step == 2  # untouched
    assert main([*TINY_JOB, "--steps", "4", "--resume", "-o", str(tmp_path / "new.cvdm")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_a_cosine_run_cannot_resume_with_other_steps(tmp_path, capsys):
    cosine = [*TINY_JOB, "--lr-decay", "cosine"]
    out = tmp_path / "m.cvdm"
    assert main([*cosine, "--steps", "3", "-o", str(out)]) == 0
    assert main([*cosine, "--steps", "6", "--resume", "-o", str(out)]) == 2  # the decay would end elsewhere
    assert "steps: checkpoint 3, now 6" in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "m.ckpt").step == 3  # untouched


def test_a_checkpoint_written_before_lr_decay_existed_still_resumes(tmp_path):
    out = tmp_path / "m.cvdm"
    assert main([*TINY_JOB, "--steps", "2", "-o", str(out)]) == 0
    state = read_checkpoint(tmp_path / "m.ckpt")
    del state.settings["lr_decay"]  # as written by an older version
    write_checkpoint(tmp_path / "m.ckpt", state)
    assert main([*TINY_JOB, "--steps", "3", "--resume", "-o", str(out)]) == 0
    assert load_model(out).info.training["resumed_at_steps"] == [2]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed support")
def test_torchrun_trains_with_ddp_on_the_cpu_and_rank_0_writes_one_model(tmp_path):
    out = tmp_path / "ddp.cvdm"
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    command = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    job = [a for a in TINY_JOB if a != "-q"]
    command += ["--standalone", "--nproc_per_node", "2", "-m", "napari_cvdm.cli", *job, "--steps", "3"]
    command += ["--log-every", "1", "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("step 3/3") == 1  # only rank 0 logs
    assert result.stdout.count("wrote") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.ckpt", "ddp.cvdm"]
    model = load_model(out)
    assert model.info.training["processes"] == 2 and model.info.training["patches_per_step"] == 4
    state = read_checkpoint(tmp_path / "ddp.ckpt")
    assert state.step == 3 and state.fingerprint["world_size"] == 2
    assert state.numpy_rng[0] != state.numpy_rng[1]  # each process drew its own patches
