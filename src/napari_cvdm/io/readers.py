"""Lazy inputs: a TIFF, OME-TIFF, zarr / OME-Zarr store, dask or NumPy array → one plane at a time.

:func:`open_source` never reads pixel data; :meth:`PlaneSource.plane` reads exactly one plane (a TIFF page
through tifffile's zarr store, the chunks of one plane of a zarr array, the blocks of a dask array), so a stack
of any length is processed with the memory of one plane.  A plane is what the model takes: (H, W) for
super-resolution, (2, H, W) = (I(−d), I(+d)) for phase; every axis before it is a stack axis (T, Z).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..tasks import InputError

MAX_STACK_AXES = 2  # T and/or Z before the plane, as the output's axes (t, z, c, y, x) allow
TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr", ".ome.zarr")


@dataclass
class PlaneSource:
    """A lazily read image or stack.  ``array`` is anything with ``shape``, ``dtype`` and NumPy indexing (a
    zarr array, a dask array, a NumPy array); ``squeeze`` names axes of size 1 dropped from its shape (e.g. an
    OME-Zarr's single channel), so ``shape`` is the image as the model sees it."""

    array: Any
    name: str
    plane_ndim: int
    axes: str = ""
    pixel_um: float | None = None
    squeeze: tuple[int, ...] = ()
    _closers: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        shape = self.shape
        if len(shape) < self.plane_ndim or 0 in shape:
            want = "(2, H, W)" if self.plane_ndim == 3 else "(H, W)"
            raise InputError(f"{self.name} has shape {shape}; expected planes {want}")
        if len(shape) > self.plane_ndim + MAX_STACK_AXES:
            raise InputError(
                f"{self.name} has shape {shape}: more than {MAX_STACK_AXES} stack axes (T, Z) before the plane; "
                "split it into smaller stacks"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for i, s in enumerate(self.array.shape) if i not in self.squeeze)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def lead(self) -> tuple[int, ...]:
        """The stack axes' sizes (empty for a single plane)."""
        return self.shape[: len(self.shape) - self.plane_ndim]

    @property
    def plane_shape(self) -> tuple[int, ...]:
        return self.shape[len(self.shape) - self.plane_ndim :]

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.lead)) if self.lead else 1

    def plane(self, k: int) -> np.ndarray:
        """Plane ``k`` (flat index over the stack axes, C order) as a NumPy array; reads only that plane."""
        if not 0 <= k < self.n_planes:
            raise IndexError(f"plane {k} of {self.n_planes}")
        lead = [int(i) for i in np.unravel_index(k, self.lead)] if self.lead else []
        kept = iter([*lead, *[slice(None)] * self.plane_ndim])
        index = tuple(0 if i in self.squeeze else next(kept) for i in range(self.array.ndim))
        plane = self.array[index]
        if hasattr(plane, "compute"):  # dask
            plane = plane.compute()
        return np.asarray(plane)

    def read_all(self) -> np.ndarray:
        """Every pixel as one NumPy array of :attr:`shape` (the ``squeeze`` axes dropped): for inputs held in memory."""
        image = np.asarray(self.array[...])
        return np.asarray(image.squeeze(self.squeeze) if self.squeeze else image)

    def planes(self) -> Iterator[tuple[int, np.ndarray]]:
        for k in range(self.n_planes):
            yield k, self.plane(k)

    def close(self) -> None:
        for closer in self._closers:
            closer.close()
        self._closers.clear()

    def __enter__(self) -> PlaneSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_zarr_path(path: Path) -> bool:
    return path.name.lower().endswith(ZARR_SUFFIXES) or (
        path.is_dir() and any((path / f).exists() for f in ("zarr.json", ".zgroup", ".zarray"))
    )


def is_image_path(path: Path) -> bool:
    """True for what :func:`open_source` reads: TIFF / OME-TIFF files and zarr / OME-Zarr stores."""
    return path.name.lower().endswith(TIFF_SUFFIXES) or is_zarr_path(path)


def open_source(obj: Any, plane_ndim: int = 2, name: str | None = None) -> PlaneSource:
    """Open ``obj`` lazily: a path (TIFF / OME-TIFF, zarr / OME-Zarr), a zarr array, a dask or NumPy array.

    ``plane_ndim`` is 2 for super-resolution, 3 for phase.  Nothing but metadata is read here; a file that is not
    an image raises :class:`~napari_cvdm.tasks.InputError` naming it and what is accepted.
    """
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        if not path.exists():
            raise InputError(f"{path} does not exist; give a TIFF file, a zarr store or a folder of them")
        if is_zarr_path(path):
            return _open_zarr(path, plane_ndim)
        return _open_tiff(path, plane_ndim)
    if not hasattr(obj, "shape") or not hasattr(obj, "__getitem__"):
        obj = np.asarray(obj)
    return PlaneSource(obj, name or f"array {tuple(obj.shape)}", plane_ndim)


def _open_tiff(path: Path, plane_ndim: int) -> PlaneSource:
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(path)
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        raise InputError(f"could not read {path} as a TIFF image ({err}); give a .tif/.tiff file") from err
    try:
        series = tif.series[0]
        if tif.is_ome:
            from .ometiff import read_info

            info = read_info(path)
            if isinstance(info, dict) and "napari_cvdm_version" in info:
                raise InputError(
                    f"{path} is a napari-cvdm output (its mean, error bars …); give the raw images as input"
                )
        samples = series.shape[series.axes.index("S")] if "S" in series.axes else 1
        if samples > 1:  # samples per pixel: an RGB(A) colour image, interleaved (YXS) or planar (SYX)
            raise InputError(
                f"{path} is a colour TIFF ({samples} samples per pixel, shape {series.shape}, axes "
                f"{series.axes}); napari-cvdm needs grayscale intensities: save the channel you recorded on its own "
                "(Fiji: Image ▸ Color ▸ Split Channels), unconverted"
            )
        store = series.aszarr()
        node = zarr.open(store, mode="r")
        array = node if isinstance(node, zarr.Array) else node["0"]  # pyramidal: the full-resolution level
        return PlaneSource(
            array, str(path), plane_ndim, axes=series.axes, pixel_um=tiff_pixel_um(tif, path), _closers=[tif]
        )
    except InputError:
        tif.close()
        raise
    except (OSError, ValueError, KeyError, IndexError, tifffile.TiffFileError) as err:
        tif.close()
        raise InputError(f"could not read {path} as a TIFF image ({err}); give a .tif/.tiff file") from err


# A length unit as OME (PhysicalSizeXUnit), OME-NGFF (axes' unit) or ImageJ (unit) spells it → µm.
LENGTH_UNITS_UM = {
    "pm": 1e-6, "picometer": 1e-6, "å": 1e-4, "angstrom": 1e-4, "nm": 1e-3, "nanometer": 1e-3,
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "\\u00b5m": 1.0,
    "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6,
}  # fmt: skip


def length_um(value: Any, unit: str | None) -> float | None:
    """``value`` in ``unit`` as µm, None where the unit is not a length (ImageJ's "pixel", "inch" DPI …) or the
    value is not a positive number."""
    factor = LENGTH_UNITS_UM.get(str(unit).strip().lower()) if unit is not None else None
    try:
        size = float(value)
    except (TypeError, ValueError):
        return None
    return size * factor if factor and size > 0 else None


def tiff_pixel_um(tif: Any, path: Path) -> float | None:
    """The pixel size in µm an OME-TIFF, ImageJ TIFF or plain TIFF (resolution per cm) states, else None;
    non-square pixels are refused."""
    x_um = y_um = None
    try:
        if tif.is_ome and tif.ome_metadata:
            import tifffile

            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
            x_um = length_um(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", "µm"))
            y_um = length_um(pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeYUnit", "µm"))
        elif tif.is_imagej:
            page, unit = tif.pages.first, (tif.imagej_metadata or {}).get("unit")
            per_um = [page.tags.get(tag) for tag in ("XResolution", "YResolution")]
            x_um, y_um = (length_um(r.value[1] / r.value[0], unit) if r and r.value[0] else None for r in per_um)
        else:  # a plain TIFF: resolution tags in pixels per centimetre (an inch is a print DPI, not a pixel size)
            page = tif.pages.first
            unit_tag = page.tags.get("ResolutionUnit")
            if unit_tag is not None and int(unit_tag.value) == 3:
                per_cm = [page.tags.get(tag) for tag in ("XResolution", "YResolution")]
                x_um, y_um = (length_um(r.value[1] / r.value[0], "cm") if r and r.value[0] else None for r in per_cm)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None
    return _square(path, y_um, x_um)


def _square(path: Path, y_um: float | None, x_um: float | None) -> float | None:
    """The pixel size ``x_um`` a file states; non-square pixels (y and x more than 1 % apart) are refused."""
    if x_um and y_um and not math.isclose(x_um, y_um, rel_tol=0.01):
        raise InputError(
            f"{path} has non-square pixels ({y_um * 1000:.1f} × {x_um * 1000:.1f} nm, y × x); the models need square "
            "pixels: resample it to square pixels first"
        )
    return x_um


def _open_zarr(path: Path, plane_ndim: int) -> PlaneSource:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except (OSError, ValueError, KeyError, FileNotFoundError) as err:
        raise InputError(f"could not open {path} as a zarr store ({err}); give a zarr or OME-Zarr folder") from err
    except Exception as err:
        raise InputError(f"could not open {path} as a zarr store ({err}); give a zarr or OME-Zarr folder") from err
    if isinstance(node, zarr.Array):
        return PlaneSource(node, str(path), plane_ndim)
    attrs = dict(node.attrs)
    multiscales = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
    if not multiscales:
        arrays = [name for name, _ in node.arrays()]
        if len(arrays) != 1:
            raise InputError(
                f"{path} is a zarr group without OME-NGFF multiscales and with {len(arrays)} arrays; give an "
                "OME-Zarr image or the path of one array inside it"
            )
        return PlaneSource(node[arrays[0]], str(path), plane_ndim)
    ms = multiscales[0]
    dataset = ms["datasets"][0]
    array = node[dataset["path"]]
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in ms.get("axes", [])]
    # a channel axis of size 1 is no stack axis (OME-Zarr always has one; an SR plane has one channel)
    squeeze = tuple(i for i, a in enumerate(axes) if a == "c" and array.shape[i] == 1)
    pixel_um = None
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale" and axes:
            unit = next((a.get("unit") for a in ms["axes"] if isinstance(a, dict) and a.get("name") == "x"), None)
            y_um = length_um(transform["scale"][-2], unit or "micrometer") if len(transform["scale"]) > 1 else None
            pixel_um = _square(path, y_um, length_um(transform["scale"][-1], unit or "micrometer"))
    kept_axes = "".join(a for i, a in enumerate(axes) if i not in squeeze)
    if "napari_cvdm" in attrs:
        raise InputError(f"{path} is a napari-cvdm output; give the raw images as input")
    return PlaneSource(array, str(path), plane_ndim, axes=kept_axes.upper(), pixel_um=pixel_um, squeeze=squeeze)
