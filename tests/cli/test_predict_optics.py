"""predict with the user's optics: the pixel size read from ImageJ / OME-TIFF files or --pixel-size (with units),
a file without one refused, optics outside the model refused or resampled, and the OME-TIFF read back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_cvdm.cli import main
from tests.conftest import save_tiny_models

FAST = ["--n-samples", "2", "--steps", "2", "--device", "cpu", "-q"]


@pytest.fixture
def models(tmp_path):
    return save_tiny_models(tmp_path / "models", wavelength_um=0.515, numerical_aperture=1.3)


def _image(seed=0, shape=(32, 32)):
    return np.random.default_rng(seed).uniform(50, 150, shape).astype(np.float32)


def _ome(path):
    with tifffile.TiffFile(path) as tif:
        image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        return tif.asarray(), image["Pixels"], json.loads(image["Description"])


def test_pixel_size_from_imagej_metadata_and_ome_round_trip(tmp_path, models, capsys):
    src, out = tmp_path / "wf.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, _image(), imagej=True, resolution=(1 / 0.0626, 1 / 0.0626), metadata={"unit": "um"})
    assert main(["predict", str(src), "--model", str(models["tiny-sr"]), "-o", str(out), *FAST]) == 0
    data, pixels, about = _ome(out)
    assert data.shape == (3, 64, 64)
    assert float(pixels["PhysicalSizeX"]) == pytest.approx(0.0313) and pixels["PhysicalSizeXUnit"] == "µm"
    assert [c["Name"] for c in pixels["Channel"]] == ["mean", "sample variance", "beta map"]
    assert about["model"]["name"] and about["napari_cvdm_version"]
    assert about["settings"]["n_samples"] == 2
    assert about["optics"]["used"]["pixel_size_um"]["source"] == "ImageJ TIFF metadata of wf.tif"
    assert about["channels"][1]["unit"] == "(input intensity units)²"


def test_pixel_size_from_ome_tiff_metadata(tmp_path, models):
    src, out = tmp_path / "wf.ome.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, _image(), ome=True, metadata={"PhysicalSizeX": 0.0313, "PhysicalSizeY": 0.0313})
    assert main(["predict", str(src), "--model", str(models["tiny-sr"]), "-o", str(out), *FAST]) == 0
    data, pixels, about = _ome(out)  # 31.3 nm is oversampled 2×: binned, the outputs on the input's grid
    assert data.shape == (3, 32, 32) and about["optics"]["action"] == "bin"
    assert float(pixels["PhysicalSizeX"]) == pytest.approx(0.0313)


def test_a_file_without_pixel_size_is_refused_until_it_is_given(tmp_path, models, capsys):
    src, out = tmp_path / "plain.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, _image())
    args = ["predict", str(src), "--model", str(models["tiny-sr"]), "-o", str(out), *FAST]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "states no pixel size" in err and "--pixel-size" in err and "62.6 nm" in err
    assert not out.exists()
    assert main([*args, "--pixel-size", "62.6nm"]) == 0
    assert _ome(out)[2]["optics"]["used"]["pixel_size_um"] == {"value": 0.0626, "source": "--pixel-size"}


def test_optics_outside_the_model_are_refused_with_the_fix(tmp_path, models, capsys):
    src, out = tmp_path / "plain.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, _image())
    args = ["predict", str(src), "--model", str(models["tiny-sr"]), "-o", str(out), *FAST, "--pixel-size", "108nm"]
    assert main([*args, "--na", "1.45"]) == 2
    err = capsys.readouterr().err
    assert "0.52×" in err and "0.90–1.10×" in err and "napari-cvdm adapt" in err and not out.exists()
    assert main([*args, "--resample", "approximate"]) == 0
    assert _ome(out)[2]["optics"]["action"] == "interpolate"


def test_bad_length_is_a_clear_error(tmp_path, models, capsys):
    src = tmp_path / "plain.tif"
    tifffile.imwrite(src, _image())
    assert main(["predict", str(src), "--model", str(models["tiny-sr"]), "-o", str(tmp_path / "o.tif"),
                 "--pixel-size", "108", *FAST]) == 2  # fmt: skip
    assert "if you meant nanometres, write 108nm" in capsys.readouterr().err


def test_phase_at_three_times_the_fresnel_number_is_resampled(tmp_path, models):
    pair = np.random.default_rng(0).uniform(0.8, 1.2, (2, 32, 32)).astype(np.float32)
    src, out = tmp_path / "pair.tif", tmp_path / "phase.tif"
    tifffile.imwrite(src, pair)
    args = ["predict", str(src), "--model", str(models["tiny-phase"]), "-o", str(out), *FAST]
    assert main([*args, "--pixel-size", f"{0.21 / np.sqrt(3)}", "--plane-order", "plus-minus"]) == 0
    data, _, about = _ome(out)
    assert data.shape == (3, 32, 32) and about["optics"]["action"] == "resample"
    assert about["channels"][0]["unit"] == "rad" and about["channels"][1]["unit"] == "(rad)²"
    assert about["optics"]["plane_order"] == "plus-minus"


def test_batch_outputs_read_the_pixel_size_and_refuse_without_one(tmp_path, models, capsys):
    good, bad = tmp_path / "good.ome.tif", tmp_path / "bad.tif"
    tifffile.imwrite(good, _image(), ome=True, metadata={"PhysicalSizeX": 0.0626, "PhysicalSizeY": 0.0626})
    tifffile.imwrite(bad, _image())
    out = tmp_path / "good.zarr"
    assert main(["predict", str(good), "--model", str(models["tiny-sr"]), "-o", str(out), *FAST]) == 0
    assert main(["predict", str(bad), "--model", str(models["tiny-sr"]), "-o", str(tmp_path / "b.zarr"), *FAST]) == 2
    assert "states no pixel size" in capsys.readouterr().err
