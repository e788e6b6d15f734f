"""The PDE modality: train EDM teachers over joint fields (`unidistill teach`) and distil them into
Phys-Instruct few-step generators (`unidistill distill`): a divergence from the engine (integral KL by
default, SIM for comparison) plus the PDE-residual guidance term, used in training only."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unidistill.engine import process as proc
from unidistill.engine.backend import BACKENDS
from unidistill.engine.builders import build_named
from unidistill.engine.config import ConfigError
from unidistill.engine.distill import ContinuousDistillation, edm_weight
from unidistill.engine.divergences import DIVERGENCES, RewardTerm

from .evaluate import save_samples
from .guidance import ResidualReward
from .student import make_student, sample_student, save_student
from .teach import PDETeachConfig, build_teach
from .teacher import PDETeacher, load_teacher


@dataclass
class GuidanceConfig:
    weight: float = 1.0  # lambda: weight of the squared relative PDE residual in the generator loss
    through: str = "solution"  # solution (coefficient entries detached) | all (gradient into every channel)


@dataclass
class EvalConfig:
    n_samples: int = 256  # student samples whose relative residual and channel spread are logged


@dataclass
class PDEConfig:
    teacher: str = "darcy"  # shipped: darcy | poisson; or a PDE teacher folder (unet/, scheduler/, pde.json)
    student_sigmas: list[float] = field(default_factory=lambda: [5.0])  # EDM noise level of each student step
    divergence: dict[str, Any] = field(default_factory=lambda: {"name": "ikl", "weighting": "sigma2"})
    time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "karras", "n_grid": 64})
    aux_time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "lognormal", "p_mean": -0.6,
                                                                      "p_std": 1.4})
    guidance: GuidanceConfig | None = None  # Phys-Instruct's PDE guidance; None = plain distribution matching
    eval: EvalConfig = field(default_factory=EvalConfig)


class PDEBackend:
    Config = PDEConfig
    TeachConfig = PDETeachConfig

    def teach(self, cfg: PDETeachConfig, out_dir: Path):
        return build_teach(cfg, out_dir)

    def build(self, cfg: PDEConfig, out_dir: Path) -> ContinuousDistillation:
        try:
            teacher = load_teacher(cfg.teacher)
        except (ValueError, FileNotFoundError, OSError) as e:
            raise ConfigError(f"config key teacher: {e}") from None
        den = teacher.denoiser
        divergence = build_named(DIVERGENCES, cfg.divergence, "divergence")
        if "ratio" in divergence.needs:
            raise ConfigError(f"config key divergence: {cfg.divergence['name']!r} needs a discriminator, which the "
                              "PDE backend does not build; use ikl, sim, sid or fgm")
        try:
            generator = make_student(teacher, cfg.student_sigmas)
        except ValueError as e:
            raise ConfigError(f"config key student_sigmas: {e}") from None
        fake = None
        if "fake" in divergence.needs:
            import copy

            fake = copy.deepcopy(den).requires_grad_(True).train()  # fake score initialised from the teacher
        reward = None
        if cfg.guidance is not None:
            if cfg.guidance.weight < 0:
                raise ConfigError(f"config key guidance.weight: must be >= 0, got {cfg.guidance.weight}")
            try:
                reward = RewardTerm(ResidualReward(teacher, cfg.guidance.through), cfg.guidance.weight)
            except ValueError as e:
                raise ConfigError(f"config key guidance.through: {e}") from None
        k, shape = generator.n_steps, teacher.shape

        def latents(noise, n):
            return noise.randn(n, k, *shape), None

        obj = ContinuousDistillation(
            process=den.process, teacher=den, generator=generator, latents=latents, divergence=divergence,
            time_sampler=build_named(proc.TIME_SAMPLERS, cfg.time_sampler, "time_sampler"), fake=fake,
            aux_time_sampler=build_named(proc.TIME_SAMPLERS, cfg.aux_time_sampler, "aux_time_sampler"),
            fake_weight=edm_weight(den.param.sigma_data), reward=reward,
            evaluate=lambda g: student_metrics(teacher, g, cfg.eval.n_samples),
            save_pictures=lambda g, path: save_samples(teacher, sample_student(g, shape, 4), path))
        obj.teacher_info = teacher
        scheduler = {"_class_name": "EDMEulerScheduler", "sigma_min": den.process.t_min,
                     "sigma_max": den.process.t_max, "sigma_data": den.param.sigma_data,
                     "prediction_type": den.param.prediction}
        obj.export = lambda g, run: save_student(g, teacher, scheduler, cfg.student_sigmas, Path(run) / "student")
        return obj

    def sample(self, objective: ContinuousDistillation, generator, n: int) -> np.ndarray:
        """n samples (n, C, N, N) in physical units."""
        teacher: PDETeacher = objective.teacher_info
        x = sample_student(generator, teacher.shape, n)
        return teacher.norm.to_physical(x.double()).numpy()


def student_metrics(teacher: PDETeacher, generator, n: int) -> dict[str, float]:
    """Relative residual of n student samples, and each channel's spread against the data (1 = matched)."""
    x = sample_student(generator, teacher.shape, n).double()
    r = teacher.residual(x)
    out = {"relative_residual": float(r.mean()), "relative_residual_median": float(r.median())}
    for c, name in enumerate(teacher.pde.channels):  # model space has unit std per channel on the data
        out[f"std_{name}"] = float(x[:, c].std())
    return out


BACKENDS.register("pde")(PDEBackend())
