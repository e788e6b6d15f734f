"""The `distill:` section of a run: what the engine builds around a backend's teacher and generator.

A continuous backend embeds `ContinuousRecipe` (divergence, time samplers, fake score, discriminator,
real side, reward), a discrete one `DiscreteRecipe` (policy-gradient estimator and its options), each
with its own defaults; `engine.distill.build_continuous` and `engine.distill_discrete.build_discrete`
turn a recipe plus the backend's parts into the objective. Plain dataclasses: nothing here imports
torch, so a config typo is reported before anything heavy loads."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from .config import ConfigError, bounded


@dataclass
class ContinuousRecipe:
    divergence: dict[str, Any] = field(default_factory=lambda: {"name": "sim"})  # name + options (DIVERGENCES)
    time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "lognormal"})  # generator-loss times
    aux_time_sampler: dict[str, Any] | None = None  # fake score / discriminator times; None = time_sampler
    fake: dict[str, Any] | None = None  # options of the backend's fake score (built when the divergence needs one)
    discriminator: dict[str, Any] | None = None  # options of the backend's discriminator (built when needed)
    real: str | None = None  # the discriminator's real side: one of the backend's sources; None = its first
    reward: dict[str, Any] | None = None  # {name, alpha, options}: add -alpha * reward(x0) (DI++, DI*, guidance)


@dataclass
class DiscreteRecipe:
    divergence: dict[str, Any] = field(default_factory=lambda: {"name": "didi"})  # name + options (ESTIMATORS)
    time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "uniform"})  # corruption times
    coupled_time: bool = False  # corrupt at the rollout's first intermediate time instead of time_sampler
    time_weight: Literal["none", "inverse_t"] = "none"  # omega(t) on the reward: 1, or 1/t clamped to [0.1, 10]
    corruptions: int = bounded(1, lo=1)  # corrupted copies of each sample averaged in its reward
    ism_weight: float = bounded(0.0, lo=0)  # intermediate-state matching KL(teacher || student) at rollout states
    entropy_weight: float = bounded(0.0, lo=0)  # entropy bonus on the student's predictions at the rollout states
    reuse_rollouts: bool = False  # the discriminator's fake side is the previous generator step's rollout
    discriminator: dict[str, Any] | None = None  # options of the backend's discriminator
    real: str | None = None  # the discriminator's real side: one of the backend's sources; None = its first


def real_source(real: str | None, sources: dict, needed: bool, where: str) -> str | None:
    """The name of the real-sample source a recipe uses: `real` if the backend offers it (a name it does not
    offer is refused, used or not), else the backend's first source; None when nothing needs one."""
    if real is not None and real not in sources:
        raise ConfigError(f"config key {where}.real = {real!r} is not a source of real samples here; "
                          f"choose one of: {', '.join(sources) or 'none (this modality has no real samples)'}")
    name = real if real is not None else next(iter(sources), None)
    if needed and name is None:
        raise ConfigError(f"config key {where}.real: the discriminator needs real samples and this modality "
                          "offers none")
    return name if needed else None


def check_recipes(cfg: Any) -> None:
    """Check the divergence (or estimator) and the time samplers of every recipe section of a backend config,
    names and options, before the backend builds anything: such a typo costs the import of torch, not a
    teacher load. The rest of the section (fake, discriminator, real, reward) is checked by the builder,
    against what the backend offers, before any network is built."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, ContinuousRecipe):
            from .distill import check_recipe

            check_recipe(value, f.name)
        elif isinstance(value, DiscreteRecipe):
            from .distill_discrete import check_recipe

            check_recipe(value, f.name)
