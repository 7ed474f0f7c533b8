"""Paired data: matching, validation, splits without leakage, patches and augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm.model import ModelMetadata
from napari_cvdm.training.data import DataError, PairedDataset

SR = ModelMetadata(task="super-resolution", scale_factor=2)
PHASE = ModelMetadata(task="phase", input_planes=2, normalization={"input": "mean", "target_scale": 1.75})


def sr_pair(rng, size=32):
    wf = rng.uniform(0, 100, (size, size)).astype(np.float32)
    return wf, rng.uniform(0, 100, (2 * size, 2 * size)).astype(np.float32)


def test_pairs_from_arrays_are_normalised_on_the_output_grid():
    rng = np.random.default_rng(0)
    data = PairedDataset.from_arrays(*zip(*[sr_pair(rng) for _ in range(3)], strict=True), info=SR)
    assert len(data) == 3
    pair = data.pairs[0]
    assert pair.condition.shape == (1, 64, 64) and pair.target.shape == (1, 64, 64)
    assert -0.5 < pair.target.min() < 0.5 and 0.5 < pair.target.max() < 1.5  # percentile-normalised


def test_stacks_are_split_into_images():
    rng = np.random.default_rng(1)
    wf = rng.uniform(1, 2, (4, 16, 16))
    sim = rng.uniform(1, 2, (4, 32, 32))
    assert len(PairedDataset.from_arrays([wf], [sim], SR)) == 4


def test_phase_targets_are_zero_mean_and_scaled():
    rng = np.random.default_rng(2)
    stack = rng.uniform(0.5, 1.5, (2, 32, 32))
    phase = rng.uniform(0, 3.5, (32, 32))
    pair = PairedDataset.from_arrays([stack], [phase], PHASE).pairs[0]
    assert pair.condition.shape == (2, 32, 32)
    np.testing.assert_allclose(pair.target.mean(), 0, atol=1e-5)
    np.testing.assert_allclose(pair.target[0] * 1.75, phase - phase.mean(), rtol=1e-4, atol=1e-4)


def test_mismatched_shapes_are_refused():
    rng = np.random.default_rng(3)
    wf, _ = sr_pair(rng)
    with pytest.raises(DataError, match=r"target has shape \(32, 32\) but must be \(64, 64\)"):
        PairedDataset.from_arrays([wf], [wf], SR)
    with pytest.raises(DataError, match="2 input images but 1 targets"):
        PairedDataset.from_arrays([wf, wf], [wf], SR)
    with pytest.raises(DataError, match="no image pairs"):
        PairedDataset([])


def test_split_is_by_image_and_never_leaks():
    rng = np.random.default_rng(5)
    data = PairedDataset.from_arrays(*zip(*[sr_pair(rng, 16) for _ in range(10)], strict=True), info=SR)
    train, val = data.split(0.2, seed=0)
    assert len(train) == 8 and len(val) == 2
    assert {p.name for p in train.pairs}.isdisjoint({p.name for p in val.pairs})
    assert data.split(0.0)[1] is None


def test_patches_have_the_requested_shape_and_prefer_structure():
    wf = np.zeros((64, 64), np.float32)
    sim = np.zeros((128, 128), np.float32)
    wf[40:50, 40:50] = 100
    sim[80:100, 80:100] = 100
    wf[0, 0], sim[0, 0] = 1, 1  # not constant
    data = PairedDataset.from_arrays([wf], [sim], SR)
    cond, target = data.sample(16, 32, np.random.default_rng(0), augment=True)
    assert cond.shape == (16, 1, 32, 32) and target.shape == (16, 1, 32, 32)
    with_structure = float((target.amax(dim=(1, 2, 3)) > 0.5).float().mean())
    assert with_structure > 0.5  # the bright square covers only 2.4 % of the image
    with pytest.raises(DataError, match="larger than the smallest image"):
        data.check_patch_size(256, 8)


def test_constant_or_nan_images_are_refused_not_turned_into_nan_losses():
    rng = np.random.default_rng(6)
    wf, sim = sr_pair(rng, 16)
    with pytest.raises(DataError, match="pair blank: the target is constant"):
        PairedDataset.from_arrays([wf], [np.full_like(sim, 7.0)], SR, names=["blank"])
    with pytest.raises(DataError, match="target contains NaN"):
        PairedDataset.from_arrays([wf], [np.where(sim > 50, np.nan, sim)], SR)
    with pytest.raises(DataError, match="pair flat: the input: the image is constant"):  # names the pair
        PairedDataset.from_arrays([np.ones_like(wf)], [sim], SR, names=["flat"])
    flat_phase = PairedDataset.from_arrays([rng.uniform(0.5, 1.5, (2, 16, 16))], [np.zeros((16, 16))], PHASE)
    assert np.isfinite(flat_phase.pairs[0].target).all()  # a flat phase is a valid (empty-field) target


@pytest.mark.parametrize("method", ["fft", "us-tie"])
def test_phase_condition_is_the_models_own_tie_estimate(method):
    from napari_cvdm.physics import PhaseSimulation, simulate_phase_pair
    from napari_cvdm.physics.baselines import tie_fft, us_tie

    sim = PhaseSimulation(noise_max=0.0)
    stack, phase, _ = simulate_phase_pair(sim, 64, np.random.default_rng(5))
    optics = dict(input_pixel_um=sim.pixel_um, wavelength_um=sim.wavelength_um, defocus_um=sim.defocus_um)
    info = PHASE.model_copy(update=dict(**optics, condition_on_tie=True, tie_method=method))
    pair = PairedDataset.from_arrays([stack], [phase], info).pairs[0]
    solver = us_tie if method == "us-tie" else tie_fft
    expected = solver(stack, sim.defocus_um, sim.wavelength_um, sim.pixel_um) / 1.75  # rad → network units
    assert pair.condition.shape == (3, 64, 64)
    np.testing.assert_allclose(pair.condition[2], expected, atol=1e-5)


def test_us_tie_condition_is_closer_to_the_truth_than_fft_tie():
    """Why phase models condition on US-TIE: on a noise-free pair its estimate has a smaller error to learn."""
    from napari_cvdm.physics import PhaseSimulation, simulate_phase_pair
    from napari_cvdm.tasks import tie_estimate

    sim = PhaseSimulation(noise_max=0.0, source="cells")
    stack, phase, _ = simulate_phase_pair(sim, 128, np.random.default_rng(6))
    info = dict(task="phase", input_planes=2, input_pixel_um=sim.pixel_um, wavelength_um=sim.wavelength_um)
    info.update(defocus_um=sim.defocus_um, condition_on_tie=True)
    truth = phase - phase.mean()
    err = {
        m: np.abs(tie_estimate(stack, ModelMetadata(**info, tie_method=m)) - truth).mean() for m in ("fft", "us-tie")
    }
    assert err["us-tie"] < 0.8 * err["fft"]


def test_model_headers_without_a_tie_method_read_as_fft_tie():
    """Files written before US-TIE conditioning existed keep meaning what they meant."""
    header = {"task": "phase", "input_planes": 2, "input_pixel_um": 0.21, "wavelength_um": 0.521, "defocus_um": 2.0}
    assert ModelMetadata.model_validate({**header, "condition_on_tie": True}).tie_method == "fft"


def test_simulate_optics_nominal_is_the_default_and_unchanged(tmp_path):
    from napari_cvdm.settings import TrainJob
    from napari_cvdm.training import presets
    from napari_cvdm.training.jobs import prepare_job

    job = TrainJob(task="sr", output=str(tmp_path / "m.cvdm"), simulate_n=2, simulate_size=16, width=8, depth=2)
    assert job.simulate_optics == "nominal"
    _, info, data = prepare_job(job)
    inputs, targets = presets.simulate_pairs("sr", 2, 16, 0)
    expected = PairedDataset.from_arrays(inputs, targets, info)
    assert data.fingerprint() == expected.fingerprint()  # bit for bit the pairs of before
    assert "optics_range" not in info.training


def test_simulate_optics_random_draws_each_pair_and_records_the_range(tmp_path):
    from napari_cvdm.physics import SROpticsRange
    from napari_cvdm.settings import TrainJob
    from napari_cvdm.training.jobs import prepare_job, simulate_random_optics_pairs

    job = TrainJob(
        task="sr",
        output=str(tmp_path / "m.cvdm"),
        simulate_n=2,
        simulate_size=16,
        simulate_optics="random",
        width=8,
        depth=2,
    )
    _, info, data = prepare_job(job)
    assert info.training["optics_range"]["na"] == [1.2, 1.49]
    assert info.training["optics_range"]["model"] == "SROpticsRange"
    assert info.input_pixel_um == 0.0626  # the header keeps the nominal optics the model is run with
    assert data.input_pixel_um is None and "randomised optics" in data.description
    inputs, targets = simulate_random_optics_pairs(SROpticsRange(), 2, 16, 0)
    assert data.fingerprint() == PairedDataset.from_arrays(inputs, targets, info).fingerprint()


def test_random_optics_phase_pairs_get_a_tie_condition_with_their_own_set_up(tmp_path):
    """Each phase pair's US-TIE channel is computed with the defocus, λ and pixel it was simulated with (as a
    reconstruction computes it with the stated optics), not with the header's; the header states the drawn range."""
    from napari_cvdm.physics import PhaseOpticsRange, simulate_phase_pair_random
    from napari_cvdm.settings import TrainJob
    from napari_cvdm.tasks import tie_estimate
    from napari_cvdm.training.jobs import prepare_job

    job = TrainJob(
        task="phase", output=str(tmp_path / "m.cvdm"), simulate_n=3, simulate_size=32, simulate_optics="random",
        tie_method="us-tie", width=8, depth=2,
    )  # fmt: skip
    _, info, data = prepare_job(job)
    assert info.training["optics_range"]["model"] == "PhaseOpticsRange"
    assert info.training["optics_range"]["fresnel_factor"] == [0.5, 2.0]
    assert info.covered_optics().fresnel_factor == (0.5, 2.0)
    assert (info.defocus_um, info.input_pixel_um) == (2.0, 0.21)  # the nominal set-up the model is run with
    assert data.input_pixel_um is None and "PhaseOpticsRange" in data.description
    for k, child in enumerate(np.random.SeedSequence(0).spawn(3)):
        stack, phase, drawn = simulate_phase_pair_random(PhaseOpticsRange(), 32, np.random.default_rng(child))
        assert drawn["defocus_um"] != info.defocus_um
        own = info.model_copy(
            update={k: drawn[k] for k in ("defocus_um", "wavelength_um")} | {"input_pixel_um": drawn["pixel_um"]}
        )
        np.testing.assert_array_equal(data.pairs[k].condition[2], tie_estimate(stack, own))
        assert not np.allclose(data.pairs[k].condition[2], tie_estimate(stack, info), atol=1e-3)
        np.testing.assert_allclose(data.pairs[k].target[0] * 1.75, phase - phase.mean(), atol=1e-5)


def test_a_random_optics_fine_tune_covers_its_training_range_not_the_base_models(tmp_path):
    """cvdm-sr-widefield states 0.95–1.05× its PSF width; fine-tuned on randomised optics it covers their range."""
    from napari_cvdm.settings import TrainJob
    from napari_cvdm.training.jobs import prepare_job

    job = TrainJob(
        task="sr", output=str(tmp_path / "m.cvdm"), base_model="cvdm-sr-widefield", simulate_n=2,
        simulate_size=32, simulate_optics="random",
    )  # fmt: skip
    _, info, _ = prepare_job(job)
    assert info.valid_optics is None
    low, high = info.covered_optics().psf_width_factor
    assert low < 0.7 and high > 1.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "sr", "input_dir": "a", "target_dir": "b", "simulate_optics": "random"}, "simulated pairs only"),
        ({"task": "sr", "simulate_n": 4, "simulate_optics": "wild"}, "nominal"),
    ],
)
def test_random_optics_is_refused_where_it_cannot_apply(kwargs, message):
    from pydantic import ValidationError

    from napari_cvdm.settings import TrainJob

    with pytest.raises(ValidationError, match=message):
        TrainJob(output="m.cvdm", **kwargs)


def test_a_separate_schedule_base_model_can_be_fine_tuned_as_exact(tmp_path):
    import torch

    from napari_cvdm.model.files import save_model
    from napari_cvdm.settings import TrainJob
    from napari_cvdm.training.jobs import prepare_job, with_time_parameterisation
    from tests.conftest import tiny_model

    base = tiny_model("sr", name="base")
    separate = with_time_parameterisation(base.network, "separate")
    assert separate.config.time_parameterisation == "separate" and base.network.config.time_parameterisation == "exact"
    path = save_model(tmp_path / "base.cvdm", separate, base.info)
    kwargs = dict(task="sr", base_model=str(path), simulate_n=2, simulate_size=16)
    kept, _, _ = prepare_job(TrainJob(output=str(tmp_path / "a.cvdm"), **kwargs))
    assert kept.config.time_parameterisation == "separate"  # by default --base-model keeps the base's schedule
    exact, _, _ = prepare_job(TrainJob(output=str(tmp_path / "b.cvdm"), time_parameterisation="exact", **kwargs))
    assert exact.config.time_parameterisation == "exact"
    old, new = separate.state_dict(), exact.state_dict()
    assert sorted(set(old) - set(new)) == [f"schedule.tau.{p}" for p in ("b1", "b2", "b3", "w1", "w2", "w3")]
    assert all(torch.equal(old[k], v) for k, v in new.items())  # every other weight carries over
