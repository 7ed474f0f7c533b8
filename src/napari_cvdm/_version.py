"""The package version (one place: pyproject.toml reads it, model files and checkpoints record it)."""

__version__ = "0.1.0"
