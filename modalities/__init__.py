"""Modality backends, one folder each, found by the engine through the `unidistill.backends` entry points
(pyproject.toml); `shared/` holds what several backends use. No backend imports another."""
