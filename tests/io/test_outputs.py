"""The output stores: OME-Zarr and OME-TIFF round trips, completion marks, resume, refusals, the lazy view."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_cvdm._runtime import drive
from napari_cvdm.io.omezarr import MARKS, OutputMismatch, PlaneStore, open_lazy
from napari_cvdm.io.readers import open_source
from napari_cvdm.io.stack import PlaneDone, iter_stack, prepare
from tests.conftest import tiny_model
from tests.inference.test_calibrated_output import calibration
from tests.io.conftest import FAST, stack


def run(model, source, out, settings=FAST, **kw):
    job = prepare(model, open_source(source), out, settings, **kw)
    events: list = []
    summary = drive(iter_stack(job), events.append)
    return summary, [e for e in events if isinstance(e, PlaneDone)]


def test_ome_zarr_round_trip_channels_units_axes_and_scale(tmp_path, sr_model, stack_tif):
    summary, _ = run(sr_model, stack_tif, tmp_path / "o.zarr")
    assert summary.computed == [0, 1, 2, 3]
    group = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    ms = group.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    assert ms["axes"][-1]["unit"] == "micrometer"
    pixel = sr_model.info.output_pixel_um
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1, 1, pixel, pixel]
    names = [c["label"] for c in group.attrs["ome"]["omero"]["channels"]]
    assert names == ["mean", "sample variance", "beta map"]
    info = group.attrs["napari_cvdm"]
    assert [c["unit"] for c in info["channels"]][2] == "1"
    assert info["model"]["name"] == "tiny-sr" and info["settings"]["steps"] == 1
    assert group["0"].shape == (3, 4, 64, 64)
    lazy = open_lazy(tmp_path / "o.zarr")  # what napari layers show: dask views of the store
    assert (lazy[0].name, lazy[0].data.shape, lazy[0].axes) == ("mean", (4, 64, 64), "ZYX")
    np.testing.assert_array_equal(lazy[0].data[2].compute(), group["0"][0, 2])


def test_a_calibrated_model_writes_its_error_bars_as_channels(tmp_path):
    model = tiny_model("sr", calibrations=[calibration(steps=1)])
    run(model, stack(2), tmp_path / "o.zarr")
    store = PlaneStore.open(tmp_path / "o.zarr")
    assert [name for name, _ in store.channels] == [
        "mean", "calibrated std", "90 % interval lower bound", "90 % interval upper bound", "sample variance",
        "beta map",
    ]  # fmt: skip
    assert store.read_plane(1).shape == (6, 64, 64)


def test_ome_tiff_round_trip_channel_names_physical_size_and_axes(tmp_path, sr_model):
    data = stack(6).reshape(2, 3, 32, 32)
    src = tmp_path / "tz.ome.tif"
    tifffile.imwrite(src, data, ome=True, metadata={"axes": "TZYX"})
    run(sr_model, src, tmp_path / "out.ome.tif")
    assert not (tmp_path / "out.ome.tif.parts.zarr").exists()  # the plane store is gone once the TIFF is written
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        series = tif.series[0]
        assert (series.axes, series.shape) == ("TCZYX", (2, 3, 3, 64, 64))
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert [c["Name"] for c in pixels["Channel"]] == ["mean", "sample variance", "beta map"]
        assert pixels["PhysicalSizeX"] == pytest.approx(sr_model.info.output_pixel_um)
        written = series.asarray()
    assert np.isfinite(written).all()
    summary, _ = run(sr_model, src, tmp_path / "out.ome.tif")  # the same command again: nothing to do
    assert summary.computed == [] and summary.skipped == 6


def test_a_half_written_or_damaged_plane_is_redone_and_nothing_else(tmp_path, sr_model, stack_tif):
    out = tmp_path / "o.zarr"
    run(sr_model, stack_tif, out)
    store = PlaneStore.open(out)
    reference = [store.read_plane(k) for k in range(4)]
    store.group[MARKS][1] = 0  # plane 1: data written, mark not yet (a crash in between)
    store.group["0"][0, 2, :8] = 0.0  # plane 2: data changed after its mark
    assert store.pending() == [1, 2]
    summary, events = run(sr_model, stack_tif, out)
    assert summary.computed == [1, 2]
    assert [(e.index, e.computed) for e in events] == [(0, False), (3, False), (1, True), (2, True)]
    for k in range(4):  # each plane has its own seed: redone alone, it equals the first run's
        np.testing.assert_array_equal(store.read_plane(k), reference[k])


def test_other_settings_or_another_model_are_refused_not_mixed(tmp_path, sr_model, stack_tif):
    out = tmp_path / "o.zarr"
    run(sr_model, stack_tif, out)
    with pytest.raises(OutputMismatch, match=r"settings.steps 1 → 2.*--overwrite"):
        prepare(sr_model, open_source(stack_tif), out, FAST.model_copy(update={"steps": 2}))
    with pytest.raises(OutputMismatch, match="model.sha256"):
        prepare(tiny_model("sr", name="tiny-sr"), open_source(stack_tif), out, FAST)
    other = FAST.model_copy(update={"seed": 5})
    summary, _ = run(sr_model, stack_tif, out, other, overwrite=True)
    assert summary.computed == [0, 1, 2, 3]
    (tmp_path / "foreign.zarr").mkdir()
    with pytest.raises(OutputMismatch, match="not a zarr store|not a napari-cvdm output"):
        prepare(sr_model, open_source(stack_tif), tmp_path / "foreign.zarr", FAST)
