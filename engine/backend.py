"""The backend contract: a modality is a `Backend` found by name through the `unidistill.backends`
entry points (or given as `package.module:Attribute`), so the engine imports no modality and a
command imports only the backend its config names.

A backend module should import little at module level (its config dataclasses): the command line
validates a config before anything heavy (torch, diffusers) is imported, so a typo costs no wait."""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from .objective import Objective
    from .recipe import Offers

GROUP = "unidistill.backends"
DISTRIBUTION = "unidistill"


@dataclass
class Drawn:
    """Samples as `unidistill sample` writes them: `values` to --out, `conditions` (the class or prompt index
    of each sample) beside it, `about` printed (what the values are: shape, units, range)."""

    values: np.ndarray
    conditions: np.ndarray | None = None
    about: str = ""


@dataclass
class Sampler:
    """What `unidistill sample` needs from a run: the generator network (its EMA weights are loaded from
    the run's checkpoint), any other trained module the sampler uses (live weights from the checkpoint,
    e.g. a discriminator for reward-guided sampling), `draw(generator, n, seed) -> Drawn` (n samples, the
    same for the same seed), and for pictures `images(values) -> [0, 1] (N, H, W, C)` (`sample --images`)."""

    generator: nn.Module
    draw: Callable[[nn.Module, int, int], Drawn]
    modules: dict[str, nn.Module] = field(default_factory=dict)
    images: Callable[[np.ndarray], np.ndarray] | None = None


class Backend:
    """A modality. Subclasses set `Config` (the dataclass of every config key but `modality` and `train`)
    and implement `build` and `sampler`; a backend that trains its own teachers also sets `TeachConfig`
    and implements `teach`. `smoke_config` returns a config that runs in seconds on tiny networks, which
    the conformance suite (tests/test_conformance.py) runs against every divergence."""

    Config: type
    TeachConfig: type | None = None
    family: str = "continuous"  # "continuous" (DIVERGENCES) or "discrete" (ESTIMATORS)

    def build(self, cfg: Any, run_dir: Path) -> Objective:
        """The distillation objective for this config; bad values raise ConfigError before training."""
        raise NotImplementedError

    def teach(self, cfg: Any, run_dir: Path) -> Objective:
        """The objective that trains a teacher (only when TeachConfig is set)."""
        raise NotImplementedError

    def sampler(self, cfg: Any, run_dir: Path) -> Sampler:
        """The trained run's generator and its decoding, without the teacher pool, fake score or the rest."""
        raise NotImplementedError

    def exported_sampler(self, folder: Path) -> Sampler:
        """The sampler of an exported student folder (its `student.json` names this modality), weights loaded: what
        `unidistill sample FOLDER` draws from when FOLDER is not a run directory (a shipped student)."""
        raise NotImplementedError

    def offers(self, cfg: Any) -> Offers | None:
        """What this config's parts will offer its recipe (fake-score and discriminator option names, real
        sources, rewards), read from the config alone and without torch, so that a typo in those keys is
        reported before the teacher loads; None leaves every such check to the build. The conformance suite
        asserts it matches the parts the backend builds."""
        return None

    def smoke_config(self, workdir: Path) -> dict[str, Any]:
        """A config (without modality and train) on tiny networks written under workdir."""
        raise NotImplementedError


def backend_names() -> list[str]:
    """Modalities installed through the entry points."""
    return sorted({ep.name for ep in metadata.entry_points(group=GROUP)})


def get_backend(name: str) -> Backend:
    """The backend registered as `name`, or `package.module:Attribute` for one outside this package."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"config key modality must be a name; choose one of: {', '.join(backend_names())}")
    if ":" in name:
        module, _, attr = name.partition(":")
        obj = _load(name, lambda: getattr(importlib.import_module(module), attr), extra=None)
    else:
        found = [ep for ep in metadata.entry_points(group=GROUP) if ep.name == name]
        if not found:
            raise ConfigError(f"config key modality: unknown modality {name!r}; choose one of: "
                              f"{', '.join(backend_names())} (or package.module:Backend)")
        _check_extra(name)
        obj = _load(name, found[0].load, extra=name if name in _extras() else None)
    try:
        backend = obj() if isinstance(obj, type) else obj
    except TypeError as e:
        raise ConfigError(f"config key modality: {name!r} cannot be created without arguments: {e}") from None
    if not isinstance(backend, Backend):
        raise ConfigError(f"config key modality: {name!r} is not a unidistill Backend "
                          "(subclass unidistill.engine.backend.Backend)")
    return backend


def _load(name: str, load: Callable[[], Any], extra: str | None):
    try:
        return load()
    except ModuleNotFoundError as e:
        if extra is not None:
            raise ConfigError(f"modality {name!r} needs the {extra} extra: pip install 'unidistill[{extra}]' "
                              f"(missing: {e.name})") from None
        raise ConfigError(f"modality {name!r} cannot be imported: missing package {e.name}") from None
    except AttributeError as e:
        raise ConfigError(f"config key modality: {name!r}: {e}") from None


def _extras() -> list[str]:
    try:
        return metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:
        return []


def _check_extra(name: str) -> None:
    """A modality named like an extra needs that extra's packages installed (checked without importing them)."""
    if name not in _extras():
        return
    missing = []
    for req in metadata.requires(DISTRIBUTION) or []:
        spec, _, marker = req.partition(";")
        if re.search(rf"extra\s*==\s*['\"]{re.escape(name)}['\"]", marker):
            package = re.split(r"[<>=!~\[ ]", spec.strip(), maxsplit=1)[0]
            try:
                metadata.version(package)
            except metadata.PackageNotFoundError:
                missing.append(package)
    if missing:
        raise ConfigError(f"modality {name!r} needs the {name} extra: pip install 'unidistill[{name}]' "
                          f"(missing: {', '.join(missing)})")
