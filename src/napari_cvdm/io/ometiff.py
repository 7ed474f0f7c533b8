"""The OME-TIFF output, written incrementally from a finished plane store.

A job whose output is ``out.ome.tif`` fills the plane store ``out.ome.tif.parts.zarr`` next to it (so it resumes
exactly as an OME-Zarr output does) and, once every plane is marked, streams it page by page into the OME-TIFF
(one page in memory at a time; a page larger than the store's tile is written as a tiled TIFF, one tile in
memory at a time; BigTIFF above 2 GiB), then removes the parts.  Channel names are the OME channel
names, the pixel size the OME physical size; the run's model, settings and fingerprint are the image's
Description (JSON), so a rerun of the same command knows the file is complete and a different run is refused.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import omezarr
from .omezarr import PlaneStore, remove

SUFFIXES = (".ome.tif", ".ome.tiff")


def is_ome_tiff(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def work_store(path: Path) -> Path:
    """The plane store an OME-TIFF output is filled through."""
    return path.with_name(path.name + ".parts.zarr")


def read_info(path: Path) -> dict[str, Any] | None:
    """The ``napari_cvdm`` record (fingerprint, channels, model, settings) of an OME-TIFF we wrote, else None."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.is_ome or not tif.ome_metadata:
                return None
            image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            image = image[0] if isinstance(image, list) else image
            return json.loads(image.get("Description", "null"))
    except (OSError, ValueError, KeyError, TypeError, tifffile.TiffFileError):
        return None


def write_ome_tiff(store: PlaneStore, path: Path) -> Path:
    """Stream the finished ``store`` into the OME-TIFF ``path`` (written aside, then renamed into place) and
    remove the store."""
    import tifffile

    data = store.group["0"]
    axes = "".join(store.axes).upper()  # e.g. TCZYX, CZYX, CYX: an order OME-TIFF has
    shape = tuple(int(s) for s in data.shape)
    info = store.info
    pixel = info.get("pixel_um")
    metadata: dict[str, Any] = {
        "axes": axes,
        "Name": path.name.split(".")[0],
        "Channel": {"Name": [name for name, _ in store.channels]},
        "Description": json.dumps(info, default=str),
    }
    if pixel:
        metadata.update(PhysicalSizeX=pixel, PhysicalSizeY=pixel, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")

    height, width = shape[-2:]
    side = omezarr.TILE
    tiled = max(height, width) > side

    def pages() -> Iterator[np.ndarray]:
        for index in itertools.product(*(range(s) for s in shape[:-2])):
            if not tiled:
                yield np.asarray(data[index], np.float32)
                continue
            for row, col in itertools.product(range(0, height, side), range(0, width, side)):
                yield np.asarray(data[(*index, slice(row, row + side), slice(col, col + side))], np.float32)

    tmp = path.with_name(path.name + ".writing")
    path.parent.mkdir(parents=True, exist_ok=True)
    big = int(np.prod(shape)) * 4 > 2**31 - 2**25
    tifffile.imwrite(
        tmp, pages(), shape=shape, dtype=np.float32, ome=True, bigtiff=big, photometric="minisblack", metadata=metadata,
        tile=(side, side) if tiled else None,
    )  # fmt: skip
    os.replace(tmp, path)
    remove(store.path)
    return path
