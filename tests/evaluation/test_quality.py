"""The benchmark helpers: held-out data, the real-cell evaluation pair, tables and the speed measurement."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_cvdm.evaluation.metrics import spearman
from napari_cvdm.evaluation.quality import TEST_SEED_SR, held_out_rngs, phase_cases, real_cell_pair
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
    from napari_cvdm.evaluation.uncertainty_scores import CALIBRATED_HEADER, NOT_CALIBRATED

    table = sr_benchmark(tiny_sr_model, n=1, n_samples=2, steps=2, log=lambda _: None)
    assert len(table.rows) == 6 * 4  # bicubic, RL, CVDM, truth per family and per held-out microscope
    assert [r[0] for r in table.rows[::4]][:4] == list(STRUCTURES)
    for row in table.rows:
        assert len(row) == len(table.header)
        if row[1] == "SIM truth":
            assert row[5] == "–"
        else:
            assert 2 * 31.3 - 1 <= float(row[5]) < float("inf")  # nm: never finer than the SIM grid's Nyquist
        if row[1] == "CVDM":
            assert -1 <= float(row[6]) <= 1 and float(row[7]) > 0  # Spearman, err²/var
            assert 0 <= float(row[8]) <= 1 and float(row[9]) >= 0  # 90 % coverage, ENCE
            assert row[10:] == [NOT_CALIBRATED] * len(CALIBRATED_HEADER)  # the tiny model holds no calibration
    assert table.notes[0].startswith("Over all 4 test images, Spearman(image's mean std, image's RMSE) = ")
    assert "err²/var ≈ 1.50" in table.notes[0] and table.notes[0] in table.markdown()
    assert len(table.reliability) == 6 and table.reliability[0]["calibrated"] is None
    assert sum(b["pixels"] for b in table.reliability[0]["raw"]) == 256 * 256


def test_phase_table_scores_uncertainty_in_radians(tiny_phase_model, monkeypatch):
    import napari_cvdm.evaluation.quality as bench

    calls = []
    real_add = bench.Uncertainty.add

    def spy(self, error, variance, *calibrated):
        calls.append((error, variance))
        real_add(self, error, variance, *calibrated)

    told = []
    real_reconstruct = bench.reconstruct

    def reconstruct_spy(model, image, **kwargs):
        told.append({k: kwargs.get(k) for k in ("defocus_um", "wavelength_um", "pixel_size_um")})
        return real_reconstruct(model, image, **kwargs)

    monkeypatch.setattr(bench.Uncertainty, "add", spy)
    monkeypatch.setattr(bench, "reconstruct", reconstruct_spy)
    table = bench.phase_benchmark(tiny_phase_model, n=1, n_samples=2, steps=2, log=lambda _: None)
    assert [r[1] for r in table.rows] == ["TIE", "US-TIE", "CVDM"] * 7  # 5 nominal rows, 2 held-out set-ups
    none = {"defocus_um": None, "wavelength_um": None, "pixel_size_um": None}
    set_ups = [{"defocus_um": d, "wavelength_um": 0.521, "pixel_size_um": 0.21} for d in (1.2, 3.6)]
    assert told == [none] * 5 + set_ups  # the held-out set-ups are stated, as the baselines get them
    assert len(calls) == 7 and all(e.shape == v.shape == (256, 256) for e, v in calls)
    for (error, variance), row in zip(calls, [r for r in table.rows if r[1] == "CVDM"], strict=True):
        assert len(row) == len(table.header)
        assert abs(float(error.mean())) < 1e-4  # the unknowable constant phase is removed before scoring
        assert float(row[2]) == pytest.approx(np.abs(error).mean(), abs=6e-4)  # MAE (rad) of the same error
        assert float(row[5]) == pytest.approx(np.mean(error**2) / np.mean(variance), abs=0.0051)  # 2 digits
    assert "Over all 5 test images" in table.notes[0]  # the ranking over the nominal rows only, as before
    assert bench.phase_benchmark(None, n=1, n_samples=2, steps=2, log=lambda _: None).notes == [bench.HELD_OUT_NOTE]


def test_bench_command_prints_the_table_and_the_steps_each_model_ran(tmp_path, capsys):
    from napari_cvdm import load_model
    from napari_cvdm.cli import main
    from tests.conftest import save_tiny_models

    model = save_tiny_models(tmp_path)["tiny-sr"]
    args = ["bench", "--task", "sr", "--sr-model", str(model), "--n", "1", "--n-samples", "2", "-q"]
    diagrams = tmp_path / "reliability.json"
    assert main([*args, "--figures", str(tmp_path / "fig"), "--reliability-out", str(diagrams)]) == 0
    out = capsys.readouterr().out
    data = json.loads(diagrams.read_text())
    assert data["sr"]["model"] == str(model) and len(data["sr"]["rows"]) == 6
    assert {"predicted_std", "rmse", "mean_abs_error", "pixels"} <= set(data["sr"]["rows"][0]["raw"][0])
    assert "### Super-resolution" in out and "| CVDM |" in out
    steps = load_model(model).info.sampler.steps
    figure = tmp_path / "fig" / "bench_sr.png"
    assert f"CVDM: 2 samples per image, {model} ({steps} steps); figures: ['{figure}', '{diagrams}']" in out
    assert figure.exists()
    assert main([*args, "--steps", "3", "--figures", ""]) == 0
    assert f"{model} (3 steps); figures: none" in capsys.readouterr().out


def test_held_out_rows_keep_the_old_rows_and_add_new_microscopes_from_unused_seeds():
    from napari_cvdm.evaluation.quality import (
        TEST_SEED_PHASE,
        TEST_SEED_PHASE_OPTICS,
        TEST_SEED_SR_OPTICS,
        phase_optics_cases,
        sr_cases,
    )
    from napari_cvdm.physics.ranges import fresnel_factor, psf_width_factor

    cases = sr_cases(2)
    assert [c[0] for c in cases[:4]] == list(STRUCTURES)
    for j, (kind, settings, rngs) in enumerate(cases[:4]):  # the old rows: same simulator, seeds and order
        assert settings == SRSimulation(structure=kind)
        old = held_out_rngs(TEST_SEED_SR + 10 * j, 2)
        assert [r.bit_generator.state for r in rngs] == [r.bit_generator.state for r in old]
    (_, pixels, _), (_, colour, _) = cases[4:]
    assert pixels.wf_pixel_um == 0.108 and pixels.sim_pixel_um == 0.054 and pixels.na == 1.3
    assert colour.wavelength_um == 0.67 and colour.na == 1.4 and colour.wf_pixel_um == 0.0626
    assert psf_width_factor(pixels.na, pixels.wavelength_um, pixels.wf_pixel_um) == pytest.approx(0.58, abs=0.005)
    phase = phase_optics_cases(1)
    assert [s.defocus_um for _, s, _ in phase] == [1.2, 3.6]
    assert [fresnel_factor(s.defocus_um, s.wavelength_um, s.pixel_um) for _, s, _ in phase] == pytest.approx([0.6, 1.8])
    assert [label for label, _, _ in phase] == [
        "* mixed, noisy, λd/p² 0.6× (d = 1.2 µm, stated)",
        "* mixed, noisy, λd/p² 1.8× (d = 3.6 µm, stated)",
    ]
    seeds = [TEST_SEED_SR_OPTICS, TEST_SEED_SR_OPTICS + 10, TEST_SEED_PHASE_OPTICS, TEST_SEED_PHASE_OPTICS + 10]
    used = [TEST_SEED_PHASE, TEST_SEED_PHASE + 1, *(TEST_SEED_SR + 10 * j for j in range(4))]
    assert min(seeds) >= 10_000 and not set(seeds) & set(used) and len(set(seeds)) == 4


def test_no_held_out_microscope_image_is_in_a_random_optics_training_set():
    from napari_cvdm.evaluation.quality import phase_optics_cases, sr_cases
    from napari_cvdm.physics import PhaseOpticsRange, SROpticsRange, simulate_phase_pair_random
    from napari_cvdm.training.jobs import simulate_random_optics_pairs

    _, train = simulate_random_optics_pairs(SROpticsRange(), 2, 32, 0)
    for label, settings, rngs in sr_cases(2)[4:]:
        held_out = [simulate_sr_pair(settings, 32, rng)[1] for rng in rngs]
        assert not any(a.shape == b.shape and np.array_equal(a, b) for a in train for b in held_out), label
    phase_rng = (np.random.default_rng(c) for c in np.random.SeedSequence(0).spawn(2))  # as train's random set-ups
    train = [simulate_phase_pair_random(PhaseOpticsRange(), 32, rng)[1] for rng in phase_rng]
    for label, settings, rngs in phase_optics_cases(2):
        held_out = [simulate_phase_pair(settings, 32, rng)[1] for rng in rngs]
        assert not any(np.array_equal(a, b) for a in train for b in held_out), label


def _calibration(**z):
    from napari_cvdm.model.metadata import Calibration

    return Calibration(
        method="gamma",
        eta=1.0,
        steps=10,
        n_samples=8,
        raw_std=[0.1],
        calibrated_std=[0.2],
        interval_z=z or {"0.5": 0.7, "0.9": 1.6, "0.95": 2.0},
        n_images=1,
        n_pixels=100,
    )


def test_calibrated_columns_are_computed_from_the_calibrated_std_and_intervals():
    from napari_cvdm.evaluation.uncertainty_scores import (
        CALIBRATED_HEADER,
        NOT_CALIBRATED,
        Uncertainty,
        calibrated_interval,
    )

    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.5, 2.0, (64, 64))
    mean = rng.normal(size=(64, 64))
    error = 1.3 * sigma * rng.standard_normal((64, 64))  # errors 1.3× the calibrated std
    model = SimpleNamespace(info=SimpleNamespace(calibrations=[_calibration(), _calibration()]))
    model.info.calibrations[1] = _calibration(**{"0.5": 9.0, "0.9": 9.0, "0.95": 9.0}).model_copy(update={"steps": 40})
    result = SimpleNamespace(
        calibrated_std=sigma,
        lower=mean - 1.6 * sigma,
        upper=mean + 1.6 * sigma,
        interval_level=0.9,
        settings={"method": "gamma", "eta": 1.0, "steps": 12},  # nearest calibrated steps: 10
        optics={},
    )
    std, halves = calibrated_interval(model, result)
    assert std is sigma and set(halves) == {0.5, 0.9, 0.95}
    np.testing.assert_allclose(halves[0.5], 0.7 * sigma)
    np.testing.assert_allclose(halves[0.9], 1.6 * sigma)  # the reconstruction's own [lower, upper]
    np.testing.assert_allclose(halves[0.95], 2.0 * sigma)
    row = Uncertainty(8)
    row.add(error, (0.5 * sigma) ** 2, std, halves)
    cells = row.cells()[4:]
    assert len(cells) == len(CALIBRATED_HEADER)
    assert float(cells[1]) == pytest.approx(np.mean(error**2) / np.mean(sigma**2), abs=0.006)  # ≈ 1.69
    assert float(cells[2]) == pytest.approx(float(cells[1]), abs=0.006)  # one image: pooled is its own ratio
    for cell, z in zip(cells[3:6], (0.7, 1.6, 2.0), strict=True):
        assert float(cell) == pytest.approx(np.mean(np.abs(error) <= z * sigma), abs=0.006)
    assert float(cells[6]) == pytest.approx(0.3, abs=0.05)  # every σ bin's RMSE is 1.3 σ
    assert float(cells[0]) == pytest.approx(spearman(sigma, np.abs(error)), abs=6e-4)
    diagram = row.reliability("x", bins=4)
    assert len(diagram["calibrated"]) == 4
    for b in diagram["calibrated"]:
        assert b["rmse"] == pytest.approx(1.3 * b["predicted_std"], rel=0.1)
    # uncalibrated: no σ_cal, the columns say so
    assert calibrated_interval(model, SimpleNamespace(calibrated_std=None)) == (None, {})
    plain = Uncertainty(8)
    plain.add(error, sigma**2)
    assert plain.cells()[4:] == [NOT_CALIBRATED] * len(CALIBRATED_HEADER)
    assert plain.reliability("y")["calibrated"] is None


def test_the_pooled_ratio_weighs_pixels_where_the_mean_of_ratios_weighs_images():
    from napari_cvdm.evaluation.uncertainty_scores import Uncertainty

    rng = np.random.default_rng(1)
    row = Uncertainty(8)
    for scale, ratio in ((1.0, 0.25), (10.0, 1.0)):  # a quiet image twice too wide, a loud one calibrated
        sigma = np.full((64, 64), scale)
        error = np.sqrt(ratio) * sigma * rng.choice([-1.0, 1.0], (64, 64))
        row.add(error, sigma**2, sigma, {})
    assert np.mean(row.cal_ratio) == pytest.approx(0.625)
    assert row.pooled_ratio() == pytest.approx((0.25 + 100) / 101)


def test_a_row_of_several_images_gives_its_calibration_bars_with_their_standard_error_over_the_images():
    from napari_cvdm.evaluation.uncertainty_scores import Uncertainty

    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.5, 2.0, (32, 32))
    row = Uncertainty(8)
    scales = (0.5, 1.0, 2.0)  # three images whose errors are 0.5, 1 and 2× the calibrated std
    for scale in scales:
        error = scale * sigma * rng.standard_normal((32, 32))
        row.add(error, sigma**2, sigma, {0.5: 0.674 * sigma, 0.9: 1.645 * sigma, 0.95: 1.96 * sigma})
    ratio, pooled, cov50, cov90 = row.cells()[5:9]
    per_image = np.array(row.cal_ratio)
    mean, se = (float(x) for x in ratio.split(" ± "))
    assert mean == pytest.approx(per_image.mean(), abs=0.006)
    assert se == pytest.approx(per_image.std(ddof=1) / np.sqrt(3), abs=0.006)  # ≈ (0.25, 1, 4) spread: ≈ 1.17
    assert se > 0.5  # three images this different measure the bar only roughly, and the cell says so
    assert float(pooled) == pytest.approx(np.mean(np.square(scales)), abs=0.15)  # same σ in each: (0.25 + 1 + 4) / 3
    coverage = np.array(row.cal_coverage[0.9])
    assert cov90 == f"{coverage.mean():.2f} ± {coverage.std(ddof=1) / np.sqrt(3):.2f}"
    assert " ± " in cov50


def test_the_other_levels_of_a_noise_conditioned_phase_model_come_from_the_bin_of_the_input_s_noise():
    from napari_cvdm.evaluation.uncertainty_scores import calibrated_interval

    pooled = _calibration()
    quiet = _calibration(**{"0.5": 0.5, "0.9": 1.6, "0.95": 1.8}).model_copy(update={"noise_xi": (0.0, 0.05)})
    noisy = _calibration(**{"0.5": 0.9, "0.9": 1.6, "0.95": 2.5}).model_copy(update={"noise_xi": (0.05, 0.3)})
    model = SimpleNamespace(info=SimpleNamespace(task="phase", calibrations=[pooled, quiet, noisy]))
    sigma = np.ones((8, 8))
    result = SimpleNamespace(
        calibrated_std=sigma, lower=-1.6 * sigma, upper=1.6 * sigma, interval_level=0.9,
        settings={"method": "gamma", "eta": 1.0, "steps": 10}, optics={},
    )  # fmt: skip
    stack = 1.0 + 0.15 * np.random.default_rng(0).normal(size=(2, 64, 64))  # estimated ξ ≈ 0.18
    assert calibrated_interval(model, result, stack)[1][0.95] == pytest.approx(2.5 * sigma)
    assert calibrated_interval(model, result)[1][0.95] == pytest.approx(2.0 * sigma)  # no input: pooled


def test_std_metrics_have_their_known_answers_for_calibrated_gaussian_errors():
    from napari_cvdm.evaluation.metrics import half_width_coverage, std_calibration_ratio, std_ence, std_reliability

    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.1, 3.0, 200_000)
    error = sigma * rng.standard_normal(sigma.size)
    assert std_calibration_ratio(error, sigma) == pytest.approx(1.0, abs=0.02)
    assert half_width_coverage(error, 1.6449 * sigma) == pytest.approx(0.90, abs=0.005)
    assert half_width_coverage(error, 0.6745 * sigma) == pytest.approx(0.50, abs=0.005)
    assert std_ence(error, sigma) < 0.02 and std_ence(2 * error, sigma) == pytest.approx(1.0, abs=0.03)
    rows = std_reliability(error, sigma, bins=5)
    assert len(rows) == 5 and sum(r[3] for r in rows) == sigma.size
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # bins ordered by σ


def test_speed_comparison_alternates_the_models_and_reports_the_fastest_run_of_each(monkeypatch, tiny_sr_model):
    """Side by side: repeats run A B, B A, A B …; each model at its own steps; × faster = first's seconds ÷ its own
    (a fake clock makes the seconds known: 2 s per run of the first model, 0.5 s of the second)."""
    from napari_cvdm.evaluation import speed
    from napari_cvdm.evaluation.speed import speed_comparison
    from tests.conftest import tiny_model

    other = tiny_model("sr", wavelength_um=0.515)
    clock, order = [0.0], []
    real_reconstruct = speed.reconstruct

    def reconstruct(model, image, **kwargs):
        result = real_reconstruct(model, image, **kwargs)
        if kwargs["steps"] != 1:  # a timed run, not the one-step warm-up
            order.append("A" if model is tiny_sr_model else "B")
            clock[0] += 2.0 if model is tiny_sr_model else 0.5
        return result

    monkeypatch.setattr(speed, "reconstruct", reconstruct)
    monkeypatch.setattr(speed.time, "perf_counter", lambda: clock[0])
    models = [("today", tiny_sr_model, 4), ("cheaper", other, 2)]
    table = speed_comparison(models, size=16, n_samples=2, device="cpu", repeats=3, log=lambda m: None)
    assert order == ["A", "B", "B", "A", "A", "B"]
    assert [r[0] for r in table.rows] == ["today", "cheaper"]
    assert [r[3] for r in table.rows] == ["4", "2"]
    assert [float(r[4]) for r in table.rows] == [2.0, 0.5]
    assert [r[5] for r in table.rows] == ["1.00", "4.00"]


def test_bench_speed_against_times_each_named_model_at_its_steps_and_refuses_mixed_tasks(tmp_path, capsys):
    from napari_cvdm.cli import main
    from tests.conftest import save_tiny_models

    paths = save_tiny_models(tmp_path)
    sr, phase = str(paths["tiny-sr"]), str(paths["tiny-phase"])
    args = ["bench", "--speed", "--task", "sr", "--sr-model", sr, "--sizes", "16", "--samples", "2", "-q"]
    assert main([*args, "--steps", "3", "--against", f"{sr}:2", sr]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {sr}")]
    # --steps is the first model's; MODEL:STEPS its own; a bare MODEL its header's default (20 for the tiny model)
    assert [(r[0].strip(), r[3].strip()) for r in rows] == [(sr, "3"), (f"{sr}:2", "2"), (sr, "20")]
    assert rows[0][5].strip() == "1.00"
    with pytest.raises(SystemExit, match="is a phase model, not super-resolution"):
        main([*args, "--against", phase])
    with pytest.raises(SystemExit, match="add --task sr or --task phase"):
        main([*args[:3], "both", *args[4:], "--against", sr])
    with pytest.raises(SystemExit, match="it needs --speed"):
        main(["bench", "--task", "sr", "--sr-model", sr, "--against", sr])
