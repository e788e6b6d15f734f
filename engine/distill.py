"""The continuous objective: a differentiable generator x0 = G(z, c) distilled from a teacher
denoiser under a Gaussian process, with a fake score and a density-ratio discriminator when the
divergence needs them, and an optional reward alignment (engine.alignment).

A backend supplies `ContinuousParts` (teacher, generator, latents, factories for the networks it can
build, sources of real samples, rewards); `build_continuous` reads the run's `distill:` section
(engine.recipe.ContinuousRecipe) and builds exactly what the divergence needs, or fails in one line."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .adversarial import Adversarial, FakeWithHead, FeatureLayer
from .alignment import ALIGNMENTS, DIDR, Alignment
from .builders import build_named, check_options, coerce_options
from .config import ConfigError, OptionError
from .divergences import DIVERGENCES, ESTIMATORS, Critics, Divergence, per_element, per_example
from .noise import Noise
from .objective import Objective, Outputs, Progress
from .process import TIME_SAMPLERS, GaussianProcess
from .recipe import ContinuousRecipe, Offers, offers_of, real_source
from .registry import Registry

Latents = Callable[[Noise, int, Progress], tuple[Tensor, Any]]  # (noise, n, progress) -> (z, cond)
Real = Callable[[Noise, int], tuple[Tensor, Any]]  # (noise, n) -> (x, cond): the discriminator's real side
Condition = Callable[[Tensor, Any], Any]  # (x0 without graph, cond from the latents) -> cond the critics see
# (x0 with graph, z, cond, generator) -> ((B,) extra generator loss, scalars to log): a backend's regularisers
Regulariser = Callable[[Tensor, Tensor, Any, nn.Module], tuple[Tensor, dict[str, Tensor]]]


def edm_weight(sigma_data: float = 0.5) -> Callable[[Tensor, GaussianProcess], Tensor]:
    """EDM's loss weight (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 on sigma = sigma(t)/alpha(t)."""

    def w(t, process):
        s = process.sigma(t) / process.alpha(t)
        return (s**2 + sigma_data**2) / (s * sigma_data) ** 2

    return w


class ContinuousDistillation(Objective):
    """Auxiliary losses (fake score by denoising score matching on detached generator samples;
    discriminator by BCE with teacher samples or data as real) and the generator loss from a
    Divergence, with a reward `alignment` that may replace the teacher the critics see (DIDR), add a generator
    loss (DI++, Reward-Instruct) and train or hold networks of its own (a surrogate reward, an anchor).

    `time_shape` () draws one time per example; (L,) one per element of x0 (B, L, ...). `condition`
    maps a sample (without graph) and its latent condition to the condition the teacher, fake score,
    discriminator and regulariser see (by default the latent condition itself); a reward alignment reads the
    latent condition, which the generator (and an anchor copy of it) was called with."""

    def __init__(self, *, process: GaussianProcess, teacher: Callable, generator: nn.Module,
                 latents: Latents, divergence: Divergence, time_sampler: Callable,
                 fake: nn.Module | None = None, aux_time_sampler: Callable | None = None,
                 fake_weight: Callable | None = None, discriminator: nn.Module | None = None,
                 real: Real | None = None, alignment: Alignment | None = None, condition: Condition | None = None,
                 time_shape: tuple[int, ...] = (), regulariser: Regulariser | None = None,
                 adversarial: Adversarial | None = None, outputs: Outputs | None = None,
                 offers: Offers | None = None):
        super().__init__(outputs)
        self.offers = offers  # what the backend's parts offered (the conformance suite checks its declaration)
        name = type(divergence).__name__
        if "fake" in divergence.needs and fake is None:
            raise ValueError(f"divergence {name} needs a fake score; give it a fake score network")
        if "ratio" in divergence.needs and discriminator is None:
            raise ValueError(f"divergence {name} needs a density-ratio estimator; give it a discriminator")
        if (discriminator is not None or adversarial is not None) and real is None:
            raise ValueError("a discriminator needs a source of real samples (teacher samples or data)")
        if adversarial is not None and not isinstance(fake, FakeWithHead):
            raise ValueError("an adversarial term needs a fake score with a classifier head (FakeWithHead)")
        self.process, self.teacher, self.divergence = process, teacher, divergence
        self.latents, self.time_sampler = latents, time_sampler
        self.aux_time_sampler = aux_time_sampler or time_sampler
        self.fake_weight = fake_weight or edm_weight()
        self.fake, self.disc, self.real, self.alignment = fake, discriminator, real, alignment
        self.condition, self.time_shape, self.regulariser = condition, tuple(time_shape), regulariser
        self.adversarial = adversarial
        if isinstance(teacher, nn.Module):
            teacher.requires_grad_(False).eval()
            self.teachers["teacher"] = teacher
        self.modules: dict[str, nn.Module] = {"generator": generator}
        # a critic with no trainable parameters is exact (a closed-form fake score or density ratio, as the 3D
        # backend's mixture over the particles' renders): it is queried, never trained or checkpointed
        self.exact = {k: m for k, m in (("fake", fake), ("discriminator", discriminator))
                      if m is not None and not any(p.requires_grad for p in m.parameters())}
        for key, net in (("fake", fake), ("discriminator", discriminator)):
            if net is not None and key not in self.exact:
                self.modules[key] = net
        if alignment is not None:
            self.modules.update(alignment.modules)
            self.frozen.update(alignment.frozen)

    def start(self):
        if self.alignment is not None:
            self.alignment.start(self.modules["generator"])

    def to(self, device):
        for net in (self.teacher, *self.exact.values()):
            if isinstance(net, nn.Module):
                net.to(device)
        return self

    def _times(self, sampler, noise: Noise, n: int, progress: Progress) -> Tensor:
        k = math.prod(self.time_shape)
        return noise.draw(lambda m, g: sampler(m * k, self.process, generator=g, progress=progress.fraction)
                          .reshape(m, *self.time_shape), n)

    def _noisy(self, x0: Tensor, t: Tensor, noise: Noise) -> Tensor:
        eps = noise.randn(x0.shape[0], *x0.shape[1:]).to(x0.dtype)
        return self.process.add_noise(x0, t, eps)

    def _cond(self, x0: Tensor, c):
        return c if self.condition is None else self.condition(x0.detach(), c)

    def aux_losses(self, noise: Noise, n: int, progress: Progress) -> dict[str, Tensor]:
        trained = {"fake", "discriminator"} & self.modules.keys()
        if not trained and not (self.alignment and self.alignment.modules):
            return {}
        z, latent = self.latents(noise, n, progress)
        with torch.no_grad():
            x0 = self.modules["generator"](z, latent)
        c = self._cond(x0, latent)
        out = {}
        if "fake" in trained:
            t = self._times(self.aux_time_sampler, noise, n, progress)
            x_t = self._noisy(x0, t, noise)
            if self.adversarial is None:
                d = self.fake(x_t, t, c)
            else:  # the head reads the features of the same forward pass, as in DMD2
                d, fake_logit = self.fake.both(x_t, t, c)
            err = per_element((d - x0) ** 2, t, mean=True)
            out["fake"] = per_example(self.fake_weight(t, self.process) * err, mean=True)
            if self.adversarial is not None:
                x_real, c_real = self.real(noise, n)
                real_logit = self.fake.logit(self._noisy(x_real, t, noise), t, self._cond(x_real, c_real))
                out["fake"] = out["fake"] + self.adversarial.classifier_loss(real_logit, fake_logit)
        if "discriminator" in trained:
            x_real, c_real = self.real(noise, n)
            c_real = self._cond(x_real, c_real)
            t = self._times(self.aux_time_sampler, noise, n, progress)
            real_logit = self.disc(self._noisy(x_real, t, noise), t, c_real).reshape(t.shape)
            fake_logit = self.disc(self._noisy(x0, t, noise), t, c).reshape(t.shape)
            out["discriminator"] = per_example(F.softplus(-real_logit) + F.softplus(fake_logit), mean=True)
        if self.alignment is not None:  # rewards read the generator's own condition (a class, a prompt)
            out.update(self.alignment.aux_losses(x0, latent, noise))
        return out

    def generator_loss(self, noise: Noise, n: int, progress: Progress) -> tuple[Tensor, dict[str, Tensor]]:
        z, latent = self.latents(noise, n, progress)
        x0 = self.modules["generator"](z, latent)
        c = self._cond(x0, latent)
        t = self._times(self.time_sampler, noise, n, progress)
        eps = noise.randn(n, *x0.shape[1:]).to(x0.dtype)
        teacher = (lambda x, s: self.teacher(x, s, c))
        if self.alignment is not None:
            teacher = self.alignment.teacher(teacher, c)
        critics = Critics(
            self.process,
            teacher=teacher,
            fake=None if self.fake is None else (lambda x, s: self.fake(x, s, c)),
            log_ratio=None if self.disc is None else (lambda x, s: self.disc(x, s, c).reshape(s.shape)),
        )
        loss = self.divergence.loss(x0, t, eps, critics)
        logs = {"divergence_loss": loss.detach().mean()}
        if self.adversarial is not None:  # the non-saturating GAN loss through the frozen fake score and head
            t_adv = self._times(self.aux_time_sampler, noise, n, progress)
            logit = self.fake.logit(self._noisy(x0, t_adv, noise), t_adv, c)
            loss = loss + self.adversarial.generator_loss(logit)
            logs["adversarial_logit"] = logit.detach().mean()
        if self.alignment is not None:
            # the reward and an anchor generator read the generator's condition, the critics the condition they see
            extra, more = self.alignment.loss(x0, z, latent, self.modules["generator"], noise)
            loss = loss + extra
            logs.update(more)
        if self.regulariser is not None:
            extra, more = self.regulariser(x0, z, c, self.modules["generator"])
            loss = loss + extra
            logs.update(more)
        return loss, logs


@dataclass
class ContinuousParts:
    """What a continuous backend supplies to `build_continuous`. Factories are called only when the
    divergence needs their network, in the order fake score, discriminator; `real` maps the names a
    config may choose (`distill.real`) to functions that build a source of real samples."""

    process: GaussianProcess
    teacher: Callable  # D_p(x_t, t, c), frozen
    generator: nn.Module  # x0 = G(z, c)
    latents: Latents
    fake: Callable[..., nn.Module] | None = None  # options from distill.fake -> a fresh fake score D_psi(x_t, t, c)
    fake_weight: Callable | None = None  # lambda(t, process) of its denoising loss (EDM's by default)
    discriminator: Callable[..., nn.Module] | None = None  # options from distill.discriminator -> logit net
    real: dict[str, Callable[[], Real]] = field(default_factory=dict)
    rewards: Registry | None = None  # rewards (x0[, c]) -> (B,) this modality offers (factories of options)
    # (reward section, beta) -> the exact denoiser D*(x_t, t, c) of the reward-tilted teacher, or None where it
    # has no closed form: DIDR's `proxy: exact`
    exact_tilt: Callable[[dict, float], Callable | None] | None = None
    condition: Condition | None = None
    time_shape: tuple[int, ...] = ()
    regulariser: Regulariser | None = None  # extra generator loss terms of the modality (3D: opacity regularisers)
    # the fake score's layer an adversarial head reads (distill.adversarial), and its channel width; None: not offered
    fake_features: FeatureLayer | None = None


def build_continuous(recipe: ContinuousRecipe, parts: ContinuousParts, outputs: Outputs | None = None,
                     where: str = "distill") -> ContinuousDistillation:
    """The objective for `recipe` on the backend's `parts`; every refusal is a one-line ConfigError."""
    available = {"fake"} if parts.fake is not None else set()
    if parts.discriminator is not None:
        available.add("ratio")
    usable = [d for d in DIVERGENCES.names() if DIVERGENCES.get(d).needs <= available]
    divergence, name = continuous_divergence(recipe, where, usable)
    for need, what in (("fake", "a fake score"), ("ratio", "a discriminator")):
        if need in divergence.needs and need not in available:
            raise ConfigError(f"config key {where}.divergence: {name!r} needs {what}, which this modality does not "
                              f"build; choose one of: {', '.join(usable)}")
    if "ratio" not in divergence.needs and recipe.discriminator is not None:
        raise ConfigError(f"config key {where}.discriminator: {name!r} uses no discriminator; remove the section "
                          f"(--set {where}.discriminator=null)")
    adversarial = build_adversarial(recipe, parts, divergence, name, where)
    disc_needed = "ratio" in divergence.needs or adversarial is not None
    source = real_source(recipe.real, parts.real, disc_needed, where)
    # the reward first: its factory may refuse this teacher (a digits classifier on RGB), which must
    # happen before the fake score, the discriminator or a teacher pool cost anything
    alignment = build_alignment(recipe, parts, where)
    if isinstance(alignment, DIDR) and "ratio" in divergence.needs:
        raise ConfigError(f"config key {where}.alignment: 'didr' tilts the teacher's score, but {name!r} estimates a "
                          "density ratio against untilted real samples; use ikl or a score divergence (sim, sid, fgm)")
    t_gen = build_named(TIME_SAMPLERS, recipe.time_sampler, f"{where}.time_sampler")
    aux = recipe.aux_time_sampler if recipe.aux_time_sampler is not None else recipe.time_sampler
    t_aux = build_named(TIME_SAMPLERS, aux, f"{where}.aux_time_sampler")
    probe_times(t_gen, parts.process, f"{where}.time_sampler")
    probe_times(t_aux, parts.process, f"{where}.aux_time_sampler")
    fake = None
    if "fake" in divergence.needs:
        fake = build_network(parts.fake, dict(recipe.fake or {}), f"{where}.fake", "this modality's fake score")
        if adversarial is not None:
            fake = FakeWithHead(fake, parts.fake_features, adversarial.hidden)
    disc = real = None
    if "ratio" in divergence.needs:
        options = dict(recipe.discriminator or {})
        disc = build_network(parts.discriminator, options, f"{where}.discriminator", "this modality's discriminator")
    if source is not None:
        real = parts.real[source]()
    return ContinuousDistillation(
        process=parts.process, teacher=parts.teacher, generator=parts.generator, latents=parts.latents,
        divergence=divergence, time_sampler=t_gen, aux_time_sampler=t_aux, fake=fake, fake_weight=parts.fake_weight,
        discriminator=disc, real=real, alignment=alignment, condition=parts.condition, time_shape=parts.time_shape,
        regulariser=parts.regulariser, adversarial=adversarial, outputs=outputs, offers=offers_of(parts))


def build_adversarial(recipe: ContinuousRecipe, parts: ContinuousParts, divergence: Divergence, name: str,
                      where: str) -> Adversarial | None:
    """The adversarial term of `recipe` (None when the section is absent), refused in one line where it cannot
    work: no fake score in the divergence, no feature layer offered, or one time per element."""
    if recipe.adversarial is None:
        return None
    key = f"{where}.adversarial"
    if "fake" not in divergence.needs:
        raise ConfigError(f"config key {key}: the head sits on the fake score and {name!r} trains none; use a "
                          "divergence with a fake score (ikl, sid, sim, fgm, fdiv, uni)")
    if parts.fake_features is None:
        raise ConfigError(f"config key {key}: this modality's fake score names no feature layer for a head; remove "
                          f"the section (--set {key}=null)")
    if parts.time_shape:
        raise ConfigError(f"config key {key}: not available with one noise level per element (time_shape "
                          f"{parts.time_shape}); remove the section")
    check_options(Adversarial, recipe.adversarial, key, "the adversarial term")
    options = coerce_options(Adversarial, dict(recipe.adversarial), key)
    try:
        return Adversarial(**options)
    except OptionError as e:
        raise ConfigError(f"config key {key}.{e.option} {e}") from None


def probe_times(sampler: Callable, process, where: str) -> None:
    """Draw a few times on the run's process (with a generator of their own, so the run's randomness is
    untouched): a range outside the process, or non-finite times, fail here in one line naming the key."""
    try:
        t = sampler(16, process, generator=torch.Generator().manual_seed(0))
    except OptionError as e:
        raise ConfigError(f"config key {where}.{e.option} {e}") from None
    if not bool(torch.isfinite(t).all()):
        raise ConfigError(f"config key {where}: draws non-finite times on this process")


def continuous_divergence(recipe: ContinuousRecipe, where: str, usable: list[str]) -> tuple[Divergence, str]:
    """(divergence, its name) from recipe.divergence; an estimator's name is refused, naming `usable`."""
    name = recipe.divergence.get("name") if isinstance(recipe.divergence, dict) else recipe.divergence
    if name in ESTIMATORS:
        raise ConfigError(f"config key {where}.divergence.name: {name!r} is a policy-gradient estimator for discrete "
                          f"tokens; this modality's samples are continuous: choose one of: {', '.join(usable)}")
    return build_named(DIVERGENCES, recipe.divergence, f"{where}.divergence"), name


ALIGNMENT_PARTS = ("reward", "alpha", "process", "exact", "generator", "network")  # what the engine passes in


def check_recipe(recipe: ContinuousRecipe, where: str = "distill") -> None:
    """Names and options of the divergence, the time samplers and the alignment, checked before the backend loads
    anything."""
    continuous_divergence(recipe, where, DIVERGENCES.names())
    if recipe.alignment is not None:
        if recipe.reward is None:
            raise ConfigError(f"config key {where}.alignment needs a reward: add {where}.reward {{name, ...}}")
        section = recipe.alignment if isinstance(recipe.alignment, dict) else {"name": recipe.alignment}
        try:
            cls = ALIGNMENTS.get(section.get("name"))
        except KeyError as e:
            raise ConfigError(f"config key {where}.alignment.name: {e.args[0]}") from None
        check_options(cls, {k: v for k, v in section.items() if k != "name"}, f"{where}.alignment",
                      repr(section["name"]), exclude=ALIGNMENT_PARTS)
    build_named(TIME_SAMPLERS, recipe.time_sampler, f"{where}.time_sampler")
    if recipe.aux_time_sampler is not None:
        build_named(TIME_SAMPLERS, recipe.aux_time_sampler, f"{where}.aux_time_sampler")


def build_network(factory: Callable[..., nn.Module], options: dict, where: str, what: str) -> nn.Module:
    """factory(**options) with the options checked against its signature and bad values as one line."""
    check_options(factory, options, where, what)
    options = coerce_options(factory, options, where)
    try:
        return factory(**options)
    except OptionError as e:
        raise ConfigError(f"config key {where}.{e.option} {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key {where}: {e}") from None


def reward_options(section: dict, rewards: Registry | None, where: str) -> tuple[dict, float | None]:
    """({name, options}, alpha or None) of a reward section, its name and options checked against `rewards`."""
    if rewards is None:
        raise ConfigError(f"config key {where}: this modality offers no rewards")
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError(f"config key {where} needs a 'name'; rewards here: {', '.join(rewards.names())}")
    options = {k: v for k, v in section.items() if k != "alpha"}
    try:
        factory = rewards.get(options["name"])
    except KeyError as e:
        raise ConfigError(f"config key {where}.name: {e.args[0]}") from None
    check_options(factory, {k: v for k, v in options.items() if k != "name"}, where, repr(options["name"]))
    alpha = section.get("alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))
                              or not math.isfinite(alpha) or alpha < 0):
        raise ConfigError(f"config key {where}.alpha must be a finite number >= 0, got {alpha!r}")
    return options, None if alpha is None else float(alpha)


def build_alignment(recipe: ContinuousRecipe, parts: ContinuousParts, where: str) -> Alignment | None:
    """The reward alignment of `recipe` (dipp when distill.alignment is absent): the reward built from the
    backend's registry, alpha required by the methods that weigh a reward term and refused by the others."""
    section = recipe.alignment if recipe.alignment is not None else {"name": "dipp"}
    if recipe.reward is None:
        if recipe.alignment is not None:
            raise ConfigError(f"config key {where}.alignment needs a reward: add {where}.reward {{name, ...}}")
        return None
    options, alpha = reward_options(recipe.reward, parts.rewards, f"{where}.reward")
    name = section.get("name") if isinstance(section, dict) else section
    cls = ALIGNMENTS.get(name) if name in ALIGNMENTS else None
    if cls is not None and cls.uses_alpha and alpha is None:
        raise ConfigError(f"config key {where}.reward needs 'alpha' (the weight of -reward in the generator loss) "
                          f"for alignment {name!r}")
    if cls is not None and not cls.uses_alpha and alpha is not None:
        raise ConfigError(f"config key {where}.reward.alpha: alignment {name!r} puts the reward in the teacher's "
                          f"score ({where}.alignment.beta); remove alpha")
    reward = build_named(parts.rewards, options, f"{where}.reward")
    tilt = None
    if parts.exact_tilt is not None:
        def tilt(beta):
            return parts.exact_tilt(options, beta)
    network = None
    if parts.discriminator is not None:
        def network(options):
            return build_network(parts.discriminator, options, f"{where}.alignment.net",
                                 "this modality's discriminator")
    parts_of = dict(zip(ALIGNMENT_PARTS, (reward, alpha, parts.process, tilt, parts.generator, network)))
    return build_named(ALIGNMENTS, section, f"{where}.alignment", **parts_of)
