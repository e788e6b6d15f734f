"""Which command an example config is for: `teach` when its keys belong to the backend's TeachConfig and not to its
distillation Config (read from the dataclasses, without building anything), else `distill`."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from unidistill.engine.backend import get_backend

COMMON = {"modality", "train"}


def command_of(path: Path) -> str:
    data = yaml.safe_load(Path(path).read_text()) or {}
    backend = get_backend(data["modality"])
    keys = set(data) - COMMON
    distill = {f.name for f in dataclasses.fields(backend.Config)}
    if backend.TeachConfig is None or keys <= distill:
        return "distill"
    teach = {f.name for f in dataclasses.fields(backend.TeachConfig)}
    return "teach" if keys <= teach else "distill"
