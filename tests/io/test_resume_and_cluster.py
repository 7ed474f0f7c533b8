"""Kill -9 in the middle of a stack, rerun: complete, equal to an uninterrupted run, finished planes not redone;
a dask.distributed cluster of 2 workers gives the single process's output bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from napari_cvdm._runtime import drive
from napari_cvdm.cli import main
from napari_cvdm.io.omezarr import PlaneStore
from napari_cvdm.io.readers import open_source
from napari_cvdm.io.stack import iter_stack, prepare
from tests.io.conftest import FAST, stack

N_PLANES = 12


def _chunk_times(out, planes) -> dict[int, float]:
    """Modification time of the first data chunk of each plane (c=0, z=k, tile 0, 0)."""
    return {k: os.stat(out / "0" / "c" / "0" / str(k) / "0" / "0").st_mtime_ns for k in planes}


def test_kill_9_then_rerun_gives_the_uninterrupted_result_without_redoing_finished_planes(tmp_path, sr_file, capsys):
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack(N_PLANES, 48), photometric="minisblack")
    out = tmp_path / "killed.zarr"
    flags = [
        "--model",
        str(sr_file),
        "--steps",
        "15",
        "--n-samples",
        "2",
        "--device",
        "cpu",
        "-q",
        "--pixel-size",
        "0.0626",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread, as in this process: identical numbers
    cmd = [sys.executable, "-m", "napari_cvdm.cli", "predict", str(src), "-o", str(out), *flags]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "zarr.json").exists():
            try:
                done = PlaneStore.open(out, mode="r").done(verify=False)
            except Exception:  # noqa: BLE001  the store's metadata may be mid-write
                done = []
            if len(done) >= 3:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    before = PlaneStore.open(out).done()
    assert 3 <= len(before) < N_PLANES, f"killed after {len(before)} planes"
    stamps = _chunk_times(out, before)

    capsys.readouterr()
    assert main(["predict", str(src), "-o", str(out), *flags]) == 0
    counted = f"{N_PLANES - len(before)} plane(s) computed, {len(before)} already in their output"
    assert counted in capsys.readouterr().out
    after = PlaneStore.open(out)
    assert after.done() == list(range(N_PLANES))
    assert _chunk_times(out, before) == stamps  # the finished planes were not written again

    reference = tmp_path / "whole.zarr"
    assert main(["predict", str(src), "-o", str(reference), *flags]) == 0
    whole = PlaneStore.open(reference)
    np.testing.assert_array_equal(after.group["0"][:], whole.group["0"][:])


def test_the_rerun_counts_only_the_missing_planes(tmp_path, sr_file, capsys):
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, stack(5), photometric="minisblack")
    out = tmp_path / "o.zarr"
    flags = [
        "--model",
        str(sr_file),
        "--steps",
        "1",
        "--n-samples",
        "2",
        "--device",
        "cpu",
        "-q",
        "--pixel-size",
        "0.0626",
    ]
    assert main(["predict", str(src), "-o", str(out), *flags]) == 0
    store = PlaneStore.open(out)
    store.group["napari_cvdm_done"][3] = 0
    capsys.readouterr()
    assert main(["predict", str(src), "-o", str(out), *flags]) == 0
    assert "1 plane(s) computed, 4 already in their output" in capsys.readouterr().out


def test_a_local_cluster_of_two_workers_equals_one_process(tmp_path, sr_file, sr_model):
    pytest.importorskip("distributed")
    from napari_cvdm.io.cluster import PlaneTask, iter_cluster, make_client

    src = tmp_path / "s.tif"
    tifffile.imwrite(src, stack(6), photometric="minisblack")
    single = tmp_path / "single.zarr"
    drive(iter_stack(prepare(sr_model, open_source(src), single, FAST)))

    spread = tmp_path / "dask.zarr"
    job = prepare(sr_model, open_source(src), spread, FAST)
    task = PlaneTask(str(sr_file), str(src), 2, str(spread), FAST.model_dump_json())
    client = make_client(workers=2, processes=False)  # worker threads: processes would import torch twice more
    try:
        events = []
        summary = drive(iter_cluster(job, task, client), events.append)
        workers = set(client.run(lambda dask_worker: dask_worker.id).values())
    finally:
        client.close()
    assert sorted(summary.computed) == list(range(6)) and len(workers) == 2
    np.testing.assert_array_equal(PlaneStore.open(spread).group["0"][:], PlaneStore.open(single).group["0"][:])
    assert PlaneStore.open(spread).channels == PlaneStore.open(single).channels
