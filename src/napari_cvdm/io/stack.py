"""The plane-by-plane job: a lazy input → one reconstruction per plane → an output store, resumable.

:func:`prepare` checks everything that can be checked before any work (the output's kind, the planes' shape
against the model, an existing output's fingerprint) and says which planes are still to do; :func:`iter_stack`
is the job itself, a generator (the CLI drives it, the napari widget runs it in a worker, dask runs its
:func:`write_plane` per task) that yields :class:`~napari_cvdm._runtime.Progress` within a plane and
:class:`PlaneDone` after each, and returns a :class:`StackSummary`.  Closing it stops the job within one network
evaluation; every plane written so far stays, marked, and a rerun continues from there.

Each plane is written a row band at a time as its tiles finish (:mod:`napari_cvdm.inference.bands`), so a huge
plane's outputs are never held whole; its completion mark is written after its last band, so a plane cut short
is redone.  Plane ``k`` is seeded as plane ``k`` of its stack (``sample_seed(settings.seed, k)``, one stream per
tile), so its result does not depend on which process computes it or in what order: a resumed, a
single-process and a dask run give the same numbers, and the same as ``reconstruct()`` on the whole stack.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._runtime import Progress
from .._version import __version__
from ..inference.bands import Band
from ..inference.optics import plan_optics
from ..inference.reconstruct import output_shape
from ..inference.resolution_check import qualified_calibration
from ..inference.run import ReconstructionRun, dark_subtracted, prepare_run
from ..model.files import TrainedModel
from ..settings import ReconstructSettings
from ..tasks import InputError, check_image
from .ometiff import is_ome_tiff, read_info, work_store, write_ome_tiff
from .omezarr import OutputMismatch, PlaneStore, fingerprint_changes, lead_axes_for, remove
from .readers import PlaneSource

# settings that never change the numbers, so a job may resume with other values (another device, for example)
NOT_IN_FINGERPRINT = ("device",)


@dataclass
class PlaneDone:
    """Plane ``index`` of ``n_planes`` is in the output: ``computed`` now, or found finished (``False``)."""

    index: int
    n_planes: int
    computed: bool
    seconds: float = 0.0


@dataclass
class StackSummary:
    output: Path
    n_planes: int
    computed: list[int]
    skipped: int
    seconds: float


def output_kind(path: str | Path) -> str:
    """``"zarr"`` for ``*.zarr``, ``"ome-tiff"`` for ``*.ome.tif(f)``; anything else is refused."""
    path = Path(path)
    if path.name.lower().endswith(".zarr"):
        return "zarr"
    if is_ome_tiff(path):
        return "ome-tiff"
    raise InputError(
        f"cannot write {path}: the output's extension decides its format; use .zarr (OME-Zarr) or .ome.tif (OME-TIFF)"
    )


def model_digest(model: TrainedModel) -> str:
    """The model file's SHA-256, or (for a model made in memory) a SHA-256 of its weights."""
    if model.sha256:
        return model.sha256
    digest = hashlib.sha256()
    for name, tensor in sorted(model.network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def fingerprint(model: TrainedModel, settings: ReconstructSettings, shape: tuple[int, ...]) -> dict[str, Any]:
    """What a run's numbers depend on: the model (name and digest), the settings, the input's shape."""
    kept = {k: v for k, v in settings.model_dump(mode="json").items() if k not in NOT_IN_FINGERPRINT}
    if not kept.get("camera_offset"):  # the default: absent, as in stores written before the setting existed
        kept.pop("camera_offset", None)
    return {
        "model": {"name": model.info.name, "sha256": model_digest(model)},
        "settings": kept,
        "input_shape": list(shape),
        "seed_rule": "plane k: sample_seed(seed, k)",  # then tile t: sample_seed(that, t)
    }


@dataclass
class StackJob:
    """A checked job: ``model`` on every plane of ``source``, into ``output`` (``.zarr`` or ``.ome.tif``)."""

    model: TrainedModel
    source: PlaneSource
    output: Path
    settings: ReconstructSettings
    kind: str
    fingerprint: dict[str, Any]
    lead_axes: str
    out_hw: tuple[int, int]
    finished: bool = False  # an OME-TIFF output already written by the same run
    meta: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # where each stated optics value came from
    _run: ReconstructionRun | None = field(default=None, repr=False)

    @property
    def run(self) -> ReconstructionRun:
        """The checked reconstruction run every plane of this job uses (one network copy for all planes)."""
        if self._run is None:
            self._run = prepare_run(self.model, self.source.plane_shape[-2:], self.settings, self.sources)
        return self._run

    @property
    def store_path(self) -> Path:
        return self.output if self.kind == "zarr" else work_store(self.output)

    @property
    def n_planes(self) -> int:
        return self.source.n_planes

    def store(self) -> PlaneStore | None:
        return PlaneStore.open(self.store_path) if self.store_path.exists() else None

    def pending(self) -> list[int]:
        """The planes still to compute (all but the finished and verified ones)."""
        if self.finished:
            return []
        store = self.store()
        return list(range(self.n_planes)) if store is None else store.pending()


def prepare(
    model: TrainedModel,
    source: PlaneSource,
    output: str | Path,
    settings: ReconstructSettings | None = None,
    overwrite: bool = False,
    require_pixel: bool = False,
    sources: Mapping[str, str] | None = None,
) -> StackJob:
    """Check the job before any work: the output's kind, every plane's shape for ``model``, the optics against
    the model's range, and an existing output (same run: it resumes; another model or other settings:
    :class:`OutputMismatch`).

    Without ``settings.pixel_size_um`` the source's own pixel size (OME-TIFF / ImageJ / OME-Zarr metadata) is
    used; with ``require_pixel`` (the CLI) a source that states none is refused for a model that states its
    optics, since its pixel size would be a guess.  ``sources`` says where stated optics values came from (the
    widget: the layer, its file, typed), for the output's optics record; default: the CLI's flags."""
    settings = settings or ReconstructSettings()
    stated = dict(sources or {})
    sources = {}
    if settings.pixel_size_um is not None:
        sources["pixel_size_um"] = stated.get("pixel_size_um", "stated (--pixel-size)")
    elif source.pixel_um:
        settings = settings.model_copy(update={"pixel_size_um": source.pixel_um})
        sources["pixel_size_um"] = f"the metadata of {Path(source.name).name}"
    elif require_pixel and model.info.covered_optics() is not None:
        raise InputError(
            f"{source.name} states no pixel size (no OME-TIFF, ImageJ or OME-Zarr calibration in µm); give it with "
            f"--pixel-size, e.g. --pixel-size 0.108 or 108nm. {model.info.name} assumes "
            f"{model.info.input_pixel_um * 1000:.1f} nm pixels and checks yours against its range"
        )
    sources = {**stated, **sources}
    plan_optics(model.info, settings, sources)  # optics outside the model's range: refused now
    output = Path(output)
    kind = output_kind(output)
    info, min_size = model.info, model.network.min_size
    plane = source.plane_shape
    if model.task == "phase" and (len(plane) != 3 or plane[0] != 2):
        raise InputError(f"{source.name}: phase needs planes (2, H, W) = (I(−d), I(+d)); got shape {source.shape}")
    if model.task != "phase" and len(plane) != 2:
        raise InputError(f"{source.name}: super-resolution needs planes (H, W); got shape {source.shape}")
    if min(plane[-2:]) < min_size:
        raise InputError(
            f"{source.name}: planes of {plane[-2]}×{plane[-1]} px are smaller than this model's minimum of "
            f"{min_size} px"
        )
    fp = fingerprint(model, settings, source.shape)
    job = StackJob(
        model, source, output, settings, kind, fp, lead_axes_for(source.axes, len(source.lead)),
        output_shape(plane, model, settings),
        meta={
            "name": output.name.split(".")[0],
            "input": source.name,
            "model": {"name": info.name, "source": model.source, "sha256": fp["model"]["sha256"]},
            "napari_cvdm_version": __version__,
            "settings": settings.model_dump(mode="json"),
        },
    )  # fmt: skip
    job.sources = sources
    if kind == "ome-tiff" and output.exists():
        if overwrite:
            remove(output)
        else:
            written = read_info(output)
            if written is None:
                raise OutputMismatch(f"{output} exists and is not a napari-cvdm output; choose another output")
            changes = fingerprint_changes(written.get("fingerprint", {}), fp)
            if changes:
                raise OutputMismatch(
                    f"{output} holds results of another run ({'; '.join(changes)}); choose a new output, or add "
                    "--overwrite to replace it"
                )
            job.finished = True
    PlaneStore.existing(job.store_path, fp, overwrite=overwrite)
    return job


def open_store(job: StackJob, plane: np.ndarray) -> PlaneStore:
    """The job's output store, created empty (every plane unmarked) with the run's channels if it is new; its
    optics record gets the noise and resolution verdicts of ``plane``, the first plane computed
    (:meth:`~napari_cvdm.inference.run.ReconstructionRun.image_checks`)."""
    store = job.store()
    if store is not None:
        return store
    run = job.run
    as_run = run.resolved_settings()
    resolved = {key: as_run.get(key) for key in ("tile_size", "tile_overlap", "method", "steps", "grid")}
    optics = run.image_checks(plane)  # advice from one plane; never raises
    return PlaneStore.create(
        job.store_path,
        lead=job.source.lead,
        lead_axes=job.lead_axes,
        plane_hw=job.out_hw,
        channels=run.channels,
        pixel_um=run.optics.output_pixel_um,
        fingerprint=job.fingerprint,
        meta={
            **job.meta,
            "resolved": resolved,
            "interval_level": job.settings.interval_level,
            "optics": optics,
            "calibration": qualified_calibration(
                run.calibration_note, optics["resolution"], run.calibration is not None
            ),
        },
    )


def write_plane(job: StackJob, k: int) -> Generator[Progress, None, None]:
    """Reconstruct plane ``k`` (read now, and only it) and write it band by band, then its completion mark;
    yields the core's progress with the plane in its stage."""
    run = job.run
    image = np.asarray(job.source.plane(k))
    check_image(dark_subtracted(image, job.settings.camera_offset), job.model.info)
    store = open_store(job, image)
    for event in run.iter_plane(image, k, f"plane {k + 1}/{job.n_planes}"):
        if isinstance(event, Band):
            store.write_rows(k, event.first, _planes_of(event))
        elif isinstance(event, Progress):
            yield event
    store.mark(k)


FLAGGED = {"noise": "outside", "resolution": "mismatch"}  # the image checks' verdicts that warrant a warning


def image_warnings(job: StackJob) -> list[str]:
    """The notes of the image checks (noise, resolution; from the first computed plane) that the job's output
    records as flagged: warnings, never refusals."""
    store = job.store()
    info = store.info if store is not None else (read_info(job.output) if job.kind == "ome-tiff" else None)
    optics = (info or {}).get("optics") or {}
    return [optics[k]["note"] for k, flagged in FLAGGED.items() if (optics.get(k) or {}).get("verdict") == flagged]


def _planes_of(band: Band) -> list:
    maps = band.maps()
    if maps[0].ndim != 2:
        raise InputError("this model has several output channels; write its results with predict -o out.tif")
    return maps


def finish(job: StackJob) -> None:
    """Once every plane is in: an OME-TIFF output is streamed out of its plane store."""
    if job.kind == "ome-tiff" and not job.finished:
        store = job.store()
        if store is not None and not store.pending():
            write_ome_tiff(store, job.output)
            job.finished = True


def iter_stack(job: StackJob) -> Generator[Progress | PlaneDone, None, StackSummary]:
    """Compute every plane not yet in ``job``'s output, writing each as soon as it is done."""
    start = time.perf_counter()
    pending = job.pending()
    n = job.n_planes
    for k in sorted(set(range(n)) - set(pending)):
        yield PlaneDone(k, n, computed=False)
    computed = []
    for k in pending:
        t0 = time.perf_counter()
        yield from write_plane(job, k)
        computed.append(k)
        yield PlaneDone(k, n, computed=True, seconds=time.perf_counter() - t0)
    finish(job)
    return StackSummary(job.output, n, computed, n - len(pending), time.perf_counter() - start)
