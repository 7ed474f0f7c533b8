"""Metrics and the benchmarks a user can rerun (`napari-cvdm bench`): quality against baselines, NFE, speed."""
