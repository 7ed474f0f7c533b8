"""The plane job writes each plane a row band at a time and marks it only after the last band; its output equals
``reconstruct()`` on the whole stack bit for bit, and the OME-TIFF of a plane larger than a tile is tiled."""

from __future__ import annotations

import numpy as np
import tifffile

import napari_cvdm as nc
from napari_cvdm._runtime import drive
from napari_cvdm.io import omezarr
from napari_cvdm.io.omezarr import PlaneStore
from napari_cvdm.io.readers import open_source
from napari_cvdm.io.stack import iter_stack, prepare
from tests.io.conftest import FAST, stack

TILED = FAST.model_copy(update={"tile_size": 32, "tile_overlap": 8, "pixel_size_um": 0.0626})


def test_a_tiled_stack_job_equals_reconstructing_the_whole_stack(tmp_path, sr_model, monkeypatch):
    data = stack(3, 40)
    writes: list[tuple[int, int, bool]] = []  # (plane, first row, plane already marked?)
    real = PlaneStore.write_rows

    def spy(self, k, first, arrays):
        writes.append((k, first, bool(self.marks()[k])))
        return real(self, k, first, arrays)

    monkeypatch.setattr(PlaneStore, "write_rows", spy)
    job = prepare(sr_model, open_source(data), tmp_path / "out.zarr", TILED)
    drive(iter_stack(job))
    out = PlaneStore.open(tmp_path / "out.zarr")
    assert out.done() == [0, 1, 2]
    bands = [first for k, first, _ in writes if k == 0]
    assert len(bands) == len(job.run.layout.rows) > 1 and bands == sorted(bands)  # one write per tile row
    assert not any(marked for _, _, marked in writes)  # no band written into a plane already marked done

    whole = drive(nc.iter_reconstruct(sr_model, data, TILED))
    for k in range(3):
        plane = out.read_plane(k)
        np.testing.assert_array_equal(plane[0], whole.mean[k])
        np.testing.assert_array_equal(plane[-2], whole.variance[k])


def test_a_plane_cut_short_between_bands_is_redone(tmp_path, sr_model):
    data = stack(2, 40)
    job = prepare(sr_model, open_source(data), tmp_path / "out.zarr", TILED)
    events = iter_stack(job)
    for event in events:  # stop inside plane 1, after some of its bands were written
        if getattr(event, "stage", "").startswith("plane 2/2, tile 4/"):
            break
    events.close()
    store = PlaneStore.open(tmp_path / "out.zarr")
    assert store.done() == [0]
    assert not np.isnan(store.read_plane(1)[0][:8]).any()  # its first band is in, unmarked
    again = prepare(sr_model, open_source(data), tmp_path / "out.zarr", TILED)
    summary = drive(iter_stack(again))
    assert summary.computed == [1]
    reference = drive(iter_stack(prepare(sr_model, open_source(data), tmp_path / "ref.zarr", TILED)))
    assert reference.computed == [0, 1]
    np.testing.assert_array_equal(store.group["0"][:], PlaneStore.open(tmp_path / "ref.zarr").group["0"][:])


def test_the_ome_tiff_of_a_plane_larger_than_a_tile_is_written_tile_by_tile(tmp_path, sr_model, monkeypatch):
    monkeypatch.setattr(omezarr, "TILE", 32)  # planes of 80 × 80 output pixels: 3 × 3 tiles of 32
    data = stack(2, 40)
    out = tmp_path / "out.ome.tif"
    drive(iter_stack(prepare(sr_model, open_source(data), out, TILED)))
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (32, 32)
        written = tif.asarray()
    whole = drive(nc.iter_reconstruct(sr_model, data, TILED))
    np.testing.assert_array_equal(written[0], whole.mean)  # (C, Z, Y, X) as NGFF orders them: channel 0, the mean


def test_a_store_cut_short_while_it_is_made_does_not_block_the_rerun(tmp_path, sr_model):
    data = stack(2, 40)
    out = tmp_path / "out.zarr"
    half = tmp_path / "out.zarr.creating"  # what a crash inside PlaneStore.create leaves
    half.mkdir()
    (half / "zarr.json").write_text("{")
    job = prepare(sr_model, open_source(data), out, TILED)
    assert drive(iter_stack(job)).computed == [0, 1]
    assert not half.exists() and PlaneStore.open(out).done() == [0, 1]
