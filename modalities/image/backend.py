"""The image modality: distil a diffusers teacher (the shipped digits teachers, or any local
diffusers folder) into a one-step or few-step generator, and train teachers (`unidistill teach`)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from unidistill.engine import process as proc
from unidistill.engine.backend import BACKENDS
from unidistill.engine.builders import build_named
from unidistill.engine.config import ConfigError
from unidistill.engine.distill import ContinuousDistillation, edm_weight
from unidistill.engine.divergences import DIVERGENCES, RewardTerm

from .denoiser import time_of_sigma
from .generator import StudentGenerator
from .nets import ImageDiscriminator
from .pictures import save_grid
from .pipeline import save_student
from .pretrained import Teacher, load_teacher
from .rewards import REWARDS
from .sampling import sample_teacher
from .teach import TeachConfig, build_teach


@dataclass
class DiscriminatorConfig:
    width: int = 64  # channels of the first conv layers


@dataclass
class RewardConfig:
    name: str = "classifier"  # classifier (log p(class | x) under the shipped digits classifier) | contrast
    alpha: float = 0.01  # weight of -reward in the generator loss (DI++ / DI*)


@dataclass
class EvalConfig:
    n_samples: int = 1000  # samples for digits-FID / class accuracy (digits teachers only)


@dataclass
class ImageConfig:
    teacher: str = "digits"  # shipped: digits (EDM) | digits_flow (rectified flow); or a local diffusers folder
    guidance_scale: float = 1.0  # classifier-free guidance w in the teacher's denoiser (1 = none)
    prompts: list[str] | None = None  # text-conditioned teachers: the prompts to distil on
    student_sigmas: list[float] = field(default_factory=lambda: [2.5])  # EDM noise levels sigma/alpha per step
    divergence: dict[str, Any] = field(default_factory=lambda: {"name": "sim"})  # name + options
    time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "lognormal", "p_mean": -0.4, "p_std": 1.6})
    aux_time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "lognormal", "p_mean": -1.2,
                                                                      "p_std": 1.2})
    discriminator: DiscriminatorConfig | None = None  # density-ratio estimator (fdiv, uni)
    real: Literal["teacher", "data"] = "teacher"  # discriminator's real side: teacher samples (data-free) or digits
    real_pool: int = 2000  # teacher samples drawn once (18 Heun steps) as the data-free real side
    reward: RewardConfig | None = None  # DI++ / DI*: add -alpha * reward(x0, class)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ImageBackend:
    Config = ImageConfig
    TeachConfig = TeachConfig

    def teach(self, cfg: TeachConfig, out_dir: Path):
        return build_teach(cfg, out_dir)

    def build(self, cfg: ImageConfig, out_dir: Path) -> ContinuousDistillation:
        try:
            teacher = load_teacher(cfg.teacher, guidance_scale=cfg.guidance_scale, prompts=cfg.prompts)
        except (ValueError, FileNotFoundError, OSError) as e:
            raise ConfigError(f"config key teacher: {e}") from None
        den = teacher.denoiser
        process = den.process
        divergence = build_named(DIVERGENCES, cfg.divergence, "divergence")
        t_gen = build_named(proc.TIME_SAMPLERS, cfg.time_sampler, "time_sampler")
        t_aux = build_named(proc.TIME_SAMPLERS, cfg.aux_time_sampler, "aux_time_sampler")
        times = [time_of_sigma(process, s) for s in cfg.student_sigmas]
        if any(b >= a for a, b in zip(times, times[1:])):
            raise ConfigError(f"config key student_sigmas must decrease, got {cfg.student_sigmas}")
        student = copy.deepcopy(den).requires_grad_(True).train()
        student.guidance_scale = 1.0
        generator = StudentGenerator(student, times)
        fake = None
        if "fake" in divergence.needs:
            fake = copy.deepcopy(den).requires_grad_(True).train()  # fake score initialised from the teacher
            fake.guidance_scale = 1.0
        sigma_data = den.param.sigma_data if den.param.family == "edm" else 0.5
        disc = None
        if cfg.discriminator is not None:
            disc = ImageDiscriminator(teacher.shape[0], process, sigma_data, cfg.discriminator.width, den.num_conds)
        real = self._real(cfg, teacher, out_dir) if disc is not None else None
        reward = None
        if cfg.reward is not None:
            if cfg.reward.name == "classifier" and (teacher.shape != (1, 8, 8) or den.num_conds != 10):
                raise ConfigError("config key reward.name: 'classifier' scores 8x8 digits of 10 classes; this "
                                  f"teacher makes {teacher.shape} samples with {den.num_conds} conditions")
            reward = RewardTerm(build_named(REWARDS, cfg.reward.name, "reward"), cfg.reward.alpha)
        k, shape, n_conds = len(times), teacher.shape, den.num_conds

        def latents(noise, n):
            c = noise.randint(n_conds, n) if n_conds else None
            return noise.randn(n, k, *shape), c

        obj = ContinuousDistillation(
            process=process, teacher=den, generator=generator, latents=latents, divergence=divergence,
            time_sampler=t_gen, fake=fake, aux_time_sampler=t_aux, fake_weight=edm_weight(sigma_data),
            discriminator=disc, real=real, reward=reward,
            evaluate=lambda g: self._evaluate(teacher, g, cfg.eval.n_samples),
            save_pictures=lambda g, path: save_grid(teacher.decode(draw(g, 100, teacher)[0]), path, nrow=10))
        obj.teacher_info = teacher
        obj.export = lambda g, run: save_student(g, teacher, Path(run) / "student")  # diffusers OneStepPipeline
        return obj

    def _real(self, cfg: ImageConfig, teacher: Teacher, out_dir: Path):
        """(noise, n) -> (x, c): a pool of teacher samples (data-free) or the digits train split."""
        n_conds = teacher.denoiser.num_conds
        if cfg.real == "data":
            if teacher.shape != (1, 8, 8) or n_conds != 10:
                raise ConfigError("config key real: 'data' is only available for the digits teachers; use 'teacher'")
            from .digits import load_digits

            x, y = load_digits("train")
        else:
            x, y = teacher_pool(teacher, cfg.real_pool, Path(out_dir) / "teacher_pool.safetensors")

        def real(noise, n):
            i = noise.randint(len(x), n).cpu()
            return x[i].to(noise.device), (y[i].to(noise.device) if n_conds else None)

        return real

    def _evaluate(self, teacher: Teacher, generator, n: int) -> dict[str, float]:
        if teacher.shape != (1, 8, 8) or teacher.denoiser.num_conds != 10:
            return {}
        from .evaluate import shipped_evaluator

        x, c = draw(generator, n, teacher)
        return shipped_evaluator()(x, c)

    def sample(self, objective: ContinuousDistillation, generator, n: int) -> np.ndarray:
        x, _ = draw(generator, n, objective.teacher_info)
        return objective.teacher_info.decode(x).numpy()


@torch.no_grad()
def draw(generator: StudentGenerator, n: int, teacher: Teacher, seed: int = 0, batch: int = 500):
    """n student samples in model space with classes 0, 1, ... cycling (or None), from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    n_conds = teacher.denoiser.num_conds
    c = torch.arange(n) % n_conds if n_conds else None
    out = []
    for lo in range(0, n, batch):
        m = min(batch, n - lo)
        z = torch.randn(m, generator.n_steps, *teacher.shape, generator=g).to(device)
        out.append(generator(z, None if c is None else c[lo:lo + m].to(device)).float().cpu())
    return torch.cat(out), c


def teacher_pool(teacher: Teacher, n: int, cache: Path, steps: int = 18) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n teacher samples (18 Heun steps, the teacher's guidance), cached in the run directory."""
    from safetensors.torch import load_file, save_file

    if cache.is_file():
        saved = load_file(cache)
        if saved["x"].shape[0] == n:
            return saved["x"], saved.get("y")
    n_conds = teacher.denoiser.num_conds
    y = torch.arange(n) % n_conds if n_conds else None
    x = sample_teacher(teacher.denoiser, n, steps, y, generator=torch.Generator().manual_seed(1234))
    tmp = cache.with_name(cache.name + ".tmp")
    save_file({"x": x.contiguous(), **({"y": y} if y is not None else {})}, tmp)
    tmp.replace(cache)
    return x, y


BACKENDS.register("image")(ImageBackend())
