"""`unidistill distill` for the toy chain: DiDi-Instruct's policy gradient on an N-step masked-diffusion
student warm-started from the exact teacher, with a discriminator or the exact log-ratio oracle."""
from __future__ import annotations

from pathlib import Path

import torch

from unidistill.engine import masked_sampling
from unidistill.engine import process as proc
from unidistill.engine.distill_discrete import DiscreteDistillation, DiscreteParts, build_discrete, check_discrete
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.registry import Registry

from .chain import MarkovChainTeacher, all_sequences
from .config import MarkovConfig
from .evaluate import ChainEvaluator
from .io import student_for
from .student import MaskedDenoiser, MaskedDiscriminator, exact_distribution, teacher_predictor


def build_distill(cfg: MarkovConfig, run_dir: Path) -> DiscreteDistillation:
    student, process, chain = student_for(cfg)
    V, L = chain.vocab, chain.length
    oracle = (lambda s: exact_log_ratio(s, chain, process, cfg.steps)) if cfg.ratio == "oracle" else None
    parts = DiscreteParts(
        process=process, student=student, rollout_steps=cfg.steps,
        rollout=lambda s, n, group: masked_sampling.rollout(s, n, cfg.steps, process, L, vocab=V,
                                                            device=next(s.parameters()).device),
        teacher=teacher_predictor(chain), oracle=oracle,
        discriminator=None if oracle is not None else (lambda: MaskedDiscriminator(V, L, cfg.hidden)),
        real={"data": lambda: (lambda noise, n: noise.draw(lambda m, g: chain.sample(m, generator=g), n))},
        rewards=rewards_for(chain))
    check_discrete(cfg.distill, parts)  # before the warm start's cost
    warm_start(student, chain, process, cfg.warm_start_steps)
    tilt = None
    if cfg.distill.reward is not None and cfg.distill.reward.get("alpha"):
        r = parts.rewards.get("count")(**{k: v for k, v in cfg.distill.reward.items() if k not in ("name", "alpha")})
        tilt = (r, 1.0 / float(cfg.distill.reward["alpha"]))
    ev = ChainEvaluator(chain, process, cfg.steps, cfg.eval_teacher_steps, tilt=tilt)
    outputs = Outputs(evaluate=ev, save_samples=lambda s, run, step: [ev.picture(s, sample_path(run, step, ".png"))])
    return build_discrete(cfg.distill, parts, outputs)


def rewards_for(chain: MarkovChainTeacher) -> Registry:
    rewards = Registry("chain reward")

    @rewards.register("count")
    def count(token: int = 0):
        """r(x) = the number of positions holding `token`."""
        if not (isinstance(token, int) and 0 <= token < chain.vocab):
            raise ValueError(f"reward option token must be a token id in 0..{chain.vocab - 1}, got {token!r}")
        return lambda x: (x == token).sum(-1).to(torch.float64)

    return rewards


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
