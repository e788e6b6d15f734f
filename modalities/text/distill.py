"""`unidistill distill` for text: DiDi-Instruct (Zheng et al. 2025) on a masked diffusion teacher.

The student starts as a copy of the teacher and is trained by the engine's policy-gradient estimator
(engine.distill_discrete) on 2-step rollouts through an intermediate time tau ~ Beta (or N-step
rollouts), with the discriminator's log-odds as the reward at the coupled corruption time tau,
omega(t) = 1/t, grouped reward normalisation, intermediate-state matching and an entropy bonus
(the `distill:` section)."""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch

from unidistill.engine import process as proc
from unidistill.engine.builders import build_named
from unidistill.engine.config import ConfigError
from unidistill.engine.distill_discrete import DiscreteDistillation, DiscreteParts, build_discrete
from unidistill.engine.masked_sampling import rollout
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.registry import Registry

from .config import TextConfig
from .corpus import corpus_blocks
from .discriminator import TokenDiscriminator
from .io import export_student, resolve_folder
from .masked_lm import load_masked_lm, without_dropout
from .sampler import sample_ids, write_texts

log = logging.getLogger(__name__)


def two_step_times(n: int, group: int, tau_sampler, tau_range: list[float], process) -> torch.Tensor:
    """(n, 3) grids [1, tau, 0] with one tau per group of consecutive rollouts."""
    k = -(-n // group)
    tau = tau_sampler(k, process).double().clamp(*tau_range).repeat_interleave(group)[:n]
    return torch.stack([torch.ones(n, dtype=torch.float64), tau, torch.zeros(n, dtype=torch.float64)], 1)


def check(cfg: TextConfig) -> None:
    if cfg.rollout.steps < 1:
        raise ConfigError(f"config key rollout.steps must be >= 1, got {cfg.rollout.steps}")
    lo, hi = (cfg.rollout.tau_range + [None, None])[:2]
    if len(cfg.rollout.tau_range) != 2 or not 0 < lo < hi < 1:
        raise ConfigError(f"config key rollout.tau_range must be [lo, hi] with 0 < lo < hi < 1, "
                          f"got {cfg.rollout.tau_range}")
    if not cfg.eval.steps or min(cfg.eval.steps) < 1:
        raise ConfigError(f"config key eval.steps must list step counts >= 1, got {cfg.eval.steps}")


def build_distill(cfg: TextConfig, run_dir: Path) -> DiscreteDistillation:
    check(cfg)
    tau_sampler = build_named(proc.TIME_SAMPLERS, cfg.rollout.tau, "rollout.tau")
    teacher, tok = load_masked_lm(resolve_folder(cfg.teacher, "teacher"))
    teacher.eval().requires_grad_(False)
    process = proc.MaskingProcess(teacher.mask_id, eps=1e-3)
    length = teacher.length if cfg.length is None else cfg.length
    if not 2 <= length <= teacher.length:
        raise ConfigError(f"config key length = {length}; the teacher reads at most {teacher.length} tokens (>= 2)")
    student = without_dropout(copy.deepcopy(teacher)).requires_grad_(True)
    guidance = cfg.guidance.build() if cfg.guidance.active else None
    made: dict[str, TokenDiscriminator] = {}  # the discriminator, once the engine builds it

    def discriminator(trainable_blocks: int = 1):
        made["disc"] = TokenDiscriminator(teacher, trainable_blocks)
        return made["disc"]

    def pooled(blocks: torch.Tensor):
        """A real side drawn from a fixed pool of sequences (n, L), built when the engine asks for it."""
        return lambda noise, n: blocks[noise.randint(len(blocks), n).cpu()].to(noise.device)

    real = {"teacher": lambda: pooled(teacher_pool(cfg, teacher, length)),
            "corpus": lambda: pooled(corpus_blocks(cfg.corpus, tok, length, "train"))}

    def student_rollout(s, n, group):
        times = (two_step_times(n, group, tau_sampler, cfg.rollout.tau_range, process)
                 if cfg.rollout.steps == 2 else None)
        return rollout(s, n, cfg.rollout.steps, process, length, times=times, dtype=torch.float32,
                       device=next(s.parameters()).device)

    judge_dir = None if cfg.eval.judge == "none" else resolve_folder(cfg.eval.judge, "judge", must_exist=False)
    if judge_dir is not None:
        from .evaluate import check_judge

        check_judge(judge_dir, tok, length)

    def draw(s, n, k):
        return sample_ids(s, n, k, seed=0, length=length, guidance=guidance,
                          discriminator=made.get("disc") if guidance is not None else None)

    def evaluate(s):
        from .evaluate import score_samples

        out = {}
        for k in cfg.eval.steps:
            x, stats = draw(s, cfg.eval.n_samples, k)
            out[f"nfe_{k}"] = stats.nfe
            out.update({f"{key}_{k}": v for key, v in stats.extra.items()})
            if judge_dir is not None:
                out.update({f"{m}_{k}": v for m, v in score_samples(x, judge_dir).items()})
        return out

    def save_texts(s, run, step):
        k = cfg.eval.steps[0]
        path = sample_path(run, step, ".txt")
        write_texts(tok.batch_decode(draw(s, 16, k)[0]), path, f"{k}-step student samples")
        return [path]

    parts = DiscreteParts(process=process, student=student, rollout=student_rollout, rollout_steps=cfg.rollout.steps,
                          teacher=teacher, discriminator=discriminator, real=real, rewards=text_rewards(cfg, tok))
    outputs = Outputs(evaluate=evaluate, save_samples=save_texts,
                      export=lambda s, run: export_student(s, made["disc"], tok, run))
    return build_discrete(cfg.distill, parts, outputs)


def text_rewards(cfg: TextConfig, tok) -> Registry:
    """Sequence rewards a config may name in distill.reward (alpha * r joins DiDi-Instruct's reward)."""
    rewards = Registry("text reward")

    @rewards.register("distinct")
    def distinct():
        """The share of distinct tokens in each sequence: penalises runs of one token (reST table rules)."""
        def reward(x):
            s = x.sort(-1).values
            return (1 + (s[:, 1:] != s[:, :-1]).sum(-1)).double() / x.shape[1]
        return reward

    @rewards.register("judge")
    def judge(folder: str | None = None):
        """The judge's mean log-probability per token (default judge: eval.judge): more fluent text."""
        from .evaluate import load_judge
        from .judge import token_nll

        where = folder if folder is not None else cfg.eval.judge
        if where == "none":
            raise ValueError("the judge reward needs a judge: set eval.judge or the reward's folder")
        lm = load_judge(str(resolve_folder(where, "judge")))
        bos = lm.config.eos_token_id

        @torch.no_grad()
        def reward(x):
            lm.to(x.device)
            return -token_nll(lm, x, bos).double().mean(-1)
        return reward

    return rewards


def teacher_pool(cfg: TextConfig, teacher, length: int) -> torch.Tensor:
    """The discriminator's data-free real side: teacher samples drawn once."""
    start = time.perf_counter()
    pool, stats = sample_ids(teacher, cfg.teacher_pool, cfg.teacher_pool_steps, seed=12345, length=length,
                             progress=f"teacher pool ({cfg.teacher_pool_steps} steps)")
    log.info("teacher pool: %d samples at %d steps (%.1f NFE) in %.1f s", len(pool), cfg.teacher_pool_steps,
             stats.nfe, time.perf_counter() - start)
    return pool
