"""The benchmark helpers: held-out data, the real-cell evaluation pair, tables and the speed measurement."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from napari_cvdm.evaluation.quality import TEST_SEED_SR, held_out_rngs, phase_cases, real_cell_pair, spearman
from napari_cvdm.evaluation.speed import speed_benchmark
from napari_cvdm.physics import STRUCTURES, PhaseSimulation, SRSimulation, simulate_phase_pair, simulate_sr_pair
from napari_cvdm.training.presets import simulate_pairs


def _phases(cases, size=64):
    return {label: [simulate_phase_pair(sim, size, rng)[1] for rng in rngs] for label, sim, rngs in cases}


def test_the_held_out_phase_set_is_reproducible_and_each_image_independent_of_n():
    """The same test images in every bench run, and image k the same whether the bench scores 1 or 3 per row."""
    three, one, again = _phases(phase_cases(3)), _phases(phase_cases(1)), _phases(phase_cases(1))
    noisy = "noisy ξ~U(0,0.2)"
    assert list(three) == ["photos, noise-free", "cells, noise-free", f"photos, {noisy}", f"cells, {noisy}"]
    for label, images in three.items():
        assert np.array_equal(one[label][0], again[label][0]), label  # bit-identical on a re-run
        assert np.array_equal(images[0], one[label][0]), label  # n only adds images
        assert not np.array_equal(images[0], images[1]), label  # and they are different images
    # the noisy rows hold the noise-free rows' objects: the two rows of a source differ only by the noise
    for source in ("photos", "cells"):
        assert np.array_equal(three[f"{source}, noise-free"][0], three[f"{source}, {noisy}"][0])
    assert not np.array_equal(three["photos, noise-free"][0], three["cells, noise-free"][0])


@pytest.mark.parametrize("seed", [0, 1, 2])  # the default models trained on SeedSequence(0); its neighbours too
def test_no_held_out_image_is_in_a_training_set_of_a_small_seed(seed):
    """A test image that training also drew would flatter the bench: compare the same simulator, size and family."""
    for label, sim, rngs in phase_cases(3)[:2]:
        held_out = _phases([(label, sim, rngs)])[label]
        _, train = simulate_pairs("phase", 3, 64, seed, physics=sim)
        assert not any(np.array_equal(a, b) for a in train for b in held_out), label
    for j, kind in enumerate(STRUCTURES):
        sim = SRSimulation(structure=kind)
        held_out = [simulate_sr_pair(sim, 32, rng)[1] for rng in held_out_rngs(TEST_SEED_SR + 10 * j, 2)]
        _, train = simulate_pairs("sr", 2, 32, seed, physics=sim)
        assert not any(np.array_equal(a, b) for a in train for b in held_out), kind


def test_real_cell_pair_is_a_defocus_stack_of_the_reserved_image():
    stack, phase = real_cell_pair(PhaseSimulation(), size=64)
    assert stack.shape == (2, 64, 64) and phase.shape == (64, 64)
    assert phase.min() >= 0 and np.isclose(phase.max(), 3.5)
    assert not np.allclose(stack[0], stack[1])  # the two planes differ


def test_spearman_of_monotone_maps_is_one_and_of_a_constant_map_nan():
    a = np.random.default_rng(0).uniform(size=(8, 8))
    assert spearman(a, a**3) == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConstantInputWarning: an untrained model's flat std map is not news
        assert np.isnan(spearman(np.ones((8, 8)), a))


@pytest.mark.parametrize(("task", "precision"), [("sr", "fp32"), ("phase", "bf16")])
def test_the_speed_floor_repeats_exactly_the_denoiser_calls_of_the_timed_run(monkeypatch, task, precision):
    """The ratio means 'sampler overhead' only if the floor makes the same calls: count, batch, shape, memory layout
    and autocast of every denoiser evaluation, recorded inside the timed reconstruction and in the floor."""
    import napari_cvdm.evaluation.speed as speed
    from napari_cvdm._runtime import device
    from tests.conftest import tiny_model

    model = tiny_model(task)
    scale = 2 if task == "sr" else 1
    monkeypatch.setattr(device, "CPU_PIXELS_PER_CALL", 2 * (16 * scale) ** 2)  # batches of 2, then of 1 sample
    calls: list[tuple] = []
    phase: list = ["warm-up"]
    real_predict, real_reconstruct = model.network.predict_noise, speed.reconstruct

    def predict(z, x, g):
        # per sample: the sampler passes the condition as a broadcast view of one image, the floor as a batch
        layout = all(t[:1].is_contiguous(memory_format=torch.channels_last) for t in (z, x, g))
        calls.append((phase[0], z.shape, x.shape, g.shape, layout, torch.is_autocast_enabled("cpu")))
        return real_predict(z, x, g)

    def reconstruct(model, image, **kwargs):
        timed = kwargs["steps"] != 1  # not the warm-up
        phase[0] = ("run", image.shape[-1], kwargs["n_samples"]) if timed else "warm-up"
        try:
            return real_reconstruct(model, image, **kwargs)
        finally:
            phase[0] = ("floor", *phase[0][1:]) if timed else "after the warm-up"

    monkeypatch.setattr(model.network, "predict_noise", predict)
    monkeypatch.setattr(speed, "reconstruct", reconstruct)
    table = speed_benchmark(
        model, sizes=(16, 24), n_samples=(1, 3), steps=2, device="cpu", precision=precision, log=lambda m: None
    )
    out = [f"{16 * scale}²", f"{24 * scale}²"]
    assert [r[:4] for r in table.rows] == [
        ["16²", out[0], "1", "2"],
        ["16²", out[0], "3", "2"],
        ["24²", out[1], "1", "2"],
        ["24²", out[1], "3", "2"],
    ]
    assert table.title.endswith(precision)
    assert "after the warm-up" not in [c[0] for c in calls]
    for size, row in zip((16, 16, 24, 24), table.rows, strict=True):
        n, nfe = int(row[2]), int(row[3])
        run = [c[1:] for c in calls if c[0] == ("run", size, n)]
        floor = [c[1:] for c in calls if c[0] == ("floor", size, n)]
        assert run == floor and sum(c[0][0] for c in run) == n * nfe  # every sample's every evaluation, once
        assert all(c[3] and c[4] == (precision == "bf16") for c in run)
        seconds, per_mp, floor_s, ratio = (float(v) for v in row[4:8])
        assert ratio == pytest.approx(seconds / floor_s, rel=0.02)
        assert per_mp == pytest.approx(seconds / (n * nfe) / ((size * scale) ** 2 / 1e6), rel=0.02)
    assert {c[1][0] for c in calls if c[0] != "warm-up"} == {1, 2}  # batches of 2 and of 1 were both timed


def test_table_cells_with_pipes_do_not_split_columns():
    from napari_cvdm.evaluation.report import Table

    table = Table("t", ["a", "Spearman(std, |err|)"], rows=[["x|y", "1"]])
    header, _, row = table.markdown().splitlines()[2:5]
    assert header == "| a | Spearman(std, \\|err\\|) |" and row == "| x\\|y | 1 |"


def test_sr_table_has_both_resolutions_for_every_method(tiny_sr_model):
    from napari_cvdm.evaluation.quality import sr_benchmark

    table = sr_benchmark(tiny_sr_model, n=1, n_samples=2, steps=2, log=lambda _: None)
    assert len(table.rows) == 4 * 4  # bicubic, RL, CVDM, truth per family
    for row in table.rows:
        assert len(row) == len(table.header)
        if row[1] == "SIM truth":
            assert row[5] == "–"
        else:
            assert 31.3 * 2 - 1 <= float(row[5]) < float("inf")  # nm: never finer than the SIM grid's Nyquist
        if row[1] == "CVDM":
            assert -1 <= float(row[6]) <= 1 and float(row[7]) > 0  # Spearman, err²/var
            assert 0 <= float(row[8]) <= 1 and float(row[9]) >= 0  # 90 % coverage, ENCE
    assert table.notes[0].startswith("Over all 4 test images, Spearman(image's mean std, image's RMSE) = ")
    assert "err²/var ≈ 1.50" in table.notes[0] and table.notes[0] in table.markdown()


def test_phase_table_scores_uncertainty_in_radians(tiny_phase_model, monkeypatch):
    import napari_cvdm.evaluation.quality as bench

    calls = []
    real_add = bench.Uncertainty.add

    def spy(self, error, variance):
        calls.append((error, variance))
        real_add(self, error, variance)

    monkeypatch.setattr(bench.Uncertainty, "add", spy)
    table = bench.phase_benchmark(tiny_phase_model, n=1, n_samples=2, steps=2, log=lambda _: None)
    assert [r[1] for r in table.rows] == ["TIE", "US-TIE", "CVDM"] * 5
    assert len(calls) == 5 and all(e.shape == v.shape == (256, 256) for e, v in calls)
    for (error, variance), row in zip(calls, [r for r in table.rows if r[1] == "CVDM"], strict=True):
        assert abs(float(error.mean())) < 1e-4  # the unknowable constant phase is removed before scoring
        assert float(row[2]) == pytest.approx(np.abs(error).mean(), abs=6e-4)  # MAE (rad) of the same error
        assert float(row[5]) == pytest.approx(np.mean(error**2) / np.mean(variance), abs=0.0051)  # 2 digits
    assert "Over all 5 test images" in table.notes[0]
    assert bench.phase_benchmark(None, n=1, n_samples=2, steps=2, log=lambda _: None).notes == []


def test_bench_command_prints_the_table_and_the_steps_each_model_ran(tmp_path, capsys):
    from napari_cvdm import load_model
    from napari_cvdm.cli import main
    from tests.conftest import save_tiny_models

    model = save_tiny_models(tmp_path)["tiny-sr"]
    args = ["bench", "--task", "sr", "--sr-model", str(model), "--n", "1", "--n-samples", "2", "-q"]
    assert main([*args, "--figures", str(tmp_path / "fig")]) == 0
    out = capsys.readouterr().out
    assert "### Super-resolution" in out and "| CVDM |" in out
    steps = load_model(model).info.sampler.steps
    figure = tmp_path / "fig" / "bench_sr.png"
    assert f"CVDM: 2 samples per image, {model} ({steps} steps); figures: ['{figure}']" in out and figure.exists()
    assert main([*args, "--steps", "3", "--figures", ""]) == 0
    assert f"{model} (3 steps); figures: none" in capsys.readouterr().out
