"""Training jobs: a fresh or fine-tuned network, its metadata and its data, from a :class:`TrainJob`."""

from __future__ import annotations

import copy
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .._runtime import CancelToken, Progress
from ..model.cvdm import CVDM
from ..model.files import TrainedModel
from ..model.metadata import ModelMetadata
from ..physics.ranges import PhaseOpticsRange, SROpticsRange, simulate_phase_pair_random, simulate_sr_pair_random
from ..settings import TrainJob
from . import presets
from .data import DataError, Pair, PairedDataset, RawPairs, prepare_pair
from .loop import TrainProgress
from .optics import pairs_pixel_um, subtract_offset, with_data_noise, with_data_optics, with_data_resolution
from .recalibrate import iter_train_recalibrated


def finetune_start(base: TrainedModel, name: str) -> tuple[CVDM, ModelMetadata]:
    """A copy of ``base``'s network to train further, and metadata that records the base model."""
    network = copy.deepcopy(base.network)  # never train a (possibly cached) base model in place
    # train on the CPU in the default layout, whatever device or layout the base model was given: what a resume rebuilds
    network.to("cpu", memory_format=torch.contiguous_format)
    info = base.info.model_copy(update={"name": name}, deep=True)
    # LD3 grids fit the base weights only; `napari-cvdm learn-grid` learns new ones for the fine-tuned model
    info.sampler = info.sampler.model_copy(update={"learned_grids": {}})
    info.training = {
        "fine_tuned_from": base.info.name,
        "base_model": {
            "name": base.info.name,
            "source": base.source,
            "sha256": base.sha256,
            "steps": base.info.training.get("steps"),
        },
        "base_training": base.info.training,
    }
    return network, info


def with_time_parameterisation(network: CVDM, kind: str) -> CVDM:
    """``network`` with the schedule parameterisation ``kind``: the same weights, minus the separate τ network when
    going to 'exact' (τ := ρ′), or with a fresh τ network when going to 'separate'."""
    if network.config.time_parameterisation == kind:
        return network
    converted = CVDM(network.config.model_copy(update={"time_parameterisation": kind}))
    target = converted.state_dict()
    state = {k: v for k, v in network.state_dict().items() if k in target}
    missing = {k: v for k, v in target.items() if k not in state}  # 'separate': the new τ network's initial weights
    converted.load_state_dict({**state, **missing}, strict=True)
    return converted


def prepare_job(job: TrainJob, pairs: RawPairs | None = None) -> tuple[CVDM, ModelMetadata, PairedDataset]:
    """The network (fresh or from ``job.base_model``), its metadata and the paired data of a training job;
    ``pairs``: a job on the user's folders gets them read (:func:`napari_cvdm.io.pairs.read_folders`), and the
    metadata states their optics (:func:`~.optics.with_data_optics`)."""
    from ..registry import load_model

    if job.input_dir is not None and pairs is None:
        raise DataError(
            "a job on folders of pairs needs them read first: pairs=napari_cvdm.io.pairs.read_folders(input_dir, "
            "target_dir, plus_dir)"
        )

    name = job.name or Path(job.output).stem
    if job.base_model:
        base = load_model(job.base_model)
        if base.task != presets.TASKS[job.task]:
            task = next(k for k, v in presets.TASKS.items() if v == base.task)
            raise DataError(
                f"base model {job.base_model!r} is a {base.task} model, not {presets.TASKS[job.task]}: give --task "
                f"{task} to fine-tune it, or a {presets.TASKS[job.task]} base model"
            )
        network, info = finetune_start(base, name)
        if job.tie_method is not None and job.task == "phase" and job.tie_method != info.tie_method:
            raise DataError(
                f"base model {job.base_model!r} is conditioned on the {info.tie_method!r} TIE estimate, not "
                f"{job.tie_method!r}: leave tie_method unset to fine-tune it, or train from scratch"
            )
    else:
        torch.manual_seed(job.train.seed)  # the same seed gives the same initial weights (and run)
        network = CVDM(presets.default_architecture(job.task, width=job.width, depth=job.depth))
        info = presets.default_metadata(job.task, name, tie_method=job.tie_method or "fft")
    if job.time_parameterisation is not None:
        torch.manual_seed(job.train.seed)  # a fresh τ network ('separate') starts from the same weights on a resume
        network = with_time_parameterisation(network, job.time_parameterisation)
    if job.simulate_n is not None and job.simulate_optics == "random":
        optics = SROpticsRange() if job.task == "sr" else PhaseOpticsRange()
        about = (
            f"{job.simulate_n} simulated pairs with randomised optics and noise (physics.{type(optics).__name__}), "
            f"size {job.simulate_size}, seed {job.simulate_seed}"
        )
        # the header keeps the nominal optics (what the model is run with); the range says which optics it covers,
        # in place of any range a base model stated for its own narrower training
        info.valid_optics = None
        info.training = {
            **info.training,
            "optics_range": {"model": type(optics).__name__, **optics.model_dump(mode="json")},
        }
        if job.task == "sr":
            inputs, targets = simulate_random_optics_pairs(optics, job.simulate_n, job.simulate_size, job.simulate_seed)
            data = PairedDataset.from_arrays(inputs, targets, info, description=about, input_pixel_um=None)
        else:
            pairs = random_setup_phase_pairs(optics, job.simulate_n, job.simulate_size, job.simulate_seed, info)
            data = PairedDataset(pairs, about, input_pixel_um=None)
    elif job.simulate_n is not None:
        inputs, targets = presets.simulate_pairs(job.task, job.simulate_n, job.simulate_size, job.simulate_seed)
        about = f"{job.simulate_n} simulated pairs, size {job.simulate_size}, seed {job.simulate_seed}"
        pixel = info.input_pixel_um  # the simulator's optics are the model's
        data = PairedDataset.from_arrays(inputs, targets, info, description=about, input_pixel_um=pixel)
    else:
        raw = subtract_offset(pairs, job.optics.camera_offset)  # type: ignore[arg-type]
        raw = replace(raw, input_pixel_um=pairs_pixel_um(raw, job.optics.pixel_size_um))  # the caller's untouched
        info = with_data_optics(info, {**job.optics.stated(), "pixel_size_um": raw.input_pixel_um}, raw.source)
        info = with_data_noise(info, raw.inputs, offset_known=bool(job.optics.camera_offset))
        info = with_data_resolution(info, raw.inputs)
        data = PairedDataset.from_raw(raw, info)
    return network, info, data


def simulate_random_optics_pairs(
    optics: SROpticsRange, n: int, size: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` SR pairs, item k drawing its optics and noise from ``optics`` with ``SeedSequence(seed).spawn(n)[k]``."""
    inputs, targets = [], []
    for child in np.random.SeedSequence(seed).spawn(n):
        x, y, _ = simulate_sr_pair_random(optics, size, np.random.default_rng(child))
        inputs.append(x)
        targets.append(y)
    return inputs, targets


def random_setup_phase_pairs(optics: PhaseOpticsRange, n: int, size: int, seed: int, info: ModelMetadata) -> list[Pair]:
    """``n`` normalised phase pairs, item k drawing its defocus, wavelength, pixel, absorption and noise from
    ``optics`` with ``SeedSequence(seed).spawn(n)[k]``.  A model conditioned on a TIE estimate gets each pair's
    estimate computed with that pair's own set-up, as a reconstruction computes it with the optics the user states."""
    pairs = []
    for k, child in enumerate(np.random.SeedSequence(seed).spawn(n)):
        stack, phase, drawn = simulate_phase_pair_random(optics, size, np.random.default_rng(child))
        setup = {
            "defocus_um": drawn["defocus_um"],
            "wavelength_um": drawn["wavelength_um"],
            "input_pixel_um": drawn["pixel_um"],
        }
        own = info.model_copy(update=setup)  # the header's optics fields, as this pair's
        pairs.append(prepare_pair(stack, phase, own, name=f"pair {k}"))
    return pairs


def run_job(
    job: TrainJob, stop: CancelToken | None = None, pairs: RawPairs | None = None
) -> Generator[TrainProgress | Progress, None, TrainedModel]:
    """Prepare and run a :class:`TrainJob` (``pairs``: its folders, read), writing ``job.output`` (and its
    checkpoint), then recalibrate the model's uncertainty on the run's validation pairs
    (:mod:`~napari_cvdm.training.recalibrate`: training progress, then the recalibration's
    :class:`~napari_cvdm._runtime.Progress`)."""
    network, info, data = prepare_job(job, pairs)
    return (
        yield from iter_train_recalibrated(network, info, data, job.train, job.output, resume=job.resume, stop=stop)
    )
