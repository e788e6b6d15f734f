"""The discrete toy modality: distil an exact Markov-chain teacher into an N-step masked-diffusion
student with DiDi-Instruct's policy-gradient estimator; the student's N-step distribution and its
KL to the target are computed exactly."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from unidistill.engine import masked_sampling
from unidistill.engine import process as proc
from unidistill.engine.backend import BACKENDS
from unidistill.engine.builders import build_named
from unidistill.engine.config import ConfigError
from unidistill.engine.distill_discrete import DiscreteDistillation, entropy_bonus, inverse_t_weight, state_matching
from unidistill.engine.divergences import DIVERGENCES, PolicyGradient

from .discrete_student import MaskedDenoiser, MaskedDiscriminator, exact_distribution, teacher_predictor
from .markov import MarkovChainTeacher, all_sequences
from .plots import plot_histogram


@dataclass
class MarkovConfig:
    chain: dict[str, Any]  # {init: [V], transition: [[V x V]], length: L}
    steps: int = 4  # student sampling steps (network evaluations per sample)
    hidden: int = 128  # width of the student and discriminator MLPs
    divergence: dict[str, Any] = field(default_factory=lambda: {"name": "didi", "f": "rkl", "group_size": 8})
    time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "uniform"})  # corruption times
    corruptions: int = 4  # corrupted copies of each sample averaged in its reward
    ratio: Literal["discriminator", "oracle"] = "discriminator"  # oracle: exact log ratio (tests, ablations)
    warm_start_steps: int = 300  # fit the student to the teacher's masked conditionals first (init from teacher)
    eval_teacher_steps: list[int] = field(default_factory=lambda: [2, 4, 16])  # teacher's own sampler, for reference
    coupled_time: bool = False  # corrupt at the rollout's first intermediate time instead of time_sampler
    time_weight: Literal["none", "inverse_t"] = "none"  # omega(t) on the reward: 1 or 1/t clamped to [0.1, 10]
    ism_weight: float = 0.0  # intermediate-state matching KL(teacher || student) at the rollout states
    entropy_weight: float = 0.0  # entropy bonus on the student's predictions at the rollout states


class MarkovBackend:
    Config = MarkovConfig

    def build(self, cfg: MarkovConfig, out_dir: Path) -> DiscreteDistillation:
        try:
            chain = MarkovChainTeacher.from_config(cfg.chain)
        except ValueError as e:
            raise ConfigError(f"config key chain: {e}") from None
        if cfg.steps < 1:
            raise ConfigError(f"config key steps must be >= 1, got {cfg.steps}")
        estimator = build_named(DIVERGENCES, cfg.divergence, "divergence")
        if not isinstance(estimator, PolicyGradient):
            raise ConfigError(f"config key divergence.name: the discrete toy needs the policy-gradient "
                              f"estimator 'didi', got {cfg.divergence.get('name')!r}")
        process = proc.MaskingProcess(mask_id=chain.vocab, eps=0.0)
        V, L = chain.vocab, chain.length
        student = MaskedDenoiser(V, L, cfg.hidden)
        warm_start(student, chain, process, cfg.warm_start_steps)
        disc = MaskedDiscriminator(V, L, cfg.hidden) if cfg.ratio == "discriminator" else None
        oracle = (lambda s: exact_log_ratio(s, chain, process, cfg.steps)) if cfg.ratio == "oracle" else None
        ev = ChainEvaluator(chain, process, cfg.steps, cfg.eval_teacher_steps)
        if cfg.coupled_time and cfg.steps < 2:
            raise ConfigError("config key coupled_time: true needs steps >= 2 (an intermediate time)")
        regs = {}
        if cfg.ism_weight > 0:
            regs["ism"] = (cfg.ism_weight, state_matching(teacher_predictor(chain), process.mask_id))
        if cfg.entropy_weight > 0:
            regs["entropy"] = (cfg.entropy_weight, lambda s, traj: entropy_bonus(s, traj, process.mask_id))
        return DiscreteDistillation(
            process=process, student=student,
            rollout=lambda s, n: masked_sampling.rollout(s, n, cfg.steps, process, L, vocab=V),
            estimator=estimator, time_sampler=build_named(proc.TIME_SAMPLERS, cfg.time_sampler, "time_sampler"),
            real=lambda noise, n: noise.draw(lambda m, g: chain.sample(m, generator=g), n),
            discriminator=disc, oracle=oracle, corruptions=cfg.corruptions, coupled_time=cfg.coupled_time,
            time_weight=inverse_t_weight() if cfg.time_weight == "inverse_t" else None, regularisers=regs,
            evaluate=ev, save_pictures=ev.picture,
        )

    def sample(self, objective: DiscreteDistillation, generator, n: int) -> np.ndarray:
        with torch.no_grad():
            return objective.rollout(generator, n).x.numpy()


def warm_start(student: MaskedDenoiser, chain: MarkovChainTeacher, process: proc.MaskingProcess,
               steps: int, batch: int = 256, lr: float = 3e-3) -> None:
    """Initialise the student from the teacher: minimise KL(teacher conditionals || student) at the
    masked positions of corrupted teacher samples (what DiDi-Instruct gets by copying weights)."""
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    for _ in range(steps):
        x = chain.sample(batch)
        t = torch.rand(batch)
        z = process.corrupt(x, t)
        target = chain.masked_conditionals(z).float()
        logq = torch.log_softmax(student(z, t), -1)
        masked = (z == process.mask_id).float()
        kl = (target * (torch.log(target.clamp_min(1e-12)) - logq)).sum(-1)
        loss = (kl * masked).sum() / masked.sum().clamp_min(1)
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def exact_log_ratio(student, chain: MarkovChainTeacher, process: proc.MaskingProcess, steps: int):
    """The oracle: log r(z) = log q_t(z) - log p_theta,t(z); the alpha(t) factors cancel, leaving the
    teacher's and the student's probabilities of z's unmasked tokens."""
    V, L = chain.vocab, chain.length
    p = exact_distribution(student, steps, process, V, L).float()
    xs = all_sequences(V, L)

    def log_ratio(z, t):
        compatible = ((xs[None] == z[:, None]) | (z[:, None] == V)).all(-1).float()  # (B, V^L)
        student_lp = torch.log((compatible @ p).clamp_min(1e-30))
        return chain.unmasked_log_prob(z).float() - student_lp

    return log_ratio


class ChainEvaluator:
    """Exact KL(student N-step || target) and the teacher's own N-step sampler's KL for reference."""

    def __init__(self, chain, process, steps: int, teacher_steps: list[int]):
        self.chain, self.process, self.steps = chain, process, steps
        _, self.target = chain.enumerate()
        self.teacher_kl = {k: _kl(exact_distribution(teacher_predictor(chain), k, process, chain.vocab,
                                                     chain.length), self.target) for k in teacher_steps}

    @torch.no_grad()
    def distribution(self, student) -> torch.Tensor:
        return exact_distribution(student, self.steps, self.process, self.chain.vocab, self.chain.length)

    def __call__(self, student) -> dict[str, float]:
        out = {f"kl_student_{self.steps}step": _kl(self.distribution(student), self.target)}
        out.update({f"kl_teacher_{k}step": v for k, v in self.teacher_kl.items()})
        return out

    def picture(self, student, path) -> None:
        xs = all_sequences(self.chain.vocab, self.chain.length)
        labels = ["".join(map(str, row.tolist())) for row in xs]
        kl = _kl(self.distribution(student), self.target)
        plot_histogram(labels, self.distribution(student).numpy(), self.target.numpy(), path,
                       title=f"{self.steps}-step student vs target (exact KL {kl:.4f})")


def _kl(p: torch.Tensor, q: torch.Tensor) -> float:
    from unidistill.engine.metrics import exact_kl

    return exact_kl(p.double() / p.sum(), q.double())


BACKENDS.register("toy_markov")(MarkovBackend())
