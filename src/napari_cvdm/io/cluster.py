"""The plane-by-plane job on a dask.distributed cluster: one task per plane, results in the same OME-Zarr store.

Each worker loads the model once (cached per worker) and opens the input itself, so the input and the output
must be on a filesystem every worker sees (a cluster's shared disk; a local cluster shares this machine's).  A
task reads its plane, reconstructs it with the plane's own seed (``sample_seed(seed, k)``: :mod:`.stack`),
writes it and its completion mark into the store and returns; nothing but the plane index travels back.  The
first plane of a new output runs alone (it creates the store with the channels its result has), the rest run
in parallel.  A task lost with its worker is rerun by the scheduler on another worker (or on the one its nanny
restarts), up to the scheduler's ``distributed.scheduler.allowed-failures`` (3) times; a task that raises is rerun
``RETRIES`` times.  A plane that fails beyond that does not stop the others: they all land, and the file then fails
naming the missing planes; the same command continues the job, since the store's marks say which planes are
finished.

Needs the optional extra ``napari-cvdm[cluster]`` (dask.distributed); SLURM and other batch systems through
dask-jobqueue, which the package does not depend on (docs/big-data.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._runtime import drive
from ..model.files import TrainedModel
from ..settings import ReconstructSettings
from ..tasks import InputError
from .readers import open_source
from .stack import PlaneDone, StackJob, StackSummary, finish, prepare, write_plane

NO_WORKERS_TIMEOUT = "10 minutes"  # a local cluster with no worker left gives up on its planes after this
RETRIES = 3  # a plane whose task raised is rerun this many times (a dead worker's: the scheduler's allowed-failures)


def need_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise InputError(
            "--scheduler and --workers run on dask.distributed, which is not installed; "
            "pip install 'napari-cvdm[cluster]'"
        ) from None
    return distributed


def make_client(scheduler: str | None = None, workers: int = 2, processes: bool = True) -> Any:
    """A client of the cluster at ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``), else of a new local cluster of
    ``workers`` single-threaded workers (``processes=False``: threads of this process, for tests)."""
    distributed = need_distributed()
    if scheduler:
        try:
            return distributed.Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as err:
            raise InputError(
                f"could not reach the dask scheduler at {scheduler} ({err}); start it (dask scheduler, or "
                "dask-jobqueue's SLURMCluster) and give its address, e.g. --scheduler tcp://host:8786"
            ) from err
    if workers < 1:
        raise InputError(f"--workers must be at least 1; got {workers}")
    import dask

    # a local cluster whose workers have all died fails its planes after this long instead of waiting for ever
    # (the planes are then named as missing and the same command continues); a remote scheduler has its own setting
    dask.config.set({"distributed.scheduler.no-workers-timeout": NO_WORKERS_TIMEOUT})
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None
    )
    return distributed.Client(cluster)


@dataclass(frozen=True)
class PlaneTask:
    """What a worker needs to run planes of one job (all plain values: it travels to the workers)."""

    model: str  # registered model name or .cvdm path
    input: str
    plane_ndim: int
    output: str
    settings: str  # ReconstructSettings as JSON


_MODELS: dict[tuple[str, str], tuple[tuple[int, ...], TrainedModel]] = {}  # (worker, model) → (file stamp, model)
_JOBS: dict[str, tuple[PlaneTask, StackJob]] = {}  # worker → its current job
_LOCK = threading.Lock()


def _worker_key() -> str:
    try:
        from distributed import get_worker

        return get_worker().id
    except (ImportError, ValueError):
        return f"thread-{threading.get_ident()}"


def _stamp(model: str) -> tuple[int, ...]:
    """A model file's identity (inode, size, modification time): a file rewritten since is loaded again."""
    path = Path(model)
    if not path.is_file():
        return ()  # a registered model's name
    stat = path.stat()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _worker_job(task: PlaneTask) -> StackJob:
    """This worker's job for ``task``: the model loaded once per worker (again if its file changed since: a
    long-lived cluster outlives a retrained model), the input opened once per job."""
    from ..registry import load_model

    me, stamp = _worker_key(), _stamp(task.model)
    with _LOCK:
        cached = _MODELS.get((me, task.model))
        if cached is None or cached[0] != stamp:
            cached = _MODELS[(me, task.model)] = (stamp, load_model(task.model))
        model = cached[1]
        current = _JOBS.get(me)
        if current is not None and current[0] == task and current[1].model is model:
            return current[1]
        if current is not None:  # a new input (or model): close the earlier one's input (thousands of files)
            current[1].source.close()
        source = open_source(task.input, task.plane_ndim)
        job = prepare(model, source, task.output, ReconstructSettings.model_validate_json(task.settings))
        _JOBS[me] = (task, job)
    return job


def run_plane(task: PlaneTask, k: int) -> tuple[int, float]:
    """The task: reconstruct plane ``k`` and write it (with its mark) into the job's store; (k, seconds)."""
    start = time.perf_counter()
    job = _worker_job(task)
    drive(write_plane(job, k))
    return k, time.perf_counter() - start


def iter_cluster(job: StackJob, task: PlaneTask, client: Any) -> Generator[PlaneDone, None, StackSummary]:
    """Run ``job``'s unfinished planes as tasks of ``client``'s cluster; yields :class:`PlaneDone` as they land.

    A plane lost beyond the retries does not stop the others; once they are in, the run fails naming it."""
    from distributed import as_completed

    start = time.perf_counter()
    n = job.n_planes
    pending = job.pending()
    for k in sorted(set(range(n)) - set(pending)):
        yield PlaneDone(k, n, computed=False)
    computed: list[int] = []
    todo = list(pending)
    if todo and job.store() is None:  # the first plane creates the store: alone, so no two tasks race to create it
        k, seconds = client.submit(run_plane, task, todo[0], pure=False, retries=RETRIES).result()
        computed.append(k)
        yield PlaneDone(k, n, computed=True, seconds=seconds)
        todo = todo[1:]
    futures = {client.submit(run_plane, task, k, pure=False, retries=RETRIES): k for k in todo}
    failed: dict[int, BaseException] = {}
    try:
        for future in as_completed(futures):
            k = futures.pop(future)
            try:
                seconds = future.result()[1]
            except Exception as err:  # noqa: BLE001  lost beyond the retries: the other planes go on
                failed[k] = err
                continue
            finally:  # the plane is in the store: a worker lost later must not make the scheduler recompute it
                future.release()
            computed.append(k)
            yield PlaneDone(k, n, computed=True, seconds=seconds)
    finally:
        client.cancel([f for f in futures if not f.done()])
    left = job.pending()
    if left:
        first = failed[min(failed)] if failed else None
        why = ""
        if first is not None:  # the first failed plane's reason, in one line
            why = f" (plane {min(failed)}: {type(first).__name__}: " + str(first).partition("\n")[0] + ")"
        raise RuntimeError(
            f"planes {left} are not in {job.store_path} after the run{why}; the others are, and the same command "
            "again computes only the missing ones"
        ) from first
    finish(job)
    return StackSummary(job.output, n, sorted(computed), n - len(pending), time.perf_counter() - start)
