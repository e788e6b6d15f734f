"""The discrete objective (DiDi-Instruct, Zheng et al. 2025): a student that samples token
sequences with log-probabilities, trained by the policy-gradient estimator with a reward from the
density ratio between the corrupted teacher and student marginals, estimated by a time-conditioned
discriminator (teacher "real", student "fake") or given exactly by an oracle in tests.

Optional parts of DiDi-Instruct: the corruption time coupled to the rollout's intermediate time tau,
a time weight omega(t) on the reward, per-token discriminator logits (the sequence's log-ratio is their
mean over the masked positions), and regularisers on the trajectory such as intermediate-state
matching (KL(teacher || student) at the rollout's states) and an entropy bonus. A task reward r(x) (`distill.reward`)
joins each sample's policy-gradient reward as alpha * r(x): the token version of DI++, maximising E[r] against
the integral KL."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .alignment import reward_of
from .builders import build_named, check_options
from .config import ConfigError
from .distill import build_network, probe_times, reward_options
from .divergences import DIVERGENCES, ESTIMATORS, PolicyGradient
from .masked_sampling import Predictor, Trajectory
from .noise import Noise
from .objective import Objective, Outputs, Progress
from .process import TIME_SAMPLERS, MaskingProcess, bcast
from .recipe import DiscreteRecipe, Offers, offers_of, real_source
from .registry import Registry

# (student, n, group_size) -> trajectory; the estimator compares consecutive groups of group_size rows, and a
# rollout may share randomness within a group (DiDi-Instruct draws one intermediate time tau per group)
Rollout = Callable[[nn.Module, int, int], Trajectory]
LogRatio = Callable[[Tensor, Tensor], Tensor]  # (z (B, L), t (B,)) -> log r = log teacher_t / student_t
Regulariser = Callable[[nn.Module, Trajectory], Tensor]  # (student, trajectory) -> per-example loss (B,)


def masked_mean(values: Tensor, z: Tensor, mask_id: int) -> Tensor:
    """Mean of per-token values (B, L) over the positions masked in z (all positions if none is)."""
    m = (z == mask_id).to(values.dtype)
    m = torch.where(m.sum(-1, keepdim=True) > 0, m, torch.ones_like(m))
    return (values * m).sum(-1) / m.sum(-1)


def inverse_t_weight(lo: float = 0.1, hi: float = 10.0) -> Callable[[Tensor], Tensor]:
    """omega(t) = -alpha'(t) / (1 - alpha(t)) = 1 / t for the log-linear schedule, clamped to [lo, hi]
    (DiDi-Instruct's time weight)."""
    return lambda t: (1 / t.double().clamp_min(1e-12)).clamp(lo, hi)


def entropy_bonus(student: nn.Module, traj: Trajectory, mask_id: int) -> Tensor:
    """-(mean entropy of the student's p(x0 | z) over masked positions, averaged over steps), (B,)."""
    h = [masked_mean(-(lp.exp() * finite(lp)).sum(-1), z, mask_id) for lp, z in zip(traj.log_probs, traj.states)]
    return -torch.stack(h).mean(0)


def finite(lp: Tensor) -> Tensor:
    """log-probabilities with -inf (zero-probability tokens, e.g. SUBS's mask token) replaced by 0, so that
    p * log p and its gradient are 0 there instead of NaN."""
    return torch.where(torch.isfinite(lp), lp, torch.zeros_like(lp))


def state_matching(teacher: Predictor, mask_id: int) -> Regulariser:
    """Intermediate-state matching: KL(teacher || student) of p(x0 | z) at each rollout state, mean over
    masked positions and steps, (B,); the teacher sees exactly the student's states."""

    def reg(student: nn.Module, traj: Trajectory) -> Tensor:
        kls = []
        for lp_s, z, t in zip(traj.log_probs, traj.states, traj.times.T):
            with torch.no_grad():
                lp_t = torch.log_softmax(teacher(z, t.float().to(z.device)).to(lp_s.dtype), -1)
            kl = (lp_t.exp() * (finite(lp_t) - finite(lp_s))).sum(-1)  # 0 where the teacher gives p = 0
            kls.append(masked_mean(kl, z, mask_id))
        return torch.stack(kls).mean(0)

    return reg


class DiscreteDistillation(Objective):
    """Objective for the Trainer; `real(noise, n)` draws the discriminator's real side (teacher
    samples: data-free; or corpus data)."""

    def __init__(self, *, process: MaskingProcess, student: nn.Module, rollout: Rollout,
                 estimator: PolicyGradient, time_sampler: Callable, real: Callable[[Noise, int], Tensor] | None = None,
                 discriminator: nn.Module | None = None, oracle: Callable[[nn.Module], LogRatio] | None = None,
                 corruptions: int = 1, coupled_time: bool = False,
                 time_weight: Callable[[Tensor], Tensor] | None = None,
                 regularisers: dict[str, tuple[float, Regulariser]] | None = None, reuse_rollouts: bool = False,
                 teacher: Predictor | None = None, reward: tuple[Callable[[Tensor], Tensor], float] | None = None,
                 label_smoothing: float = 0.0, replay: int = 0,
                 outputs: Outputs | None = None, offers: Offers | None = None):
        super().__init__(outputs)
        self.task_reward = reward  # (r(x) -> (B,), alpha) or None
        self.offers = offers  # what the backend's parts offered (the conformance suite checks its declaration)
        if (discriminator is None) == (oracle is None):
            raise ValueError("the policy-gradient estimator needs exactly one density-ratio source: "
                             "a discriminator or an oracle")
        if corruptions < 1:
            raise ValueError(f"corruptions must be >= 1, got {corruptions}")
        if discriminator is not None and real is None:
            raise ValueError("a discriminator needs a source of real samples (teacher samples or data)")
        self.process, self.rollout, self.estimator = process, rollout, estimator
        self.time_sampler, self.real, self.disc, self.oracle = time_sampler, real, discriminator, oracle
        self.m, self.coupled_time, self.time_weight = corruptions, coupled_time, time_weight
        self.regularisers = dict(regularisers or {})
        # reuse_rollouts: the discriminator's fake side is the previous generator step's rollout (one update
        # old) instead of a fresh one, saving a sampling pass per step
        self.reuse_rollouts = reuse_rollouts
        self._last: Trajectory | None = None
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing = {label_smoothing}; it must be in [0, 0.5)")
        self.label_smoothing = label_smoothing
        # replay: the fake side also draws from the last `replay` rollouts (samples and their times), so the
        # discriminator keeps rejecting what the student produced a few updates ago
        self.replay, self._replay = replay, []
        self._disc_logs: dict[str, Tensor] = {}  # the last discriminator update's accuracies, logged by the generator
        self.teacher = teacher  # frozen (the regularisers read it); moved with the objective
        if isinstance(teacher, nn.Module):
            self.teachers["teacher"] = teacher
        self.modules: dict[str, nn.Module] = {"generator": student}
        if discriminator is not None:
            self.modules["discriminator"] = discriminator

    def to(self, device):
        if isinstance(self.teacher, nn.Module):
            self.teacher.to(device)
        return self

    def _trajectory(self, student: nn.Module, n: int) -> Trajectory:
        return self.rollout(student, n, self.estimator.group_size)

    def _times(self, noise: Noise, n: int, traj: Trajectory | None, device, progress: Progress) -> Tensor:
        """Corruption times: the rollout's intermediate time (coupled) or fresh draws."""
        if self.coupled_time:
            if traj is None or traj.times is None or traj.times.shape[1] < 3:
                raise ValueError("coupled_time needs a rollout with an intermediate time (at least 2 steps)")
            return traj.times[:, 1].float().to(device)
        return noise.draw(lambda k, g: self.time_sampler(k, self.process, generator=g, progress=progress.fraction),
                          n).to(device)

    def _corrupt(self, x: Tensor, t: Tensor, noise: Noise) -> Tensor:
        keep = noise.rand(*x.shape).to(x.device) < bcast(self.process.alpha(t), x)
        return torch.where(keep, x, torch.full_like(x, self.process.mask_id))

    def _logit(self, z: Tensor, t: Tensor) -> Tensor:
        """Sequence logit (B,): the discriminator's own, or the masked mean of its per-token logits."""
        out = self.disc(z, t)
        return out.reshape(-1) if out.ndim == 1 else masked_mean(out.float(), z, self.process.mask_id)

    def aux_losses(self, noise: Noise, n: int, progress: Progress) -> dict[str, Tensor]:
        if self.disc is None:
            return {}
        traj = self._last if self.reuse_rollouts and self._last is not None and len(self._last.x) == n else None
        if traj is None:
            with torch.no_grad():
                traj = self._trajectory(self.modules["generator"], n)
        x_real = self.real(noise, n)
        t_fake = self._times(noise, n, traj, x_real.device, progress)
        t_real = t_fake if self.coupled_time else self._times(noise, n, None, x_real.device, progress)
        x_fake, t_fake = self._replayed(traj.x, t_fake, noise)
        z_real, z_fake = self._corrupt(x_real, t_real, noise), self._corrupt(x_fake, t_fake, noise)
        real, fake = self._logit(z_real, t_real), self._logit(z_fake, t_fake)
        s = self.label_smoothing
        loss = (1 - s) * F.softplus(-real) + s * F.softplus(real) + F.softplus(fake)
        self._disc_logs = {"disc/acc_real": (real > 0).float().mean().detach(),
                           "disc/acc_fake": (fake < 0).float().mean().detach()}
        return {"discriminator": loss}

    def _replayed(self, x: Tensor, t: Tensor, noise: Noise) -> tuple[Tensor, Tensor]:
        """The fake side: the newest rollout, or with replay a uniform draw of n rows from it and the
        buffered older ones (each row keeps its own corruption time)."""
        if not self.replay:
            return x, t
        self._replay = (self._replay + [(x.detach(), t.detach())])[-(self.replay + 1):]
        xs, ts = torch.cat([b[0] for b in self._replay]), torch.cat([b[1] for b in self._replay])
        pick = noise.randint(len(xs), len(x)).to(xs.device)
        return xs[pick], ts[pick]

    def generator_loss(self, noise: Noise, n: int, progress: Progress) -> tuple[Tensor, dict[str, Tensor]]:
        student = self.modules["generator"]
        traj = self._trajectory(student, n)
        if self.reuse_rollouts:
            self._last = Trajectory(traj.x.detach(), traj.log_prob.detach(), [], traj.times, [])
        t = self._times(noise, n, traj, traj.x.device, progress).repeat_interleave(self.m, 0)
        z = self._corrupt(traj.x.repeat_interleave(self.m, 0), t, noise)
        with torch.no_grad():
            log_r = (self.oracle(student)(z, t) if self.oracle is not None else self._logit(z, t))
            log_r = log_r.reshape(n, self.m).float()
        weight = self.time_weight(t.view(n, self.m)[:, 0]) if self.time_weight is not None else None
        bonus, logs = None, {}
        if self.task_reward is not None:
            fn, alpha = self.task_reward
            with torch.no_grad():
                r = reward_of(fn, traj.x, None).float()
            bonus, logs["task_reward"] = alpha * r, r.mean()
        loss = self.estimator.loss(traj.log_prob, log_r, weight, bonus=bonus)
        reward = self.estimator.reward(log_r)
        spread = reward.std() if reward.numel() > 1 else reward.new_zeros(())
        logs.update({"reward": reward.mean(), "reward_std": spread, "log_prob": traj.log_prob.detach().mean(),
                     **self._disc_logs})
        for name, (w, reg) in self.regularisers.items():
            value = reg(student, traj)
            loss = loss + w * value
            logs[name] = value.detach().mean()
        return loss, logs


@dataclass
class DiscreteParts:
    """What a discrete backend supplies to `build_discrete`: exactly one of a discriminator factory (with
    sources of real samples to choose from by `distill.real`) or an exact oracle for the log ratio."""

    process: MaskingProcess
    student: nn.Module  # p_theta(x0 | z_t): (z (B, L), t (B,)) -> logits (B, L, V)
    rollout: Rollout
    rollout_steps: int  # sampling steps of a training rollout (coupled_time needs >= 2)
    teacher: Predictor | None = None  # for intermediate-state matching
    discriminator: Callable[..., nn.Module] | None = None  # options from distill.discriminator -> logit net
    real: dict[str, Callable[[], Callable[[Noise, int], Tensor]]] = field(default_factory=dict)
    oracle: Callable[[nn.Module], LogRatio] | None = None
    rewards: Registry | None = None  # sequence rewards (x (B, L)) -> (B,) this modality offers


def discrete_estimator(recipe: DiscreteRecipe, where: str = "distill") -> PolicyGradient:
    """The estimator of recipe.divergence; a continuous divergence's name is refused, naming the estimators."""
    name = recipe.divergence.get("name") if isinstance(recipe.divergence, dict) else recipe.divergence
    if name in DIVERGENCES:
        raise ConfigError(f"config key {where}.divergence.name: {name!r} is a continuous divergence; this modality's "
                          f"samples are discrete tokens: choose one of: {', '.join(ESTIMATORS.names())}")
    return build_named(ESTIMATORS, recipe.divergence, f"{where}.divergence")


def check_recipe(recipe: DiscreteRecipe, where: str = "distill") -> None:
    """Names and options of the estimator and time sampler, checked before the backend loads anything."""
    discrete_estimator(recipe, where)
    build_named(TIME_SAMPLERS, recipe.time_sampler, f"{where}.time_sampler")


def check_discrete(recipe: DiscreteRecipe, parts: DiscreteParts, where: str = "distill") -> PolicyGradient:
    """Every refusal of build_discrete, without building anything (a backend with costly set-up, such as a
    warm start, calls it first); returns the estimator."""
    estimator = discrete_estimator(recipe, where)
    if recipe.coupled_time and parts.rollout_steps < 2:
        raise ConfigError(f"config key {where}.coupled_time: true needs a rollout of at least 2 steps (an "
                          f"intermediate time); this one has {parts.rollout_steps}")
    if recipe.corruptions < 1:
        raise ConfigError(f"config key {where}.corruptions must be >= 1, got {recipe.corruptions}")
    for key in ("ism_weight", "entropy_weight"):
        value = getattr(recipe, key)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"config key {where}.{key} must be a finite number >= 0, got {value}")
    disc_needed = parts.oracle is None
    real_source(recipe.real, parts.real, disc_needed, where)
    if recipe.ism_weight > 0 and parts.teacher is None:
        raise ConfigError(f"config key {where}.ism_weight: this modality has no teacher predictor to match")
    if parts.oracle is not None and recipe.discriminator is not None:
        raise ConfigError(f"config key {where}.discriminator: this run uses the exact oracle, not a discriminator; "
                          f"remove the section (--set {where}.discriminator=null)")
    if parts.oracle is None:
        check_options(parts.discriminator, dict(recipe.discriminator or {}), f"{where}.discriminator",
                      "this modality's discriminator")
    probe_times(build_named(TIME_SAMPLERS, recipe.time_sampler, f"{where}.time_sampler"), parts.process,
                f"{where}.time_sampler")
    if recipe.reward is not None:
        _, alpha = reward_options(recipe.reward, parts.rewards, f"{where}.reward")
        if alpha is None:
            raise ConfigError(f"config key {where}.reward needs 'alpha' (the weight of the reward beside the "
                              "divergence's in the policy gradient)")
    return estimator


def build_discrete(recipe: DiscreteRecipe, parts: DiscreteParts, outputs: Outputs | None = None,
                   where: str = "distill") -> DiscreteDistillation:
    """The objective for `recipe` on the backend's `parts`; every refusal is a one-line ConfigError."""
    estimator = check_discrete(recipe, parts, where)
    regs: dict[str, tuple[float, Regulariser]] = {}
    if recipe.ism_weight > 0:
        regs["ism"] = (recipe.ism_weight, state_matching(parts.teacher, parts.process.mask_id))
    if recipe.entropy_weight > 0:
        mask_id = parts.process.mask_id
        regs["entropy"] = (recipe.entropy_weight, lambda s, traj: entropy_bonus(s, traj, mask_id))
    reward = None
    if recipe.reward is not None:
        options, alpha = reward_options(recipe.reward, parts.rewards, f"{where}.reward")
        reward = (build_named(parts.rewards, options, f"{where}.reward"), alpha)
    disc = real = None
    if parts.oracle is None:
        disc = build_network(parts.discriminator, dict(recipe.discriminator or {}), f"{where}.discriminator",
                             "this modality's discriminator")
        real = parts.real[real_source(recipe.real, parts.real, True, where)]()
    return DiscreteDistillation(
        process=parts.process, student=parts.student, rollout=parts.rollout, estimator=estimator,
        time_sampler=build_named(TIME_SAMPLERS, recipe.time_sampler, f"{where}.time_sampler"), real=real,
        discriminator=disc, oracle=parts.oracle, corruptions=recipe.corruptions, coupled_time=recipe.coupled_time,
        time_weight=inverse_t_weight() if recipe.time_weight == "inverse_t" else None, regularisers=regs,
        reuse_rollouts=recipe.reuse_rollouts, teacher=parts.teacher, reward=reward,
        label_smoothing=recipe.label_smoothing, replay=recipe.replay, outputs=outputs,
        offers=offers_of(parts))
