"""Lazy inputs: TIFF, OME-TIFF, zarr, OME-Zarr, dask and NumPy arrays give one plane at a time."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_cvdm.io.readers import open_source
from napari_cvdm.tasks import InputError
from tests.io.conftest import stack


def test_a_tiff_stack_is_read_plane_by_plane_through_tifffiles_zarr_store(stack_tif):
    data = tifffile.imread(stack_tif)
    with open_source(stack_tif) as source:
        assert isinstance(source.array, zarr.Array)  # no pixel read yet: a view of the TIFF's pages
        assert (source.shape, source.lead, source.n_planes) == ((4, 32, 32), (4,), 4)
        for k, plane in source.planes():
            np.testing.assert_array_equal(plane, data[k])


def test_an_ome_tiff_gives_its_axes_and_pixel_size(tmp_path):
    path = tmp_path / "tz.ome.tif"
    data = stack(6).reshape(2, 3, 32, 32)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1})
    with open_source(path) as source:
        assert (source.axes, source.lead, source.pixel_um) == ("TZYX", (2, 3), pytest.approx(0.1))
        np.testing.assert_array_equal(source.plane(4), data[1, 1])  # flat index, C order


def test_an_ome_zarr_image_drops_its_single_channel_axis(tmp_path):
    data = stack(3)[:, None]  # (z, c=1, y, x) as an NGFF image would hold an SR stack: (c, z, y, x)
    group = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=3)
    group.create_array("0", data=np.moveaxis(data, 1, 0), chunks=(1, 1, 32, 32))
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in ("z", "y", "x")
    ]
    scale = {"type": "scale", "scale": [1, 1, 0.2, 0.2]}
    ms = {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [scale]}]}
    group.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    with open_source(tmp_path / "img.ome.zarr") as source:
        assert (source.shape, source.axes, source.pixel_um) == ((3, 32, 32), "ZYX", 0.2)
        np.testing.assert_array_equal(source.plane(2), data[2, 0])


def test_a_plain_zarr_array_and_numpy_arrays(tmp_path):
    data = stack(2)
    zarr.save_array(str(tmp_path / "a.zarr"), data)
    np.testing.assert_array_equal(open_source(tmp_path / "a.zarr").plane(1), data[1])
    np.testing.assert_array_equal(open_source(data).plane(0), data[0])
    phase = open_source(np.zeros((5, 2, 16, 16)), plane_ndim=3)
    assert (phase.n_planes, phase.plane(3).shape) == (5, (2, 16, 16))


def test_a_dask_array_computes_only_the_plane_asked_for():
    da = pytest.importorskip("dask.array")
    from dask import delayed

    read: list[int] = []

    def load(k: int) -> np.ndarray:
        read.append(k)
        return np.full((16, 16), k, np.float32)

    lazy = da.stack([da.from_delayed(delayed(load)(k), (16, 16), np.float32) for k in range(10)])
    source = open_source(lazy)
    assert source.plane(7)[0, 0] == 7
    assert read == [7]


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"not a tiff", "could not read .* as a TIFF"), (None, "does not exist")],
)
def test_unreadable_inputs_are_refused_by_name(tmp_path, content, match):
    path = tmp_path / "bad.tif"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        open_source(path)


def test_too_many_stack_axes_are_refused():
    with pytest.raises(InputError, match="more than 2 stack axes"):
        open_source(np.zeros((2, 2, 2, 8, 8)))


@pytest.mark.parametrize("plane_ndim", [2, 3])
def test_a_colour_tiff_is_refused_as_colour_not_as_a_stack(tmp_path, plane_ndim):
    """An RGB TIFF read as an array is (H, W, 3): a stack of H planes W×3 px to the batch path, unless refused."""
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.full((64, 48, 3), 9, np.uint8), photometric="rgb")
    with pytest.raises(InputError, match=r"colour TIFF \(3 samples per pixel, shape \(64, 48, 3\), axes YXS\)"):
        open_source(path, plane_ndim)
    planar = tmp_path / "planar.tif"  # the same colours stored plane after plane: (3, H, W), axes SYX
    tifffile.imwrite(planar, np.full((3, 64, 48), 9, np.uint8), photometric="rgb", planarconfig="separate")
    with pytest.raises(InputError, match=r"colour TIFF \(3 samples per pixel, shape \(3, 64, 48\), axes SYX\)"):
        open_source(planar, plane_ndim)
    gray = tmp_path / "gray.tif"  # three grayscale planes (3, H, W) stay a stack
    tifffile.imwrite(gray, np.full((3, 64, 48), 9, np.uint8), photometric="minisblack")
    assert open_source(gray, plane_ndim).shape == (3, 64, 48)


@pytest.mark.parametrize(
    ("kind", "size", "unit", "um"),
    [
        ("ome", 108.0, "nm", 0.108),
        ("ome", 0.108, "µm", 0.108),
        ("ome", 1080.0, "Å", 0.108),
        ("imagej", 108.0, "nm", 0.108),
        ("imagej", 0.108, "micron", 0.108),
        ("imagej", 0.108, "pixel", None),  # ImageJ's uncalibrated image: no length
        ("zarr", 62.6, "nanometer", 0.0626),
        ("zarr", 0.0626, "micrometer", 0.0626),
    ],
)
def test_the_stated_pixel_size_is_read_in_any_length_unit(tmp_path, kind, size, unit, um):
    data = stack(2)
    if kind == "zarr":
        path = tmp_path / "img.ome.zarr"
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        group.create_array("0", data=data, chunks=(1, 32, 32))
        axes = [{"name": "z", "type": "space"}] + [{"name": a, "type": "space", "unit": unit} for a in "yx"]
        scale = {"type": "scale", "scale": [1, size, size]}
        ms = {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [scale]}]}
        group.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    elif kind == "ome":
        path = tmp_path / "img.ome.tif"
        meta = {"axes": "ZYX", "PhysicalSizeX": size, "PhysicalSizeXUnit": unit}
        tifffile.imwrite(path, data, ome=True, metadata=meta)
    else:
        path = tmp_path / "img.tif"
        tifffile.imwrite(path, data, imagej=True, resolution=(1 / size, 1 / size), metadata={"unit": unit})
    with open_source(path) as source:
        assert source.pixel_um == (None if um is None else pytest.approx(um))


def test_non_square_pixels_are_refused_by_name(tmp_path):
    path = tmp_path / "aniso.ome.tif"
    meta = {"axes": "YX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.2}
    tifffile.imwrite(path, stack(1)[0], ome=True, metadata=meta)
    with pytest.raises(InputError, match=r"non-square pixels \(200.0 × 100.0 nm, y × x\)"):
        open_source(path)
    group = zarr.open_group(str(tmp_path / "aniso.ome.zarr"), mode="w", zarr_format=3)
    group.create_array("0", data=stack(1), chunks=(1, 32, 32))
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    ms = {
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.3, 0.1]}]}],
    }
    group.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    with pytest.raises(InputError, match=r"non-square pixels \(300.0 × 100.0 nm"):
        open_source(tmp_path / "aniso.ome.zarr")
    square = tmp_path / "square.tif"
    tifffile.imwrite(square, stack(1)[0], imagej=True, resolution=(10.0, 10.05), metadata={"unit": "um"})
    assert open_source(square).pixel_um == pytest.approx(0.1)  # within 1 %: square


def test_a_napari_cvdm_ome_tiff_output_is_refused_as_input(tmp_path):
    """An output's six channels would be read as six planes to restore."""
    import json

    path = tmp_path / "out.ome.tif"
    about = json.dumps({"napari_cvdm_version": "0.1", "channels": []})
    tifffile.imwrite(path, stack(6), ome=True, metadata={"axes": "CYX", "Description": about})
    with pytest.raises(InputError, match="is a napari-cvdm output"):
        open_source(path)
    tifffile.imwrite(tmp_path / "raw.ome.tif", stack(6), ome=True, metadata={"axes": "ZYX"})
    assert open_source(tmp_path / "raw.ome.tif").shape == (6, 32, 32)
