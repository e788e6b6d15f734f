"""`unidistill distill` for images: a few-step student copied from a diffusers teacher, the teacher's copy
as the fake score, a conv discriminator, teacher-sample or digits real sides and the image rewards, with
the engine's recipe around them."""
from __future__ import annotations

from pathlib import Path

import torch

from unidistill.engine.config import ConfigError
from unidistill.engine.distill import ContinuousDistillation, ContinuousParts, build_continuous, edm_weight
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.registry import Registry
from unidistill.modalities.shared.denoiser import feature_layer
from unidistill.modalities.shared.pictures import save_grid
from unidistill.modalities.shared.sampling import sample_teacher
from unidistill.modalities.shared.student import draw_student, make_student, trainable_copy
from unidistill.modalities.shared.teacher import Teacher

from .config import ImageConfig
from .io import is_digits, load_image_teacher, save_student
from .nets import ImageDiscriminator
from .rewards import classifier_log_prob, contrast, loop


def build_distill(cfg: ImageConfig, run_dir: Path) -> ContinuousDistillation:
    teacher = load_image_teacher(cfg.teacher, cfg.guidance_scale, cfg.prompts)
    den = teacher.denoiser
    try:
        generator = make_student(den, cfg.student_sigmas)
    except ValueError as e:
        raise ConfigError(f"config key student_sigmas: {e}") from None
    sigma_data = den.param.sigma_data if den.param.family == "edm" else 0.5
    k, shape, n_conds = generator.n_steps, teacher.shape, den.num_conds

    def latents(noise, n, progress):
        c = noise.randint(n_conds, n) if n_conds else None
        return noise.randn(n, k, *shape), c

    def discriminator(width: int = 64):
        return ImageDiscriminator(shape[0], den.process, sigma_data, width, n_conds)

    real = {"teacher": lambda: _pool_source(teacher, cfg.real_pool, Path(run_dir) / "teacher_pool.safetensors")}
    if is_digits(teacher):
        real["data"] = _digits_source
    else:  # said at the start, not discovered in an empty metrics.json after training
        print(f"note: digits-FID and class accuracy score 8x8 digits of 10 classes; this teacher makes "
              f"{teacher.shape} samples with {den.num_conds} conditions, so evaluation logs no metrics", flush=True)
    parts = ContinuousParts(process=den.process, teacher=den, generator=generator, latents=latents,
                            fake=lambda: trainable_copy(den), fake_weight=edm_weight(sigma_data),
                            discriminator=discriminator, real=real, rewards=_rewards(teacher),
                            fake_features=feature_layer)

    def evaluate(g):
        if not is_digits(teacher):
            return {}
        from unidistill.modalities.shared.digits_eval import shipped_evaluator

        return shipped_evaluator()(*draw_student(g, cfg.eval.n_samples, shape, n_conds))

    def save_samples(g, run, step):
        x, _ = draw_student(g, 100, shape, n_conds)
        return [save_grid(teacher.decode(x), sample_path(run, step, ".png"), nrow=10)]

    outputs = Outputs(evaluate=evaluate, save_samples=save_samples,
                      export=lambda g, run: save_student(g, teacher, run / "student"))  # a OneStepPipeline folder
    return build_continuous(cfg.distill, parts, outputs)


def _rewards(teacher: Teacher) -> Registry:
    """The rewards a config may name in distill.reward, checked against this teacher."""
    rewards = Registry("image reward")
    den = teacher.denoiser

    @rewards.register("classifier")
    def classifier():
        """log p(c | x0) under the shipped digits classifier."""
        if not is_digits(teacher):
            raise ValueError(f"'classifier' scores 8x8 digits of 10 classes; this teacher makes {teacher.shape} "
                             f"samples with {den.num_conds} conditions")
        return classifier_log_prob()

    rewards.register("contrast")(contrast)
    rewards.register("loop")(loop)
    return rewards


def _digits_source():
    """The digits train split as the real side, classes as conditions."""
    from unidistill.modalities.shared.digits import load_digits

    x, y = load_digits("train")

    def real(noise, n):
        i = noise.randint(len(x), n).cpu()
        return x[i].to(noise.device), y[i].to(noise.device)

    return real


def _pool_source(teacher: Teacher, n: int, cache: Path):
    """A pool of n teacher samples (data-free real side), drawn once and cached in the run directory."""
    x, y = teacher_pool(teacher, n, cache)

    def real(noise, m):
        i = noise.randint(len(x), m).cpu()
        return x[i].to(noise.device), (y[i].to(noise.device) if y is not None else None)

    return real


def teacher_pool(teacher: Teacher, n: int, cache: Path, steps: int = 18) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n teacher samples (18 Heun steps, the teacher's guidance), cached in the run directory."""
    from safetensors.torch import load_file, save_file

    if cache.is_file():
        saved = load_file(cache)
        if saved["x"].shape[0] == n:
            return saved["x"], saved.get("y")
    n_conds = teacher.denoiser.num_conds
    y = torch.arange(n) % n_conds if n_conds else None
    x = sample_teacher(teacher.denoiser, n, steps, y, generator=torch.Generator().manual_seed(1234),
                       progress=f"teacher pool ({steps} Heun steps)")
    tmp = cache.with_name(cache.name + ".tmp")
    save_file({"x": x.contiguous(), **({"y": y} if y is not None else {})}, tmp)
    tmp.replace(cache)
    return x, y
