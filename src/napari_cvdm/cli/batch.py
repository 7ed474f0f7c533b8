"""``napari-cvdm predict`` on big data: several inputs, folders, globs, stacks of any length → OME-Zarr / OME-TIFF.

Each input is read lazily plane by plane and its results are written plane by plane into its own output, so a
stack of any length needs the memory of one plane, a rerun continues where a crash or Ctrl-C stopped, and a bad
file is reported at the end without stopping the others.  Outputs: with one input, ``-o out.zarr`` or
``-o out.ome.tif``; with several (or a folder), ``-o FOLDER`` (one ``<stem>.zarr`` per input, or
``<stem>.ome.tif`` with ``--format ome-tif``) or a pattern such as ``-o 'results/{stem}_cvdm.ome.tif'``.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tasks import InputError

GLOB_CHARS = "*?["
STEM_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr")


def stem(path: Path) -> str:
    name = path.name
    for suffix in STEM_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def expand_inputs(items: list[str]) -> tuple[list[Path], bool]:
    """The input files of the command line (folders: their TIFF files and zarr stores, sorted; globs
    expanded), and whether there may be several (a folder or a glob was given)."""
    from ..io.readers import is_image_path, is_zarr_path

    found: list[Path] = []
    many = len(items) > 1
    for item in items:
        path = Path(item)
        if path.is_dir() and not is_zarr_path(path):
            inside = sorted(p for p in path.iterdir() if is_image_path(p) and not p.name.startswith("."))
            if not inside:
                raise InputError(f"the folder {path} holds no .tif, .tiff or .zarr inputs; give a folder of images")
            found += inside
            many = True
        elif not path.exists() and any(c in item for c in GLOB_CHARS):
            matches = sorted(Path(p) for p in glob.glob(item))
            if not matches:
                raise InputError(f"no file matches {item!r}; check the pattern (quote it so the shell leaves it)")
            found += matches
            many = True
        elif not path.exists():
            raise InputError(f"input {path} does not exist; give TIFF files, zarr stores, folders or a glob")
        else:
            found.append(path)
    return found, many


def plan_outputs(inputs: list[Path], many: bool, output: str, fmt: str) -> list[Path]:
    """One output per input (see the module docstring); duplicates are refused."""
    from ..io.stack import output_kind

    out = Path(output)
    suffix = ".ome.tif" if fmt == "ome-tif" else ".zarr"
    if "{stem}" in output:
        paths = [Path(output.format(stem=stem(p))) for p in inputs]
        output_kind(paths[0])
    elif not many and out.name.lower().endswith((".zarr", ".ome.tif", ".ome.tiff")):
        paths = [out]
    elif not many and out.suffix and not out.is_dir():
        raise InputError(
            f"-o {output}: the output's extension decides its format: .zarr (OME-Zarr) or .ome.tif (OME-TIFF); "
            ".tif (one ImageJ TIFF, held in memory) only for one TIFF input"
        )
    elif out.suffix and not out.is_dir():
        raise InputError(
            f"-o {output}: with several inputs, -o is a folder (one <name>{suffix} per input) or a pattern "
            "with {stem}, e.g. -o 'results/{stem}.ome.tif'"
        )
    else:
        paths = [out / f"{stem(p)}{suffix}" for p in inputs]
    seen: dict[Path, Path] = {}
    for source, target in zip(inputs, paths, strict=True):
        if target in seen:
            raise InputError(
                f"{seen[target]} and {source} would both be written to {target}; rename one or use a pattern"
            )
        if target.resolve() == source.resolve():
            raise InputError(f"{source} would be overwritten by its own output; choose another -o")
        seen[target] = source
    return paths


@dataclass
class Outcome:
    done: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    computed: int = 0
    skipped: int = 0


class Bars:
    """Two tqdm bars with ETA: all planes of the batch, and the planes of the current file."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm.auto import tqdm

        self._tqdm, self.quiet = tqdm, quiet
        self.all = tqdm(total=total, desc="all inputs", unit="plane", position=0, disable=quiet, file=sys.stderr)
        self.file: Any = None

    def start_file(self, name: str, n_planes: int) -> None:
        self.file = self._tqdm(
            total=n_planes, desc=name[-40:], unit="plane", position=1, leave=False, disable=self.quiet,
            file=sys.stderr,
        )  # fmt: skip

    def event(self, event: Any) -> None:
        from .._runtime import Progress
        from ..io.stack import PlaneDone

        if isinstance(event, PlaneDone):
            self.file.update(1)
            self.all.update(1)
        elif isinstance(event, Progress) and self.file is not None:
            self.file.set_postfix_str(f"{event.stage} {event.done}/{event.total} NFE", refresh=False)

    def end_file(self, planes_left: int = 0) -> None:
        if planes_left:
            self.all.update(planes_left)  # a failed file's remaining planes
        if self.file is not None:
            self.file.close()
            self.file = None

    def close(self) -> None:
        self.end_file()
        self.all.close()


def run_batch(args: argparse.Namespace, settings: Any) -> int:
    """Every input into its output (locally, or on a dask cluster); a summary, exit status 1 if any failed."""
    from .._runtime import drive
    from ..io.readers import open_source
    from ..io.stack import image_warnings, prepare
    from ..registry import load_model
    from .predict import check_sample_task

    cluster = bool(args.scheduler or args.workers)
    if args.sample:
        if cluster:
            raise InputError("--sample runs in this process; give input files for --scheduler / --workers")
        inputs, many = [Path(f"{args.sample}.tif")], False
    else:
        inputs, many = expand_inputs(args.input)
    outputs = plan_outputs(inputs, many, args.output, args.format)
    if cluster:
        from ..io.cluster import need_distributed

        need_distributed()  # refused now, before the model is loaded
    model = load_model(args.model)
    check_sample_task(args, model)
    plane_ndim = 3 if model.task == "phase" else 2

    def source_of(path: Path) -> Any:
        if args.sample:
            from ..sample_data import load_sample

            image, meta = load_sample(args.sample)
            sample = open_source(image, plane_ndim, name=f"sample {args.sample!r}")
            sample.pixel_um = meta.get("pixel_um")  # the bundled samples carry their pixel size
            return sample
        return open_source(path, plane_ndim)

    outcome = Outcome()
    jobs = []
    for path, out in zip(inputs, outputs, strict=True):  # every check before any work: bad files are known now
        try:
            with source_of(path) as source:
                jobs.append((path, prepare(model, source, out, settings, overwrite=args.overwrite, require_pixel=True)))
        except InputError as err:
            if not many:
                raise
            outcome.failed.append((path, str(err)))
    client = None
    if cluster and jobs:
        from ..io.cluster import make_client

        client = make_client(args.scheduler, args.workers or 2)
    bars = Bars(sum(job.n_planes for _, job in jobs), args.quiet)
    start = time.perf_counter()
    try:
        for path, job in jobs:
            bars.start_file(path.name, job.n_planes)
            try:
                job.source = source_of(path)
                with job.source:
                    summary = drive(_events(job, args, client), bars.event)
                outcome.done.append(job.output)
                for note in image_warnings(job):  # estimated from the image: warnings, not refusals
                    print(f"warning: {path.name}: {note}", file=sys.stderr)
                outcome.computed += len(summary.computed)
                outcome.skipped += summary.skipped
                bars.end_file()
            except Exception as err:  # a corrupt plane, a full disk, a lost cluster: this file fails, the batch goes on
                if not many and isinstance(err, InputError):
                    raise
                outcome.failed.append((path, str(err) or type(err).__name__))
                bars.end_file(job.n_planes - (bars.file.n if bars.file is not None else 0))
    finally:
        bars.close()
        if client is not None:
            client.close()
    return report(outcome, len(inputs), time.perf_counter() - start, model.info.name)


def _events(job: Any, args: argparse.Namespace, client: Any) -> Generator[Any, None, Any]:
    from ..io.stack import iter_stack

    if client is None:
        return (yield from iter_stack(job))
    from ..io.cluster import PlaneTask, iter_cluster

    task = PlaneTask(
        model=str(Path(args.model).resolve()) if Path(args.model).is_file() else str(args.model),
        input=str(Path(job.source.name).resolve()),
        plane_ndim=len(job.source.plane_shape),
        output=str(job.output.resolve()),
        settings=job.settings.model_dump_json(),
    )
    return (yield from iter_cluster(job, task, client))


def report(outcome: Outcome, n_inputs: int, seconds: float, model_name: str) -> int:
    print(
        f"{model_name}: {len(outcome.done)} of {n_inputs} input(s) done in {seconds:.1f} s "
        f"({outcome.computed} plane(s) computed, {outcome.skipped} already in their output)"
    )
    for output in outcome.done:
        print(f"  wrote {output}")
    if outcome.failed:
        print(f"{len(outcome.failed)} input(s) failed:", file=sys.stderr)
        for path, why in outcome.failed:
            print(f"  {path}: {why}", file=sys.stderr)
        return 1
    return 0
