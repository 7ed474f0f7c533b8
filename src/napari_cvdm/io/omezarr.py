"""The OME-Zarr output store: zarr v3 with OME-NGFF 0.5 metadata, filled plane by plane, with completion marks.

Layout of ``out.zarr``:

* ``0``: float32, axes (t, c, z, y, x) as NGFF orders them (only the stack axes the input has), one chunk per
  plane and channel, tiled 1024 × 1024 for large planes; never-written pixels read as NaN;
* ``napari_cvdm_done``: uint64, one chunk per plane: 0 until the plane's data are written, then a checksum of
  them (CRC-32 of the float32 bytes, with bit 32 set).  A mark is written only after its plane's data, so a
  plane cut short by a crash has no mark and a plane whose data do not match its mark is redone;
* attributes ``ome`` (axes with units, the pixel size as the scale, channel names as omero labels) and
  ``napari_cvdm``: channel units, the model, the settings, and the run's *fingerprint* (model digest and every
  setting that changes the numbers).  A run whose fingerprint differs is refused (:class:`OutputMismatch`).

Each plane's data and mark live in their own chunks, so several processes (dask workers) fill one store safely.
"""

from __future__ import annotations

import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..tasks import InputError

DATA, MARKS = "0", "napari_cvdm_done"
FORMAT = 1
TILE = 1024  # chunk side for the y and x axes: a huge plane is written and read tile by tile
DONE_BIT = np.uint64(1 << 32)


class OutputMismatch(InputError):
    """An existing output was written by another model or with other settings (or is not ours)."""


def ngff_axes(lead_axes: str) -> list[str]:
    """The array's axes in NGFF order (time, channel, space) for stack axes ``lead_axes`` (e.g. "TZ", "Z")."""
    lead = lead_axes.lower()
    return [*(["t"] if "t" in lead else []), "c", *(["z"] if "z" in lead else []), "y", "x"]


def lead_axes_for(axes: str, n_lead: int) -> str:
    """Names (T or Z) for the ``n_lead`` stack axes, from the input's axes string where it says T or Z."""
    given = [a for a in axes.upper()[:n_lead] if a in "TZ"] if len(axes) >= n_lead else []
    if n_lead == 0:
        return ""
    if len(given) == n_lead and len(set(given)) == n_lead:
        return "".join(given)
    return "Z" if n_lead == 1 else "TZ"


@dataclass
class PlaneStore:
    """An open output store; :meth:`create` makes one, :meth:`open` opens an existing one."""

    path: Path
    group: Any

    # -- opening -------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, mode: str = "r+") -> PlaneStore:
        import zarr

        path = Path(path)
        try:
            group = zarr.open_group(str(path), mode=mode)
        except Exception as err:
            raise OutputMismatch(
                f"{path} exists but is not a zarr store ({err}); choose another output or delete it"
            ) from err
        if "napari_cvdm" not in group.attrs or DATA not in group or MARKS not in group:
            raise OutputMismatch(f"{path} exists and is not a napari-cvdm output; choose another output")
        return cls(path, group)

    @classmethod
    def existing(cls, path: str | Path, fingerprint: dict[str, Any], overwrite: bool = False) -> PlaneStore | None:
        """The store at ``path`` if it was written by the same run (same fingerprint); None if there is none (or
        ``overwrite`` removed it).  A different run's store is refused with what differs and the fix."""
        path = Path(path)
        if not path.exists():
            return None
        if overwrite:
            remove(path)
            return None
        store = cls.open(path)
        changes = fingerprint_changes(store.fingerprint, fingerprint)
        if changes:
            raise OutputMismatch(
                f"{path} holds results of another run ({'; '.join(changes)}); results of two runs are never mixed "
                "in one output: choose a new output, or add --overwrite to replace it"
            )
        return store

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        lead: tuple[int, ...],
        lead_axes: str,
        plane_hw: tuple[int, int],
        channels: list[tuple[str, str]],
        pixel_um: float | None,
        fingerprint: dict[str, Any],
        meta: dict[str, Any],
    ) -> PlaneStore:
        """A new, empty store (every plane unmarked) for ``channels`` [(name, unit), …] of planes ``plane_hw``.

        It is made aside (``*.creating``) and renamed into place, so a crash while it is made leaves no half-made
        store that a rerun would refuse."""
        import zarr

        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        path = final.with_name(final.name + ".creating")
        remove(path)
        axes = ngff_axes(lead_axes)
        sizes = dict(zip(lead_axes.lower(), lead, strict=True))
        sizes.update(c=len(channels), y=plane_hw[0], x=plane_hw[1])
        shape = tuple(sizes[a] for a in axes)
        chunks = tuple({"y": min(plane_hw[0], TILE), "x": min(plane_hw[1], TILE)}.get(a, 1) for a in axes)
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        group.create_array(
            DATA, shape=shape, chunks=chunks, dtype="float32", fill_value=float("nan"), dimension_names=axes
        )
        n_planes = int(np.prod(lead)) if lead else 1
        group.create_array(MARKS, shape=(n_planes,), chunks=(1,), dtype="uint64", fill_value=0)
        unit = "micrometer" if pixel_um else None
        types = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
        scale = [float(pixel_um) if (pixel_um and a in "yx") else 1.0 for a in axes]
        group.attrs.update(
            {
                "ome": {
                    "version": "0.5",
                    "multiscales": [
                        {
                            "name": meta.get("name", final.stem),
                            "axes": [
                                {"name": a, "type": types[a], **({"unit": unit} if unit and a in "yx" else {})}
                                for a in axes
                            ],
                            "datasets": [
                                {"path": DATA, "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                            ],
                        }
                    ],
                    "omero": {"channels": [{"label": name, "active": True} for name, _ in channels]},
                },
                "napari_cvdm": {
                    "format": FORMAT,
                    "channels": [{"name": name, "unit": u} for name, u in channels],
                    "lead_axes": lead_axes,
                    "pixel_um": pixel_um,
                    "fingerprint": fingerprint,
                    **meta,
                },
            }
        )
        os.replace(path, final)
        return cls.open(final)

    # -- facts ---------------------------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        return dict(self.group.attrs["napari_cvdm"])

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.info["fingerprint"]

    @property
    def channels(self) -> list[tuple[str, str]]:
        return [(c["name"], c["unit"]) for c in self.info["channels"]]

    @property
    def axes(self) -> list[str]:
        return ngff_axes(self.info["lead_axes"])

    @property
    def n_planes(self) -> int:
        return int(self.group[MARKS].shape[0])

    @property
    def lead(self) -> tuple[int, ...]:
        data = self.group[DATA]
        return tuple(int(data.shape[self.axes.index(a.lower())]) for a in self.info["lead_axes"])

    def _index(self, k: int) -> tuple[Any, ...]:
        lead_axes = self.info["lead_axes"].lower()
        where = dict(zip(lead_axes, (int(i) for i in np.unravel_index(k, self.lead)), strict=True)) if lead_axes else {}
        return tuple(where.get(a, slice(None)) for a in self.axes)

    # -- planes --------------------------------------------------------------------------------------------------
    def write_rows(self, k: int, first: int, arrays: list[np.ndarray]) -> None:
        """Write rows ``first`` … of plane ``k``'s channels (one (rows, X) array per channel); the plane stays
        unmarked (unfinished) until :meth:`mark`."""
        band = np.stack([np.asarray(a, np.float32) for a in arrays])  # (C, rows, X)
        if band.shape[0] != len(self.channels):
            raise ValueError(f"plane {k} has {band.shape[0]} channels, the store {len(self.channels)}")
        index = list(self._index(k))
        y = self.axes.index("y")
        index[y] = slice(first, first + band.shape[1])
        self.group[DATA][tuple(index)] = band

    def mark(self, k: int) -> None:
        """Mark plane ``k`` finished, with the checksum of what the store now holds for it."""
        self.group[MARKS][k] = self.plane_checksum(k)

    def plane_checksum(self, k: int) -> np.uint64:
        """CRC-32 of plane ``k``'s (C, Y, X) float32 bytes, with bit 32 set; read a channel and ``TILE`` rows at a
        time (the same bytes in the same order, so a huge plane is never read whole)."""
        data, index = self.group[DATA], list(self._index(k))
        c, y = self.axes.index("c"), self.axes.index("y")
        crc = 0
        for channel in range(len(self.channels)):
            for first in range(0, int(data.shape[y]), TILE):
                index[c], index[y] = channel, slice(first, first + TILE)
                rows = np.ascontiguousarray(data[tuple(index)], np.float32)
                crc = zlib.crc32(rows.tobytes(), crc)
        return np.uint64(crc) | DONE_BIT

    def read_plane(self, k: int) -> np.ndarray:
        """Plane ``k`` as (C, Y, X) float32."""
        return np.asarray(self.group[DATA][self._index(k)], np.float32)

    def marks(self) -> np.ndarray:
        """Every plane's mark (0: not finished); a mark that cannot be read counts as 0."""
        marks = self.group[MARKS]
        try:
            return np.asarray(marks[:], np.uint64)
        except Exception:  # noqa: BLE001  a chunk cut short by a crash: read the marks one by one
            out = np.zeros(self.n_planes, np.uint64)
            for k in range(self.n_planes):
                try:
                    out[k] = marks[k]
                except Exception:  # noqa: BLE001
                    out[k] = 0
            return out

    def done(self, verify: bool = True) -> list[int]:
        """The planes that are finished: marked and (``verify``) whose data match their mark."""
        finished = []
        for k, mark in enumerate(self.marks()):
            if not mark & DONE_BIT:
                continue
            if verify:
                try:
                    if self.plane_checksum(k) != mark:
                        continue
                except Exception:  # noqa: BLE001  a chunk cut short by a crash cannot be decoded: redo the plane
                    continue
            finished.append(k)
        return finished

    def pending(self, verify: bool = True) -> list[int]:
        done = set(self.done(verify))
        return [k for k in range(self.n_planes) if k not in done]


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """What differs between two fingerprints, in words (``steps 2 → 3``)."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += fingerprint_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key} {a} → {b}")
    return changes


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


@dataclass
class LazyChannel:
    """One output channel as a lazy dask array (stack axes as the store has them, then y, x)."""

    name: str
    unit: str
    data: Any
    scale: tuple[float, ...]
    axes: str


def open_lazy(path: str | Path) -> list[LazyChannel]:
    """The channels of an output store as lazy dask arrays, for napari layers: nothing is read until shown, and
    planes not written yet read as NaN, so a layer fills in as the job writes (refresh it to see new planes)."""
    import dask.array as da

    store = PlaneStore.open(path, mode="r")
    data = da.from_zarr(store.group[DATA])
    axes = store.axes
    c = axes.index("c")
    lead = [a for a in axes if a not in "cyx"]
    pixel = store.info.get("pixel_um") or 1.0
    scale = (*([1.0] * len(lead)), float(pixel), float(pixel))
    return [
        LazyChannel(name, unit, data[(slice(None),) * c + (i,)], scale, "".join(lead).upper() + "YX")
        for i, (name, unit) in enumerate(store.channels)
    ]
