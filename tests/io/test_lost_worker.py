"""A worker process killed with SIGKILL in the middle of a dask job: its planes run again and the output equals a
single process's bit for bit; a plane lost beyond the scheduler's allowed failures leaves the other planes in, and
the same job run again computes only the missing ones.  Also: a worker reloads a model file rewritten in place."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from napari_cvdm._runtime import drive
from napari_cvdm.io.omezarr import PlaneStore
from napari_cvdm.io.readers import open_source
from napari_cvdm.io.stack import PlaneDone, iter_stack, prepare
from napari_cvdm.model.files import save_model
from napari_cvdm.registry import load_model
from napari_cvdm.settings import ReconstructSettings
from tests.conftest import tiny_network
from tests.io.conftest import FAST, stack

try:
    import distributed
except ImportError:  # the [test] extra has it
    distributed = None

needs_distributed = pytest.mark.skipif(distributed is None, reason="needs dask.distributed")

N_PLANES = 8
SLOW = ReconstructSettings(steps=15, n_samples=2, device="cpu")  # ≈ 0.5 s a plane on a worker: time to kill one
TIMEOUT = 120.0  # seconds for one cluster run; the whole file takes ≈ 20 s


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A local cluster of 2 single-threaded worker processes under nannies (a killed worker is restarted).

    A LocalCluster drops a worker whose name has not come back ``lost-worker-timeout`` (15 s) after *any* of its
    deaths, so a second kill of the same worker within 15 s of the first can lose it for good (the stale timer
    fires while it restarts); these tests kill twice in a few seconds, hence the longer timeout."""
    if distributed is None:
        pytest.skip("needs dask.distributed")
    import dask

    from napari_cvdm.io.cluster import make_client

    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"}):
        client = make_client(workers=2, processes=True)
        try:
            client.wait_for_workers(2, timeout=60)
            yield client
        finally:
            cluster = client.cluster
            client.close()
            cluster.close()


def _run(gen: Generator[Any, None, Any], on_event: Callable[[Any], None]) -> Any:
    """``drive(gen, on_event)`` in a thread, failing the test (not hanging it) after ``TIMEOUT`` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = drive(gen, on_event)
        except BaseException as err:  # noqa: BLE001  handed to the test's thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    if thread.is_alive():
        pytest.fail(f"the cluster run did not finish in {TIMEOUT:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _kill_a_busy_worker(client: Any) -> tuple[int, tuple[str, ...]]:
    """SIGKILL the worker process with the most tasks assigned; (its pid, those tasks)."""
    pids = client.run(os.getpid)
    address, keys = max(client.processing().items(), key=lambda item: len(item[1]))
    os.kill(pids[address], signal.SIGKILL)
    return pids[address], tuple(keys)


def _killer(client: Any, out: Path, after: int) -> tuple[Callable[[Any], None], dict[str, Any]]:
    """An event handler that kills a busy worker once ``after`` planes have landed (the first plane runs alone, so
    ``after=2`` is inside the parallel part, with every worker holding tasks); it notes the planes landed by then
    (``landed``) and their chunks' times (``stamps``)."""
    state: dict[str, Any] = {"landed": []}

    def on_event(event: Any) -> None:
        if isinstance(event, PlaneDone) and event.computed:
            state["landed"].append(event.index)
            if len(state["landed"]) == after:
                time.sleep(0.2)  # the client has handed the landed planes' tasks back to the scheduler
                state["stamps"] = _chunk_times(out, state["landed"])
                state["pid"], state["lost"] = _kill_a_busy_worker(client)

    return on_event, state


def _set_allowed_failures(dask_scheduler: Any, n: int) -> int:
    old, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, n
    return old


def _chunk_times(out: Path, planes: list[int]) -> dict[int, int]:
    """Modification time of each plane's first data chunk (c=0, z=k, tile 0, 0)."""
    return {k: os.stat(out / "0" / "c" / "0" / str(k) / "0" / "0").st_mtime_ns for k in planes}


def _job(sr_file: Path, src: Path, out: Path) -> tuple[Any, Any]:
    """The job and its task, as ``predict --workers`` makes them."""
    from napari_cvdm.io.cluster import PlaneTask

    job = prepare(load_model(sr_file), open_source(src), out, SLOW)
    return job, PlaneTask(str(sr_file), str(src), 2, str(out), SLOW.model_dump_json())


def _single_process(sr_file: Path, src: Path, out: Path) -> np.ndarray:
    drive(iter_stack(prepare(load_model(sr_file), open_source(src), out, SLOW)))
    return PlaneStore.open(out).group["0"][:]


@needs_distributed
def test_a_killed_worker_s_planes_run_again_and_the_output_equals_one_process(tmp_path, sr_file, client):
    from napari_cvdm.io.cluster import iter_cluster

    client.wait_for_workers(2, timeout=60)
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, stack(N_PLANES), photometric="minisblack")
    out = tmp_path / "dask.zarr"
    job, task = _job(sr_file, src, out)
    on_event, state = _killer(client, out, after=2)

    summary = _run(iter_cluster(job, task, client), on_event)

    assert state["lost"], "the killed worker held no task"
    assert state["pid"] not in client.run(os.getpid).values()
    assert sorted(summary.computed) == list(range(N_PLANES)) and summary.skipped == 0
    assert _chunk_times(out, state["landed"][:2]) == state["stamps"]  # planes landed before the kill: not redone
    assert PlaneStore.open(out).done() == list(range(N_PLANES))
    single = _single_process(sr_file, src, tmp_path / "single.zarr")
    np.testing.assert_array_equal(PlaneStore.open(out).group["0"][:], single)


@needs_distributed
def test_a_plane_lost_beyond_the_allowed_failures_is_computed_by_the_rerun_alone(tmp_path, sr_file, client):
    from napari_cvdm.io.cluster import iter_cluster

    client.wait_for_workers(2, timeout=60)
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, stack(N_PLANES), photometric="minisblack")
    out = tmp_path / "dask.zarr"
    job, task = _job(sr_file, src, out)
    on_event, state = _killer(client, out, after=2)
    old = client.run_on_scheduler(_set_allowed_failures, n=0)  # the first worker death loses its tasks
    try:
        with pytest.raises(RuntimeError, match="are not in") as failure:
            _run(iter_cluster(job, task, client), on_event)
    finally:
        client.run_on_scheduler(_set_allowed_failures, n=old)
    assert state["lost"], "the killed worker held no task"
    assert isinstance(failure.value.__cause__, distributed.KilledWorker)
    missing = PlaneStore.open(out).pending()
    assert 1 <= len(missing) <= len(state["lost"])  # the victim's tasks, less one it may have written unreported
    assert f"planes {missing}" in str(failure.value)
    done = sorted(set(range(N_PLANES)) - set(missing))
    stamps = _chunk_times(out, done)

    client.wait_for_workers(2, timeout=60)  # the nanny has restarted the killed worker
    job, task = _job(sr_file, src, out)  # the same command again
    summary = _run(iter_cluster(job, task, client), lambda event: None)

    assert sorted(summary.computed) == missing and summary.skipped == len(done)
    assert PlaneStore.open(out).done() == list(range(N_PLANES))
    assert _chunk_times(out, done) == stamps  # the planes already in were not written again
    single = _single_process(sr_file, src, tmp_path / "single.zarr")
    np.testing.assert_array_equal(PlaneStore.open(out).group["0"][:], single)


def test_a_worker_reloads_a_model_file_rewritten_in_place(tmp_path, sr_file):
    """A long-lived cluster outlives a retrained model: the worker's cached model must not be the old file's."""
    from napari_cvdm.io.cluster import PlaneTask, run_plane

    src = tmp_path / "s.tif"
    tifffile.imwrite(src, stack(2), photometric="minisblack")
    digests = []
    for name in ("before.zarr", "after.zarr"):
        out = tmp_path / name
        assert run_plane(PlaneTask(str(sr_file), str(src), 2, str(out), FAST.model_dump_json()), 0)[0] == 0
        digests.append(PlaneStore.open(out).fingerprint["model"]["sha256"])
        assert digests[-1] == load_model(sr_file).sha256
        info = load_model(sr_file).info
        save_model(sr_file, tiny_network(residual=True, seed=len(digests)), info)  # retrained, same path
    assert digests[0] != digests[1]
