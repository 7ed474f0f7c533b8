"""Few-step sampling: which sampler a run uses, learned grids in model files, device-aware batching and tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import napari_cvdm as nc
from napari_cvdm._runtime import Progress
from napari_cvdm._runtime import device as dev
from napari_cvdm.cli import main
from napari_cvdm.evaluation.nfe import summarize
from napari_cvdm.inference.reconstruct import iter_reconstruct
from napari_cvdm.model import SamplerDefaults
from napari_cvdm.model.files import load_model_file, save_model
from napari_cvdm.sampling.ld3_fit import condition_patches, learn_grids
from napari_cvdm.sampling.plan import plan_sampler
from napari_cvdm.settings import ReconstructSettings
from napari_cvdm.tasks import InputError

LEARNED = {5: [1.0, 0.8, 0.5, 0.2, 0.05, 0.0]}


@pytest.fixture
def widefield() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.poisson(50, (64, 64)) + 100).astype(np.uint16)


def _stages(model, image, settings: ReconstructSettings) -> set[str]:
    gen, stages = iter_reconstruct(model, image, settings), set()
    for event in gen:
        if isinstance(event, Progress):
            stages.add(event.stage)
    return stages


def test_a_learned_grid_is_used_for_its_step_count_with_the_deterministic_sampler():
    stochastic = SamplerDefaults(steps=20, eta=1.0, learned_grids=LEARNED)
    plan = plan_sampler(stochastic, ReconstructSettings(steps=5))  # the default stays stochastic: no LD3 grid
    assert (plan.grid, plan.eta, plan.time_grid) == ("snr", 1.0, None)
    for defaults, settings in (
        (stochastic, ReconstructSettings(steps=5, eta=0.0)),
        (stochastic, ReconstructSettings(steps=5, grid="learned")),
        (SamplerDefaults(steps=5, eta=0.0, learned_grids=LEARNED), ReconstructSettings()),
    ):
        plan = plan_sampler(defaults, settings)
        assert (plan.grid, plan.eta, plan.steps) == ("learned", 0.0, 5)
        assert plan.time_grid.tolist() == pytest.approx(LEARNED[5])
    other = plan_sampler(stochastic, ReconstructSettings(steps=7, eta=0.0))  # no learned grid for 7 steps
    assert (other.grid, other.eta, other.time_grid) == ("snr", 0.0, None)


def test_explicit_choices_win_over_the_model_defaults():
    defaults = SamplerDefaults(steps=5, learned_grids=LEARNED)
    assert plan_sampler(defaults, ReconstructSettings(grid="snr", eta=0.0)).grid == "snr"
    assert plan_sampler(defaults, ReconstructSettings(eta=0.5)).eta == 0.5
    assert plan_sampler(defaults, ReconstructSettings(method="ancestral")).time_grid is None
    explicit = SamplerDefaults(steps=2, time_grid=[1.0, 0.4, 0.0])
    assert plan_sampler(explicit, ReconstructSettings()).grid == "explicit"
    assert plan_sampler(explicit, ReconstructSettings(steps=3)).grid == "snr"


def test_asking_for_a_learned_grid_the_model_lacks_is_explained():
    with pytest.raises(InputError, match=r"no learned time grid for 10 steps \(it has: 5\).*learn-grid"):
        plan_sampler(SamplerDefaults(learned_grids=LEARNED), ReconstructSettings(steps=10, grid="learned"))


@pytest.mark.parametrize(
    "grids",
    [{3: [1.0, 0.5, 0.0]}, {2: [1.0, 0.5, 0.6]}, {2: [0.9, 0.5, 0.0]}],
    ids=["wrong length", "not decreasing", "not from 1"],
)
def test_bad_learned_grids_are_refused(grids):
    with pytest.raises(ValidationError, match="must decrease strictly"):
        SamplerDefaults(learned_grids=grids)


def test_cpu_batches_keep_a_call_near_the_cache_sweet_spot():
    cpu = torch.device("cpu")
    assert dev.samples_per_call(cpu, 512 * 512, 8, 32) == 1
    assert dev.samples_per_call(cpu, 64 * 64, 8, 32) == 8  # capped by the number of samples
    assert dev.samples_per_call(cpu, 64 * 64, 100, 32) == dev.CPU_PIXELS_PER_CALL // 4096


def test_tiles_shrink_to_fit_the_available_memory(monkeypatch, tiny_sr_model, widefield):
    cpu = torch.device("cpu")
    assert dev.auto_tile_size(cpu, 512, 512, 32) == 512  # plenty of memory: the whole image
    budget = 200 * 200 * dev.memory_per_pixel(8) * 2  # room for a 200² tile of the tiny (width 8) model
    monkeypatch.setattr(dev, "free_memory_bytes", lambda device: budget)
    assert dev.auto_tile_size(cpu, 512, 512, 8) == 192
    big = np.tile(widefield, (2, 2))  # 128² input → 256² output: 2 × 2 tiles of 192²
    assert any("tile 4/4" in s for s in _stages(tiny_sr_model, big, ReconstructSettings(n_samples=1, steps=1)))


def test_bf16_is_the_cpu_default_only_where_oneDNN_has_bf16_kernels(monkeypatch):
    monkeypatch.setattr(dev, "_cpu_has_fast_bf16", lambda: True)
    assert dev.default_precision(torch.device("cpu")) == "bf16"
    monkeypatch.setattr(dev, "_cpu_has_fast_bf16", lambda: False)
    assert dev.default_precision(torch.device("cpu")) == "fp32"


def test_learned_grids_travel_in_the_model_file(tmp_path, tiny_sr_model, widefield):
    fits = learn_grids(tiny_sr_model, [widefield], [2, 3], n_patches=4, patch=32, iterations=3, teacher_steps=8)
    assert [f.steps for f in fits] == [2, 3]
    path = save_model(tmp_path / "m.cvdm", tiny_sr_model.network, tiny_sr_model.info)
    loaded = load_model_file(path)
    assert sorted(loaded.info.sampler.learned_grids) == [2, 3]
    assert loaded.info.training["learned_grids"]["2"]["teacher_steps"] == 8
    result = nc.reconstruct(loaded, widefield[:32, :32], n_samples=2, steps=3, eta=0.0)
    assert (result.settings["grid"], result.settings["eta"], result.nfe_per_sample) == ("learned", 0.0, 3)


def test_condition_patches_are_crops_of_the_whole_image_condition(tiny_phase_model):
    stack = np.random.default_rng(0).uniform(0.5, 1.5, (2, 64, 64)).astype(np.float32)
    patches = condition_patches(tiny_phase_model, [stack], n_patches=5, patch=24)
    assert patches.shape == (5, 2, 24, 24)
    with pytest.raises(InputError, match="larger than some images"):
        condition_patches(tiny_phase_model, [stack], n_patches=2, patch=96)
    with pytest.raises(InputError, match="no images"):
        condition_patches(tiny_phase_model, [], n_patches=2, patch=24)


def test_learn_grid_cli_writes_a_new_model_and_keeps_the_old(tmp_path, capsys, tiny_sr_model, widefield):
    import tifffile

    base = save_model(tmp_path / "base.cvdm", tiny_sr_model.network, tiny_sr_model.info)
    before = base.read_bytes()
    (tmp_path / "inputs").mkdir()
    tifffile.imwrite(tmp_path / "inputs" / "a.tif", widefield)
    out = tmp_path / "fast.cvdm"
    argv = [
        "learn-grid",
        "--model",
        str(base),
        "-o",
        str(out),
        "--steps",
        "2",
        "--inputs",
        str(tmp_path / "inputs"),
        "--patches",
        "4",
        "--patch-size",
        "32",
        "--iterations",
        "2",
        "--teacher-steps",
        "6",
        "-q",
    ]
    assert main(argv) == 0
    assert "2 steps: held-out MSE" in capsys.readouterr().out
    assert base.read_bytes() == before
    assert list(load_model_file(out).info.sampler.learned_grids) == [2]
    assert load_model_file(out).info.sampler.steps == tiny_sr_model.info.sampler.steps
    assert main([*argv, "--overwrite", "--default-steps", "2", "--default-eta", "0"]) == 0
    assert (load_model_file(out).info.sampler.steps, load_model_file(out).info.sampler.eta) == (2, 0.0)
    assert main(argv) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*argv[:4], str(tmp_path / "x.cvdm"), "--inputs", str(tmp_path / "empty")]) == 2
    assert "no .tif/.tiff files" in capsys.readouterr().err


def test_the_default_nfe_is_the_smallest_within_one_percent_of_200():
    records = [
        {
            "task": "sr",
            "image": "a",
            "sampler": "s",
            "nfe": n,
            "n_samples": 8,
            "seconds": 1.0,
            "mae": 0.1,
            "spearman": 0.5,
            "calibration": c,
            "ms_ssim": q,
        }
        for n, q, c in [(5, 0.90, 3.0), (10, 0.991, 3.0), (20, 0.995, 2.4), (200, 1.0, 2.0)]
    ]
    table, picks = summarize(records, "sr")
    assert picks == {"s": {"ms-ssim": 10, "ms-ssim+calibration": 20}}
    assert len(table.rows) == 4


def test_the_nfe_study_scores_every_run_once_and_resumes(tmp_path, monkeypatch, tiny_sr_model):
    import napari_cvdm.evaluation.nfe as study

    rng = np.random.default_rng(0)
    wf = rng.uniform(100, 200, (24, 24)).astype(np.float32)
    sim = rng.uniform(0, 1, (48, 48)).astype(np.float32)  # MS-SSIM needs sides > 32
    monkeypatch.setattr(study, "test_images", lambda task: iter([("img", wf, sim, 1.0)]))
    monkeypatch.setattr(
        study, "VARIANTS", {"a": ({"method": "ancestral"}, (2, 3)), "d": ({"method": "gamma", "eta": 0.0}, (2,))}
    )
    monkeypatch.setattr(study, "PRECISION_CHECK_NFE", ())
    calls = []
    real = study.reconstruct
    monkeypatch.setattr(study, "reconstruct", lambda *a, **k: calls.append(k) or real(*a, **k))
    results = tmp_path / "nfe.jsonl"
    records = study.run_study(tiny_sr_model, "sr", results, n_samples=2, log=lambda m: None)
    assert [(r["sampler"], r["nfe"]) for r in records] == [("a", 2), ("a", 3), ("d", 2)]
    assert all(-1 <= r["spearman"] <= 1 and r["calibration"] > 0 and 0 <= r["ms_ssim"] <= 1 for r in records)
    assert [c["steps"] for c in calls] == [2, 3, 2]
    again = study.run_study(tiny_sr_model, "sr", results, n_samples=2, log=lambda m: None)
    assert len(calls) == 3 and len(again) == 3  # nothing re-run: the results file is the resume point
    table, picks = study.summarize(again, "sr")
    assert len(table.rows) == 3 and picks == {}  # no 200-NFE reference in this tiny study
