"""The benchmark helpers: held-out data, the real-cell evaluation pair, tables and the speed measurement."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_cvdm.evaluation.quality import TEST_SEED_PHASE, phase_cases, real_cell_pair, spearman
from napari_cvdm.evaluation.speed import speed_benchmark
from napari_cvdm.physics import PhaseSimulation


def test_held_out_seeds_are_reserved():
    assert TEST_SEED_PHASE >= 10_000
    labels = [label for label, _, _ in phase_cases(1)]
    assert labels == ["photos, noise-free", "cells, noise-free", "photos, noisy ξ~U(0,0.2)", "cells, noisy ξ~U(0,0.2)"]


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


def test_speed_table_reports_seconds_and_ratio(tiny_sr_model):
    table = speed_benchmark(
        tiny_sr_model, sizes=(16, 24), n_samples=(1, 2), steps=2, device="cpu", precision="fp32", log=lambda m: None
    )
    assert [r[:4] for r in table.rows] == [
        ["16²", "32²", "1", "2"],
        ["16²", "32²", "2", "2"],
        ["24²", "48²", "1", "2"],
        ["24²", "48²", "2", "2"],
    ]
    for row in table.rows:
        seconds, floor, ratio = float(row[4]), float(row[6]), float(row[7])
        assert floor > 0 and ratio == pytest.approx(seconds / floor, rel=0.02)
    assert "| input | output |" in table.markdown() and "fp32" in table.title


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
