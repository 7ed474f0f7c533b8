"""The plane-by-plane job on a dask.distributed cluster: one task per plane, results in the same OME-Zarr store.

Each worker loads the model once (cached per worker) and opens the input itself, so the input and the output
must be on a filesystem every worker sees (a cluster's shared disk; a local cluster shares this machine's).  A
task reads its plane, reconstructs it with the plane's own seed (:func:`~napari_cvdm.io.stack.plane_seed`),
writes it and its completion mark into the store and returns; nothing but the plane index travels back.  The
first plane of a new output runs alone (it creates the store with the channels its result has), the rest run
in parallel.  A task lost with its worker is rerun by the scheduler (``retries``), and a job cut short is
continued by the same command: the store's marks say which planes are finished.

Needs the optional extra ``napari-cvdm[cluster]`` (dask.distributed); SLURM and other batch systems through
dask-jobqueue, which the package does not depend on (docs/big-data.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from .._runtime import drive
from ..settings import ReconstructSettings
from ..tasks import InputError
from .readers import open_source
from .stack import PlaneDone, StackJob, StackSummary, compute_plane, finish, prepare, store_result

RETRIES = 3  # a plane whose worker died is rerun this many times before the file counts as failed


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


_JOBS: dict[tuple[str, PlaneTask | str], Any] = {}
_LOCK = threading.Lock()


def _worker_key() -> str:
    try:
        from distributed import get_worker

        return get_worker().id
    except (ImportError, ValueError):
        return f"thread-{threading.get_ident()}"


def _worker_job(task: PlaneTask) -> StackJob:
    """This worker's job for ``task``: the model loaded once per worker, the input opened once per job."""
    from ..registry import load_model

    me = _worker_key()
    with _LOCK:
        model = _JOBS.get((me, task.model))
        if model is None:
            model = _JOBS[(me, task.model)] = load_model(task.model)
        job = _JOBS.get((me, task))
        if job is None:  # a new input: close the inputs of this worker's earlier jobs (thousands of files)
            for key in [key for key in _JOBS if key[0] == me and isinstance(key[1], PlaneTask)]:
                _JOBS.pop(key).source.close()
            source = open_source(task.input, task.plane_ndim)
            job = _JOBS[(me, task)] = prepare(
                model, source, task.output, ReconstructSettings.model_validate_json(task.settings)
            )
    return job


def run_plane(task: PlaneTask, k: int) -> tuple[int, float]:
    """The task: reconstruct plane ``k`` and write it (with its mark) into the job's store; (k, seconds)."""
    start = time.perf_counter()
    job = _worker_job(task)
    result = drive(compute_plane(job, k))
    store_result(job, k, result)
    return k, time.perf_counter() - start


def iter_cluster(job: StackJob, task: PlaneTask, client: Any) -> Generator[PlaneDone, None, StackSummary]:
    """Run ``job``'s unfinished planes as tasks of ``client``'s cluster; yields :class:`PlaneDone` as they land."""
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
    futures = [client.submit(run_plane, task, k, pure=False, retries=RETRIES) for k in todo]
    try:
        for future in as_completed(futures):
            k, seconds = future.result()
            computed.append(k)
            yield PlaneDone(k, n, computed=True, seconds=seconds)
    finally:
        client.cancel([f for f in futures if not f.done()])
    left = job.pending()
    if left:
        raise RuntimeError(f"planes {left} are not in {job.store_path} after the run; run the command again")
    finish(job)
    return StackSummary(job.output, n, sorted(computed), n - len(pending), time.perf_counter() - start)
