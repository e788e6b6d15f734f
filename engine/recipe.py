"""The `distill:` section of a run: what the engine builds around a backend's teacher and generator.

A continuous backend embeds `ContinuousRecipe` (divergence, time samplers, fake score, discriminator,
real side, reward), a discrete one `DiscreteRecipe` (policy-gradient estimator and its options), each
with its own defaults; `engine.distill.build_continuous` and `engine.distill_discrete.build_discrete`
turn a recipe plus the backend's parts into the objective. Plain dataclasses: nothing here imports
torch, so a config typo is reported before anything heavy loads."""
from __future__ import annotations

import dataclasses
from collections.abc import Collection
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
    reward: dict[str, Any] | None = None  # {name, alpha, options}: the backend's reward and its weight alpha
    # how the reward enters (engine.alignment): {name: dipp} (default: -alpha * reward, DI++ / DI*), didr {beta,
    # proxy, steps}, reward_instruct {weight, anchor}, surrogate {fit}, reinforce {std}
    alignment: dict[str, Any] | None = None
    # a classifier head on the fake score's features (engine.adversarial): {weight, fake_weight, hidden}; None = off
    adversarial: dict[str, Any] | None = None


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
    # one-sided label smoothing of the discriminator's real targets (1 - s; Salimans et al. 2016): caps the
    # real logit at log((1 - s) / s), so a discriminator that wins cannot push rewards without bound
    label_smoothing: float = bounded(0.0, lo=0, hi=0.5, hi_open=True)
    replay: int = bounded(0, lo=0)  # fake side drawn from the last `replay` rollouts too (0: the newest only)
    discriminator: dict[str, Any] | None = None  # options of the backend's discriminator
    real: str | None = None  # the discriminator's real side: one of the backend's sources; None = its first
    # {name, alpha, options}: alpha * reward(x) joins each sample's policy-gradient reward (DI++ for tokens)
    reward: dict[str, Any] | None = None


@dataclass(frozen=True)
class Offers:
    """What a backend's parts offer a recipe, declared from its config without torch (`Backend.offers`), so the
    distill: section's networks, option names, real sources and rewards are checked before a teacher loads.
    The engine records the same facts from the parts it is given (`offers_of`), and the conformance suite
    asserts the declaration matches them."""

    fake: tuple[str, ...] | None = None  # option names of the fake-score factory; None: no fake score
    discriminator: tuple[str, ...] | None = None  # option names of the discriminator factory; None: none
    real: tuple[str, ...] = ()  # real sources a config may name (a source may depend on the teacher)
    rewards: tuple[str, ...] | None = None  # rewards a config may name; None: none
    adversarial: bool = False  # the fake score names a feature layer for distill.adversarial's head


def offers_of(parts: Any) -> Offers:
    """The Offers of a backend's built ContinuousParts or DiscreteParts (dataclass fields; the discrete parts
    have no fake score)."""
    from .builders import options_of

    fake, disc, rewards = (getattr(parts, k, None) for k in ("fake", "discriminator", "rewards"))
    return Offers(fake=None if fake is None else tuple(options_of(fake)),
                  discriminator=None if disc is None else tuple(options_of(disc)),
                  real=tuple(parts.real), rewards=None if rewards is None else tuple(rewards.names()),
                  adversarial=getattr(parts, "fake_features", None) is not None)


def check_offers(recipe: ContinuousRecipe | DiscreteRecipe, offers: Offers, where: str) -> None:
    """The checks of a recipe against a backend's offers that need no torch: network option names, the real
    source's name and the reward's name. The rest waits for the divergence's class (check_recipe)."""
    from .builders import check_options

    sections = [("discriminator", "this modality's discriminator", offers.discriminator)]
    if isinstance(recipe, ContinuousRecipe):
        sections.insert(0, ("fake", "this modality's fake score", offers.fake))
    for key, what, names in sections:
        options = getattr(recipe, key)  # a mapping or None: the config schema types it
        if options is not None and names is not None:
            check_options(names, options, f"{where}.{key}", what)
    real_source(recipe.real, offers.real, False, where)
    if getattr(recipe, "adversarial", None) is not None and not offers.adversarial:
        raise ConfigError(f"config key {where}.adversarial: this modality's fake score names no feature layer for a "
                          f"head; remove the section (--set {where}.adversarial=null)")
    reward = getattr(recipe, "reward", None)
    if isinstance(reward, dict) and isinstance(reward.get("name"), str):
        if offers.rewards is None:
            raise ConfigError(f"config key {where}.reward: this modality offers no rewards")
        if reward["name"] not in offers.rewards:
            raise ConfigError(f"config key {where}.reward.name: unknown reward {reward['name']!r}; choose one of: "
                              f"{', '.join(offers.rewards)}")


def real_source(real: str | None, sources: Collection[str], needed: bool, where: str) -> str | None:
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


def check_recipes(cfg: Any, offers: Offers | None = None) -> None:
    """Check every recipe section of a backend config before the backend builds anything: against the
    backend's declared `offers` first (no torch: a typo there is reported at once), then the divergence (or
    estimator) and the time samplers, names and options (the import of torch, not a teacher load). The
    builder checks the rest against the parts themselves, before any network is built."""
    recipes = [(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg)]
    recipes = [(k, v) for k, v in recipes if isinstance(v, (ContinuousRecipe, DiscreteRecipe))]
    if offers is not None:
        for where, value in recipes:
            check_offers(value, offers, where)
    for where, value in recipes:
        if isinstance(value, ContinuousRecipe):
            from .distill import check_recipe

            check_recipe(value, where)
        elif isinstance(value, DiscreteRecipe):
            from .distill_discrete import check_recipe

            check_recipe(value, where)
