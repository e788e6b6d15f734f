"""`unidistill distill` for PDEs (Phys-Instruct): a few-step student copied from the teacher, the teacher's
copy as the fake score, the PDE residual as the reward `residual` (training-time guidance), and the
engine's recipe around them. With a `condition:` section the student is conditioned on observations
(conditional.py) and answers forward and inverse problems in one pass."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unidistill.engine.config import ConfigError, to_dict
from unidistill.engine.distill import ContinuousDistillation, ContinuousParts, build_continuous, edm_weight
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.registry import Registry
from unidistill.modalities.shared.student import StudentGenerator, make_student, student_times, trainable_copy

from .config import ConditionConfig, PDEConfig
from .evaluate import conditional_metrics, student_metrics
from .guidance import ResidualReward
from .io import load_pde_teacher, sample_student, save_student
from .plots import plot_samples
from .teacher import PDETeacher


def build_distill(cfg: PDEConfig, run_dir: Path) -> ContinuousDistillation:
    teacher = load_pde_teacher(cfg.teacher)
    den = teacher.denoiser
    try:
        generator = make_student(den, cfg.student_sigmas) if cfg.condition is None else conditional_student(
            teacher, cfg.student_sigmas)
    except ValueError as e:
        raise ConfigError(f"config key student_sigmas: {e}") from None
    k, shape = generator.n_steps, teacher.shape
    rewards = Registry("PDE reward")

    @rewards.register("residual")
    def residual(through: str = "solution", norm: str = "residual"):
        """-(relative residual)^2 of the generated field (Phys-Instruct's guidance), in the plain or the
        solver-preconditioned norm (guidance.py)."""
        return ResidualReward(teacher, through, norm)

    parts = ContinuousParts(process=den.process, teacher=den, generator=generator,
                            latents=lambda noise, n, progress: (noise.randn(n, k, *shape), None),
                            fake=lambda: trainable_copy(den), fake_weight=edm_weight(den.param.sigma_data),
                            rewards=rewards)
    outputs = Outputs(
        evaluate=lambda g: student_metrics(teacher, g, cfg.eval.n_samples),
        save_samples=lambda g, run, step: [plot_samples(teacher, sample_student(g, teacher, 4),
                                                        sample_path(run, step, ".png"))],
        export=lambda g, run: save_student(g, teacher, cfg.student_sigmas, run / "student"))
    if cfg.condition is not None:
        outputs = condition_parts(cfg.condition, teacher, parts, cfg.student_sigmas)
    return build_continuous(cfg.distill, parts, outputs)


def conditional_student(teacher: PDETeacher, sigmas: list[float]) -> StudentGenerator:
    """The teacher's UNet widened to read encode(obs), stepping through `sigmas` with c = the observations."""
    from .conditional import ObservedDenoiser, widen

    times = student_times(teacher.denoiser.process, sigmas)
    return StudentGenerator(ObservedDenoiser(widen(teacher.denoiser, 2 * teacher.shape[0]), teacher), times)


def problem_fields(cond: ConditionConfig, teacher: PDETeacher, seed: int, n: int) -> np.ndarray:
    """Solver fields (n, C, N, N) the problems are drawn from: the dataset's train split, or fresh from `seed`."""
    from .data import generate, load_dataset

    if cond.data is None or seed != cond.seed:
        return generate(teacher.pde, teacher.shape[-1], n, seed)
    try:
        ds = load_dataset(cond.data)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"config key condition.data: {e}") from None
    if ds.meta.get("pde") != teacher.pde.name or tuple(ds.train.shape[1:]) != teacher.shape:
        raise ConfigError(f"config key condition.data: {cond.data} holds {ds.meta.get('pde')} fields "
                          f"{tuple(ds.train.shape[1:])}, the teacher needs {teacher.pde.name} {teacher.shape}")
    return ds.train[:n]


def condition_parts(cond: ConditionConfig, teacher: PDETeacher, parts: ContinuousParts,
                    sigmas: list[float]) -> Outputs:
    """Turn the parts of an unconditional run into those of the observation-conditioned student; its outputs."""
    from .conditional import ProblemSource, misfit
    from .inverse import make_problem

    k, shape = parts.generator.n_steps, teacher.shape
    source = ProblemSource(teacher, problem_fields(cond, teacher, cond.seed, cond.instances), cond.kinds,
                           cond.fraction)
    held = torch.from_numpy(problem_fields(cond, teacher, cond.seed + 1000, cond.eval_instances))
    eval_problems = {kind: (held, make_problem(teacher, held, kind, cond.fraction, seed=cond.seed + 1000))
                     for kind in cond.kinds}

    def regulariser(x0, z, c, generator):
        m = misfit(teacher, x0, c)
        return cond.obs_weight * m, {"misfit": m.detach().mean()}

    parts.latents = lambda noise, n, progress: (noise.randn(n, k, *shape), source(noise, n))
    # the teacher and the fake score are unconditional: they see the observations and ignore them
    parts.teacher = IgnoreCondition(parts.teacher)
    fake = parts.fake
    parts.fake = lambda: IgnoreCondition(fake())
    parts.regulariser = regulariser
    return Outputs(
        evaluate=lambda g: conditional_metrics(teacher, g, eval_problems),
        save_samples=lambda g, run, step: [plot_samples(
            teacher, g(torch.randn(4, k, *shape, generator=torch.Generator().manual_seed(0)),
                       _first(eval_problems[cond.kinds[0]][1], 4)), sample_path(run, step, ".png"))],
        export=lambda g, run: save_student(g, teacher, sigmas, run / "student", condition=to_dict(cond)))


class IgnoreCondition(torch.nn.Module):
    """D(x_t, t, c) = den(x_t, t): an unconditional denoiser where the engine passes the generator's condition."""

    def __init__(self, den):
        super().__init__()
        self.den = den

    def forward(self, x_t, t, c=None):
        return self.den(x_t, t)


def _first(obs, n: int):
    from .inverse import Observations

    return Observations(obs.mask[:n], obs.values[:n])
