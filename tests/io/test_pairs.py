"""Pairs from two folders: matched by name, read by the reconstruction's own reader, pixel sizes in any unit."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_cvdm.io.pairs import read_folders, read_image
from napari_cvdm.tasks import InputError
from napari_cvdm.training.data import RawPairs
from napari_cvdm.training.optics import pairs_pixel_um


def _ome(path, image, pixel_nm: float) -> None:
    meta = {"PhysicalSizeX": pixel_nm, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": pixel_nm, "PhysicalSizeYUnit": "nm"}
    tifffile.imwrite(path, image, ome=True, metadata=meta)


def _folders(tmp_path, names=("a", "b")):
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    (tmp_path / "gt").mkdir()
    for name in names:
        _ome(tmp_path / "in" / f"{name}.tif", rng.random((16, 16), dtype=np.float32), 108)
        _ome(tmp_path / "gt" / f"{name}.tif", rng.random((32, 32), dtype=np.float32), 54)
    return tmp_path / "in", tmp_path / "gt"


def test_folders_are_matched_by_name_and_mismatches_listed(tmp_path):
    inputs, targets = _folders(tmp_path)
    raw = read_folders(inputs, targets)
    assert raw.names == ["a", "b"] and [x.shape for x in raw.inputs] == [(16, 16)] * 2
    np.testing.assert_array_equal(raw.targets[1], tifffile.imread(targets / "b.tif"))
    tifffile.imwrite(inputs / "c.tif", np.ones((16, 16), np.float32))
    with pytest.raises(InputError, match=r"Only in .*in: \['c'\]"):
        read_folders(inputs, targets)
    with pytest.raises(InputError, match="folder not found"):
        read_folders(tmp_path / "missing", targets)


def test_a_pixel_size_stated_in_nm_or_per_centimetre_is_read(tmp_path):
    """An OME-TIFF in nm (108 nm: 0.108 µm) and a plain TIFF with its resolution per cm; an inch is a print DPI."""
    inputs, targets = _folders(tmp_path)
    assert read_folders(inputs, targets).input_pixel_um == pytest.approx(0.108)
    image = np.ones((16, 16), np.float32)
    tifffile.imwrite(tmp_path / "cm.tif", image, resolution=(1e4 / 0.065, 1e4 / 0.065), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "inch.tif", image, resolution=(300, 300), resolutionunit="INCH")
    assert read_image(tmp_path / "cm.tif")[1] == pytest.approx(0.065)
    assert read_image(tmp_path / "inch.tif")[1] is None


def test_a_colour_tiff_in_a_pair_folder_is_refused_by_name(tmp_path):
    inputs, targets = _folders(tmp_path)
    tifffile.imwrite(inputs / "a.tif", np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match=r"a\.tif is a colour TIFF \(3 samples per pixel"):
        read_folders(inputs, targets)


def test_files_that_disagree_on_their_pixel_size_are_refused_unless_one_is_stated(tmp_path):
    inputs, targets = _folders(tmp_path)
    _ome(inputs / "b.tif", np.ones((16, 16), np.float32), 65)
    raw = read_folders(inputs, targets)
    assert raw.input_pixel_um is None and raw.file_pixels == {"a": pytest.approx(0.108), "b": pytest.approx(0.065)}
    with pytest.raises(InputError, match=r"a states 108\.0 nm pixels but b 65\.0 nm.*--pixel-size"):
        pairs_pixel_um(raw, None)
    assert pairs_pixel_um(raw, 0.1) == 0.1
    tifffile.imwrite(inputs / "b.tif", np.ones((16, 16), np.float32))  # states none
    with pytest.raises(InputError, match="a states 108.0 nm pixels but b states none"):
        pairs_pixel_um(read_folders(inputs, targets), None)
    assert pairs_pixel_um(RawPairs([], [], [], "layers"), None) is None  # nothing stated anywhere: no pixel size


def _defocus_folders(tmp_path, names=("a", "b")):
    """Phase pairs as three folders: I(−d), I(+d) and the phase, one (H, W) plane per file."""
    rng = np.random.default_rng(1)
    for folder in ("minus", "plus", "phase"):
        (tmp_path / folder).mkdir()
    for name in names:
        for folder in ("minus", "plus", "phase"):
            _ome(tmp_path / folder / f"{name}.tif", rng.random((16, 16), dtype=np.float32), 210)
    return tmp_path / "minus", tmp_path / "plus", tmp_path / "phase"


def test_defocus_planes_in_separate_folders_are_stacked_minus_first(tmp_path):
    minus, plus, phase = _defocus_folders(tmp_path)
    raw = read_folders(minus, phase, plus_dir=plus)
    assert [x.shape for x in raw.inputs] == [(2, 16, 16)] * 2 and raw.input_pixel_um == pytest.approx(0.21)
    np.testing.assert_array_equal(raw.inputs[1][0], tifffile.imread(minus / "b.tif"))
    np.testing.assert_array_equal(raw.inputs[1][1], tifffile.imread(plus / "b.tif"))
    assert f"{minus} + {plus}" in raw.source


@pytest.mark.parametrize(
    ("spoil", "match"),
    [
        (lambda p: (p / "b.tif").unlink(), r"Missing there: \['b'\]"),
        (lambda p: tifffile.imwrite(p / "b.tif", np.ones((2, 16, 16), np.float32)), r"has shape \(2, 16, 16\)"),
        (lambda p: tifffile.imwrite(p / "b.tif", np.ones((16, 24), np.float32)), "16×16 but I\\(\\+d\\).* is 16×24"),
        (lambda p: _ome(p / "b.tif", np.ones((16, 16), np.float32), 65), "210.0 nm pixels but I\\(\\+d\\) 65.0 nm"),
    ],
)
def test_a_defocus_plane_that_does_not_match_its_partner_is_refused(tmp_path, spoil, match):
    minus, plus, phase = _defocus_folders(tmp_path)
    spoil(plus)
    with pytest.raises(InputError, match=match):
        read_folders(minus, phase, plus_dir=plus)
