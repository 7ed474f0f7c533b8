"""Big data in and out: lazy plane readers, the OME-Zarr / OME-TIFF output stores and the plane-by-plane job.

``readers``: TIFF / OME-TIFF (tifffile's zarr store), zarr / OME-Zarr, dask and NumPy arrays → one plane at a time.
``omezarr``: the resumable OME-Zarr v3 output (per-plane completion marks, run fingerprint) and its lazy view.
``ometiff``: the OME-TIFF output, streamed from a finished plane store.
``stack``: the job (check, then a generator of progress that writes plane by plane).
``cluster``: the same job's planes as tasks on a dask.distributed cluster (optional extra ``[cluster]``).
"""
