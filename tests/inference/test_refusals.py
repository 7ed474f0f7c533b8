"""Settings that cannot work are refused at once — before a condition is built or the network runs — with a
message that names the problem and the fix."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from pydantic import ValidationError

import napari_cvdm as nc
from napari_cvdm.model import CVDM, CVDMConfig, TrainedModel, UNetConfig
from napari_cvdm.model.metadata import ModelMetadata, SamplerDefaults
from napari_cvdm.sampling.plan import MAX_STEPS, plan_sampler
from napari_cvdm.settings import ReconstructSettings
from tests.conftest import TINY, TINY_INFO

recon = importlib.import_module("napari_cvdm.inference.run")  # where each plane's condition is built


@pytest.fixture
def conditions(monkeypatch) -> list[int]:
    """Counts the conditions built (a refusal must come before the first)."""
    calls: list[int] = []
    real = recon.plane_condition

    def counting(image, info):
        calls.append(1)
        return real(image, info)

    monkeypatch.setattr(recon, "plane_condition", counting)
    return calls


@pytest.fixture
def widefield() -> np.ndarray:
    return np.random.default_rng(0).uniform(50, 150, (40, 40)).astype(np.float32)


def refused_at_once(model, image, exc, match, **options) -> None:
    gen = nc.iter_reconstruct(model, image, ReconstructSettings(n_samples=1, device="cpu", **options))
    with pytest.raises(exc, match=match):
        next(gen)  # the very first step of the run refuses


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"tile_size": 64, "tile_overlap": 64}, "tile_overlap 64 is more than half of the tile_size 64.*at most 32"),
        ({"tile_size": 64, "tile_overlap": 200}, "at most 32, or a tile size of at least 400"),
        ({"tile_size": 16, "tile_overlap": 9}, "at most 8"),
        ({"steps": MAX_STEPS + 1}, f"less than or equal to {MAX_STEPS}"),
        ({"steps": 0}, "greater than or equal to 1"),
        ({"tile_size": 4}, "greater than or equal to 8, got 4"),
        ({"interval_levl": 0.5}, "interval_levl: not a setting \\(did you mean 'interval_level'\\?\\)"),
        ({"method": "euler"}, "method: Input should be 'gamma', 'ancestral' or 'ancestral-euler', got 'euler'"),
    ],
)
def test_impossible_settings_are_refused_by_the_settings(tiny_sr_model, widefield, options, match):
    with pytest.raises(nc.InputError, match=match) as refused:
        nc.reconstruct(tiny_sr_model, widefield, n_samples=1, **options)
    assert "pydantic" not in str(refused.value)  # one line per problem, no links to pydantic's pages
    assert not isinstance(refused.value, ValidationError)


def test_half_a_tile_of_overlap_is_accepted(tiny_sr_model, widefield):
    result = nc.reconstruct(tiny_sr_model, widefield, n_samples=1, steps=1, tile_size=32, tile_overlap=16)
    assert result.mean.shape == (80, 80)


def test_overlap_beyond_the_automatic_tile_is_refused_before_any_work(
    tiny_sr_model, widefield, conditions, monkeypatch
):
    monkeypatch.setattr(recon, "auto_tile_size", lambda *args: 32)  # as on a device with little memory
    refused_at_once(
        tiny_sr_model, widefield, nc.InputError, "more than half of the automatic tile size", tile_overlap=20
    )
    assert conditions == []


def test_a_small_tile_alone_gets_an_overlap_that_fits(tiny_sr_model, widefield):
    result = nc.reconstruct(tiny_sr_model, widefield, n_samples=1, steps=1, tile_size=16)
    assert (result.settings["tile_size"], result.settings["tile_overlap"]) == (16, 8)  # the default 32, capped


def test_overlap_is_irrelevant_for_one_tile(tiny_sr_model, widefield):
    """No tiling (the image fits): any overlap works, since no two tiles share pixels."""
    assert nc.reconstruct(tiny_sr_model, widefield, n_samples=1, steps=1, tile_overlap=500).mean.shape == (80, 80)


def test_a_tile_below_the_network_minimum_is_refused_before_any_work(widefield, conditions):
    deep = {**TINY, "denoiser": UNetConfig(width=4, depth=5, norm="group")}
    model = TrainedModel(
        CVDM(CVDMConfig(cond_channels=1, residual_channel=0, **deep)), ModelMetadata(**TINY_INFO["sr"])
    )
    assert model.network.min_size == 16
    refused_at_once(model, widefield, nc.InputError, "tile_size 8 is below this model's minimum of 16", tile_size=8)
    assert conditions == []


def test_the_most_steps_run(tiny_sr_model, widefield):
    """steps = MAX_STEPS reaches its first network evaluation (the time grid used to fail from 482 steps on)."""
    gen = nc.iter_reconstruct(tiny_sr_model, widefield[:16, :16], ReconstructSettings(n_samples=1, steps=MAX_STEPS))
    events = []
    for event in gen:
        events.append(event)
        if getattr(event, "done", 0) >= 1:
            break
    gen.close()
    assert events[-1].done == 1 and events[-1].total == MAX_STEPS


def test_model_files_that_ask_for_the_impossible_are_refused_by_the_plan():
    with pytest.raises(nc.InputError, match=f"outside 1 to {MAX_STEPS}"):
        plan_sampler(SamplerDefaults(steps=MAX_STEPS + 1), ReconstructSettings())
    bad = SamplerDefaults.model_construct(**{**SamplerDefaults().model_dump(), "steps": 2, "time_grid": [1, 0.5, 0.7]})
    with pytest.raises(nc.InputError, match="default time grid cannot be used.*grid 'snr'"):
        plan_sampler(bad, ReconstructSettings())


def test_a_bad_plane_anywhere_in_a_stack_is_refused_before_any_condition(tiny_sr_model, conditions):
    frames = np.random.default_rng(1).uniform(0, 1, (5, 16, 16))
    frames[3, 2, 2] = np.nan
    refused_at_once(tiny_sr_model, frames, nc.InputError, "NaN or infinite", steps=1)
    assert conditions == []


def test_available_memory_counts_the_droppable_page_cache_and_a_jobs_cgroup_limit(tmp_path, monkeypatch):
    """MemFree alone can be a small part of what an allocation gets on a machine that has read large files."""
    import napari_cvdm._runtime.device as device

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  32000000 kB\nMemFree:  1000000 kB\nMemAvailable:  20000000 kB\n")
    monkeypatch.setattr(device, "MEMINFO", meminfo)
    monkeypatch.setattr(device, "CGROUP", tmp_path / "no-cgroup")
    assert device.available_ram_bytes() == 20_000_000 * 1024
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("8589934592\n")  # an 8 GiB job, 3 GiB of it used
    (cgroup / "memory.current").write_text(f"{3 * 2**30}\n")
    monkeypatch.setattr(device, "CGROUP", cgroup)
    assert device.available_ram_bytes() == 5 * 2**30
    (cgroup / "memory.max").write_text("max\n")
    assert device.available_ram_bytes() == 20_000_000 * 1024
