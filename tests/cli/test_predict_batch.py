"""``napari-cvdm predict`` on several inputs: folders, globs, patterns, a corrupt file, immediate refusals."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_cvdm.cli import main
from napari_cvdm.io.omezarr import PlaneStore
from tests.conftest import save_tiny_models


@pytest.fixture
def model(tmp_path):
    return str(save_tiny_models(tmp_path / "models", sampler={"steps": 1})["tiny-sr"])


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        tifffile.imwrite(
            data / f"{name}.tif", rng.uniform(50, 150, (2, 32, 32)).astype(np.uint16), photometric="minisblack"
        )
    return data


FLAGS = ["--n-samples", "2", "--device", "cpu", "-q", "--pixel-size", "62.6nm"]  # the test TIFFs state none


def test_a_folder_with_a_corrupt_file_processes_the_others_and_names_it(tmp_path, model, folder, capsys):
    (folder / "broken.tif").write_bytes(b"II*\x00 this is not really a tiff")
    out = tmp_path / "out"
    assert main(["predict", str(folder), "-o", str(out), "--model", model, *FLAGS]) == 1
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a.zarr", "b.zarr", "c.zarr"]
    assert all(PlaneStore.open(out / f"{n}.zarr").done() == [0, 1] for n in "abc")
    assert "3 of 4 input(s) done" in captured.out
    assert "1 input(s) failed" in captured.err and "broken.tif: could not read" in captured.err


def test_a_glob_and_an_output_pattern_write_one_ome_tiff_per_input(tmp_path, model, folder, capsys):
    pattern = str(tmp_path / "res" / "{stem}_cvdm.ome.tif")
    assert main(["predict", str(folder / "[ab].tif"), "-o", pattern, "--model", model, *FLAGS]) == 0
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["a_cvdm.ome.tif", "b_cvdm.ome.tif"]
    assert tifffile.imread(tmp_path / "res" / "a_cvdm.ome.tif").shape == (3, 2, 64, 64)
    assert main(["predict", str(folder / "[ab].tif"), "-o", pattern, "--model", model, *FLAGS]) == 0
    assert "0 plane(s) computed, 4 already in their output" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("inputs", "output", "match"),
    [
        (["a.tif", "b.tif"], "one.zarr", "with several inputs, -o is a folder"),
        (["a.tif"], "out.png", "the output's extension decides its format"),
        (["missing.tif"], "o.zarr", "missing.tif does not exist"),
        (["nothing*.tif"], "o", "no file matches"),
    ],
)
def test_refusals_are_immediate_and_say_the_fix(tmp_path, model, folder, capsys, inputs, output, match):
    paths = [str(folder / name) for name in inputs]
    assert main(["predict", *paths, "-o", str(tmp_path / output), "--model", model, *FLAGS]) == 2
    assert match in capsys.readouterr().err


def test_a_changed_setting_is_refused_and_overwrite_replaces(tmp_path, model, folder, capsys):
    out = str(tmp_path / "a.zarr")
    assert main(["predict", str(folder / "a.tif"), "-o", out, "--model", model, *FLAGS]) == 0
    assert main(["predict", str(folder / "a.tif"), "-o", out, "--model", model, *FLAGS, "--seed", "3"]) == 2
    assert "settings.seed 0 → 3" in capsys.readouterr().err
    assert (
        main(["predict", str(folder / "a.tif"), "-o", out, "--model", model, *FLAGS, "--seed", "3", "--overwrite"]) == 0
    )


def test_one_input_failing_mid_job_is_an_error_line_and_exit_1_not_a_traceback(
    tmp_path, model, folder, capsys, monkeypatch
):
    import napari_cvdm.io.stack as stack

    def full_disk(job, k):
        raise OSError(28, "No space left on device")
        yield  # a generator, as write_plane is

    monkeypatch.setattr(stack, "write_plane", full_disk)
    assert main(["predict", str(folder / "a.tif"), "-o", str(tmp_path / "a.zarr"), "--model", model, *FLAGS]) == 1
    err = capsys.readouterr().err
    assert "1 input(s) failed" in err and "a.tif" in err and "No space left on device" in err
