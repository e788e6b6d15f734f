"""`unidistill distill` for text: DiDi-Instruct (Zheng et al. 2025) on a masked diffusion teacher.

The student starts as a copy of the teacher and is trained by the engine's policy-gradient estimator
(engine.distill_discrete) on 2-step rollouts through an intermediate time tau ~ Beta (or N-step
rollouts), with the discriminator's log-odds as the reward at the coupled corruption time tau,
omega(t) = 1/t, grouped reward normalisation, intermediate-state matching and an entropy bonus."""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch

from unidistill.engine import process as proc
from unidistill.engine.builders import build_named
from unidistill.engine.config import ConfigError
from unidistill.engine.distill_discrete import DiscreteDistillation, entropy_bonus, inverse_t_weight, state_matching
from unidistill.engine.divergences import DIVERGENCES, PolicyGradient
from unidistill.engine.masked_sampling import rollout

from .config import TextConfig
from .corpus import corpus_blocks
from .discriminator import TokenDiscriminator
from .masked_lm import load_masked_lm, save_masked_lm
from .pretrained import resolve_folder
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
    if cfg.coupled_time and cfg.rollout.steps < 2:
        raise ConfigError("config key coupled_time: true needs rollout.steps >= 2 (an intermediate time)")
    if not cfg.eval.steps or min(cfg.eval.steps) < 1:
        raise ConfigError(f"config key eval.steps must list step counts >= 1, got {cfg.eval.steps}")
    for key in ("ism_weight", "entropy_weight"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key {key} must be >= 0, got {getattr(cfg, key)}")


def build_distill(cfg: TextConfig, out_dir: Path) -> DiscreteDistillation:
    check(cfg)
    teacher, tok = load_masked_lm(resolve_folder(cfg.teacher, "teacher"))
    teacher.eval().requires_grad_(False)
    estimator = build_named(DIVERGENCES, cfg.divergence, "divergence")
    if not isinstance(estimator, PolicyGradient):
        raise ConfigError(f"config key divergence.name: text needs the policy-gradient estimator 'didi', "
                          f"got {cfg.divergence.get('name')!r}")
    process = proc.MaskingProcess(teacher.mask_id, eps=1e-3)
    length = teacher.length if cfg.length is None else cfg.length
    if not 2 <= length <= teacher.length:
        raise ConfigError(f"config key length = {length}; the teacher reads at most {teacher.length} tokens (>= 2)")
    student = copy.deepcopy(teacher).requires_grad_(True)
    try:
        disc = TokenDiscriminator(teacher, cfg.trainable_blocks)
    except ValueError as e:
        raise ConfigError(f"config key trainable_blocks: {e}") from None
    guidance = cfg.guidance.build()

    pool: list[torch.Tensor] = []  # the real side, drawn on first use (`unidistill sample` never needs it)

    def real(noise, n):
        if not pool:
            pool.append(real_pool(cfg, teacher, tok, length))
        return pool[0][noise.randint(len(pool[0]), n).cpu()].to(noise.device)

    tau_sampler = build_named(proc.TIME_SAMPLERS, cfg.rollout.tau, "rollout.tau")
    group = estimator.group_size

    def student_rollout(s, n):
        times = (two_step_times(n, group, tau_sampler, cfg.rollout.tau_range, process)
                 if cfg.rollout.steps == 2 else None)
        return rollout(s, n, cfg.rollout.steps, process, length, times=times, dtype=torch.float32)

    regs = {}
    if cfg.ism_weight > 0:
        regs["ism"] = (cfg.ism_weight, state_matching(teacher, process.mask_id))
    if cfg.entropy_weight > 0:
        regs["entropy"] = (cfg.entropy_weight, lambda s, traj: entropy_bonus(s, traj, process.mask_id))
    judge_dir = None if cfg.eval.judge == "none" else resolve_folder(cfg.eval.judge, "judge", must_exist=False)
    if judge_dir is not None:
        from .evaluate import check_judge

        check_judge(judge_dir, tok, length)

    def evaluate(s):
        from .evaluate import score_samples

        out = {}
        for k in cfg.eval.steps:
            x, stats = sample_ids(s, cfg.eval.n_samples, k, seed=0, length=length)
            out[f"nfe_{k}"] = stats.nfe
            if judge_dir is not None:
                out.update({f"{m}_{k}": v for m, v in score_samples(x, judge_dir).items()})
        return out

    def save_texts(s, path):
        k = cfg.eval.steps[0]
        x, _ = sample_ids(s, 16, k, seed=0, length=length)
        write_texts(tok.batch_decode(x), Path(path).with_suffix(".txt"), f"{k}-step student samples")

    obj = DiscreteDistillation(
        process=process, student=student, rollout=student_rollout, estimator=estimator,
        time_sampler=build_named(proc.TIME_SAMPLERS, cfg.time_sampler, "time_sampler"), real=real,
        discriminator=disc, corruptions=1, coupled_time=cfg.coupled_time,
        time_weight=inverse_t_weight() if cfg.time_weight == "inverse_t" else None, regularisers=regs,
        reuse_rollouts=cfg.reuse_rollouts,
        evaluate=evaluate, save_pictures=save_texts)
    obj.teacher, obj.tokenizer, obj.guidance = teacher, tok, guidance
    obj.eval_steps, obj.length = cfg.eval.steps, length
    obj.export = lambda s, run: export_student(s, disc, tok, Path(run))
    return obj


def real_pool(cfg: TextConfig, teacher, tok, length: int) -> torch.Tensor:
    """The discriminator's real side: corpus blocks, or teacher samples drawn once (data-free)."""
    if cfg.real == "corpus":
        return corpus_blocks(cfg.corpus, tok, length, "train")
    start = time.perf_counter()
    pool, stats = sample_ids(teacher, cfg.teacher_pool, cfg.teacher_pool_steps, seed=12345, length=length)
    log.info("teacher pool: %d samples at %d steps (%.1f NFE) in %.1f s", len(pool), cfg.teacher_pool_steps,
             stats.nfe, time.perf_counter() - start)
    return pool


def export_student(student, disc: TokenDiscriminator, tok, run: Path) -> Path:
    """run/student/ (a masked diffusion LM folder, loadable as a teacher) and run/discriminator.safetensors
    (for the reward-guided sampler)."""
    from safetensors.torch import save_file

    folder = save_masked_lm(student, tok, run / "student")
    state = {k: v.detach().contiguous().clone() for k, v in disc.state_dict().items()}
    tmp = run / "discriminator.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(run / "discriminator.safetensors")
    return folder
