"""`unidistill distill` for PDEs (Phys-Instruct): a few-step student copied from the teacher, the teacher's
copy as the fake score, the PDE residual as the reward `residual` (training-time guidance), and the
engine's recipe around them."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.config import ConfigError
from unidistill.engine.distill import ContinuousDistillation, ContinuousParts, build_continuous, edm_weight
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.registry import Registry
from unidistill.modalities.shared.student import make_student, trainable_copy

from .config import PDEConfig
from .evaluate import student_metrics
from .guidance import ResidualReward
from .io import load_pde_teacher, sample_student, save_student
from .plots import plot_samples


def build_distill(cfg: PDEConfig, run_dir: Path) -> ContinuousDistillation:
    teacher = load_pde_teacher(cfg.teacher)
    den = teacher.denoiser
    try:
        generator = make_student(den, cfg.student_sigmas)
    except ValueError as e:
        raise ConfigError(f"config key student_sigmas: {e}") from None
    k, shape = generator.n_steps, teacher.shape
    rewards = Registry("PDE reward")

    @rewards.register("residual")
    def residual(through: str = "solution"):
        """-(relative residual)^2 of the generated field (Phys-Instruct's guidance)."""
        return ResidualReward(teacher, through)

    parts = ContinuousParts(process=den.process, teacher=den, generator=generator,
                            latents=lambda noise, n, progress: (noise.randn(n, k, *shape), None),
                            fake=lambda: trainable_copy(den), fake_weight=edm_weight(den.param.sigma_data),
                            rewards=rewards)
    outputs = Outputs(
        evaluate=lambda g: student_metrics(teacher, g, cfg.eval.n_samples),
        save_samples=lambda g, run, step: [plot_samples(teacher, sample_student(g, teacher, 4),
                                                        sample_path(run, step, ".png"))],
        export=lambda g, run: save_student(g, teacher, cfg.student_sigmas, run / "student"))
    return build_continuous(cfg.distill, parts, outputs)
