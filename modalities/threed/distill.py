"""`unidistill distill` for 3D: particles rendered from random cameras, distilled from the exact mixture-over-renders
teacher by the engine's divergences (SDS = `sds`, VSD = `ikl` with a fake score, Dive3D = `sim`), with the exact or
a learned fake score, the exact density ratio for f-divergences, and the opacity regularisers."""
from __future__ import annotations

from pathlib import Path

import torch

from unidistill.engine import process as proc
from unidistill.engine.builders import build_named
from unidistill.engine.config import ConfigError
from unidistill.engine.distill import ContinuousDistillation, ContinuousParts, build_continuous
from unidistill.engine.objective import Outputs

from .cameras import CameraRanges, cameras_from_uniform, check_ranges
from .config import ThreeDConfig, _prompts
from .evaluate import Evaluator
from .io import generator_for
from .nets import LoRAFake, ResidualFake
from .render import render_step_memory, resolution_at
from .scenes import prompt_weights, scene
from .teacher import ParticleMixture, RenderMixtureTeacher
from .views import View


def ranges_of(cfg: ThreeDConfig) -> CameraRanges:
    c = cfg.cameras
    ranges = CameraRanges(*(tuple(v) for v in (c.azimuth, c.elevation, c.distance, c.fovy)))
    try:
        check_ranges(ranges, c.object_radius)
    except ValueError as e:
        raise ConfigError(f"config key {e}" if str(e).startswith("cameras.") else f"config key cameras: {e}") from None
    return ranges


def sizes_of(cfg: ThreeDConfig) -> list[tuple[float, int]]:
    try:
        sizes = [(float(f), int(s)) for f, s in cfg.render.sizes]
        resolution_at(0.0, sizes)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key render.sizes: {e} (write [[fraction, size], ...])") from None
    return sizes


def teacher_of(cfg: ThreeDConfig, process, prompts: dict, n_samples: int, background) -> RenderMixtureTeacher:
    """The exact teacher of `prompts`; unknown scenes and empty prompts fail in one line."""
    try:
        names, weights = prompt_weights(prompts)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    t = cfg.teacher
    teacher = RenderMixtureTeacher([scene(s) for s in names], weights, process, s0=t.s0, bound=cfg.generator.bound,
                                   n_samples=n_samples, background=tuple(background), guidance=t.guidance,
                                   convention=t.convention, janus_front=t.janus_front, view_prompts=t.view_prompts)
    return teacher


def learned_teacher(cfg: ThreeDConfig, sizes) -> tuple:
    """(teacher, threed.json or None) from teacher.path: a 3D teacher folder (`unidistill teach`) or a text-
    conditioned diffusers pipeline folder (Stable Diffusion's shape). A folder that is neither, or whose image size
    or background differ from the renders', fails in one line."""
    from ..shared.folders import WeightsError
    from .diffusers_teacher import TextTeacher
    from .learned import SHIPPED, load_teacher

    path = SHIPPED if cfg.teacher.path == "shipped" else Path(cfg.teacher.path)
    t = cfg.teacher
    try:
        if (path / "threed.json").is_file() or not (path / "scheduler").is_dir():
            teacher, info = load_teacher(path, t.guidance, t.convention)
        else:
            teacher, info = TextTeacher(path, list(t.prompts), t.guidance, t.convention, t.view_prompts), None
    except (FileNotFoundError, WeightsError, ValueError) as e:
        raise ConfigError(f"config key teacher.path: {e}") from None
    wrong = sorted({s for _, s in sizes if s != teacher.size})
    if wrong:
        raise ConfigError(f"config key render.sizes: the teacher in {path} takes {teacher.size}x{teacher.size} "
                          f"renders; sizes {wrong} do not match")
    if info is not None and t.prompts not in (info["prompts"], _prompts()):
        raise ConfigError(f"config key teacher.prompts: the teacher in {path} knows the prompts "
                          f"{', '.join(map(repr, info['prompts']))} (with their scenes); remove teacher.prompts")
    if info is not None and [float(v) for v in info["background"]] != [float(v) for v in cfg.render.background]:
        raise ConfigError(f"config key render.background: the teacher in {path} was trained on background "
                          f"{info['background']}, not {cfg.render.background}")
    return teacher, info


def draw_views(noise, n: int, prompts: torch.Tensor, ranges: CameraRanges, stratified: bool, size: int) -> View:
    """Random cameras (rank-invariant: the whole batch is drawn, then sliced) for the given prompts."""
    def uniforms(m, g):
        u = torch.rand(m, 4, generator=g)
        if stratified:
            u[:, 0] = (torch.arange(m) + u[:, 0]) / m
        return u

    u = noise.draw(uniforms, n)
    return View(prompts, cameras_from_uniform(u, ranges), size)




def build_distill(cfg: ThreeDConfig, run_dir: Path) -> ContinuousDistillation:
    ranges, sizes = ranges_of(cfg), sizes_of(cfg)
    if len(cfg.render.background) != 3 or not all(0 <= v <= 1 for v in cfg.render.background):
        raise ConfigError(f"config key render.background must be 3 numbers in [0, 1], got {cfg.render.background}")
    if cfg.teacher.path is None:
        process = build_named(proc.PROCESSES, cfg.process, "process")
        truth = teacher_of(cfg, process, cfg.teacher.prompts, cfg.teacher.n_samples,
                                        cfg.render.background)
        teacher, prompts = truth, cfg.teacher.prompts
    else:  # a teacher folder fixes the schedule and the image size (a 3D teacher's also its prompts)
        teacher, info = learned_teacher(cfg, sizes)
        process = teacher.process
        prompts = info["prompts"] if info is not None else cfg.teacher.prompts
        truth = None  # the exact mixture is the metrics' reference where the prompts name scenes
        if all(prompts.values()):
            n_samples = info["n_samples"] if info is not None else cfg.teacher.n_samples
            truth = teacher_of(cfg, process, prompts, n_samples, cfg.render.background)
    generator = generator_for(cfg, len(prompts))
    amortised = cfg.generator.kind == "amortised"
    check_memory(cfg, sizes, prompts)
    learned = teacher is not truth
    if learned and teacher.conditioning is None:  # a text teacher: renders enter through its VAE
        generator.encode_with(teacher.encode)
    channels = 3 if not learned or teacher.conditioning is not None else teacher.denoiser.channels

    def latents(noise, n, progress):
        if amortised:
            prompt = noise.randint(len(prompts), n)
            view = draw_views(noise, n, prompt, ranges, cfg.cameras.stratified, resolution_at(progress.fraction, sizes))
            return noise.randn(n, cfg.generator.latent_dim), view
        total = len(generator)
        particle = noise.draw(lambda m, gen: (progress.step * m + torch.arange(m)) % total, n)
        view = draw_views(noise, n, generator.prompt_of(particle), ranges, cfg.cameras.stratified,
                          resolution_at(progress.fraction, sizes))
        view.particle = particle
        return particle, view

    def fake(exact: bool = True, hidden: int = 32, camera_dropout: float = 0.1, lora: int = 0):
        if exact:
            if amortised:
                raise ValueError("the exact fake is the mixture over particles; an amortised generator takes a "
                                 "learned fake (exact: false)")
            return ParticleMixture(lambda: generator, cfg.teacher.s0, process)
        if lora:
            if not learned:
                raise ValueError("lora needs a learned teacher (teacher.path); the exact teacher takes the residual "
                                 "fake (lora: 0)")
            return LoRAFake(teacher, lora, camera_dropout)
        return ResidualFake(teacher, process, len(prompts), hidden, camera_dropout, channels)

    def discriminator(exact: bool = True):
        if not exact:
            raise ValueError("only the exact density ratio is built for 3D (exact: true)")
        if learned or amortised:
            raise ValueError("the exact density ratio needs the exact teacher (no teacher.path) and particles")
        if teacher.guidance != 1.0 or cfg.teacher.convention != "uncond_first":
            raise ValueError("the exact density ratio needs an unguided teacher (teacher.guidance 1)")
        return ParticleMixture(lambda: generator, cfg.teacher.s0, process, teacher=teacher, ratio=True)

    def real_teacher():  # exact mixture samples (the discriminator's real side; exact teacher only)
        def draw(noise, n):
            index = noise.randint(len(prompts), n)
            view = draw_views(noise, n, index, ranges, False, sizes[0][1])
            u, eps = noise.rand(n), noise.randn(n, 3, view.size, view.size)
            return truth.sample(view, u, eps), view
        return draw

    reg = cfg.regularisers

    def regulariser(x0, z, view, gen):
        o = gen.last_opacity.clamp(1e-5, 1 - 1e-5)
        sparsity = torch.sqrt(o**2 + 0.01).flatten(1).mean(1)
        entropy = -(o * torch.log(o) + (1 - o) * torch.log(1 - o)).flatten(1).mean(1)
        return reg.sparsity * sparsity + reg.opacity_entropy * entropy, {
            "sparsity": sparsity.detach().mean(), "opacity_entropy": entropy.detach().mean()}

    def fake_weight(t, p):  # eps-prediction MSE: ||eps_psi - eps||^2 = (alpha / sigma)^2 ||D_psi - x0||^2
        return (p.alpha(t) / p.sigma(t)) ** 2

    evaluator = Evaluator(cfg, truth, list(prompts))
    real = {"teacher": real_teacher} if not learned else {}
    parts = ContinuousParts(
        process=process, teacher=teacher, generator=generator, latents=latents, fake=fake, fake_weight=fake_weight,
        discriminator=discriminator, real=real,
        regulariser=regulariser if reg.sparsity or reg.opacity_entropy else None)
    outputs = Outputs(evaluate=evaluator.metrics, save_samples=evaluator.save_samples, export=evaluator.export)
    return build_continuous(cfg.distill, parts, outputs)


def check_memory(cfg: ThreeDConfig, sizes, prompts: dict) -> None:
    """Refuse, before training, a render that cannot fit in the memory available: one batch row renders its
    particle and, with an exact fake, every particle of its prompt; a field's activations and the backward about
    triple the sample tensors (render_step_memory). The batch multiplies this: the estimate is a floor."""
    import os

    size = max(s for _, s in sizes)
    rows = cfg.generator.per_prompt if (cfg.distill.fake or {}).get("exact", True) else 1
    need = 3 * render_step_memory(rows, size, size, cfg.render.n_samples)
    g = cfg.generator
    if g.kind == "particles":  # the grids, their gradients and Adam's two moments, in float32
        need += 16 * len(prompts) * g.per_prompt * 4 * g.resolution**3
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return
    if need > avail:
        raise ConfigError(f"config key render.sizes: one batch row of {size}x{size} renders with "
                          f"{cfg.render.n_samples} samples per ray ({rows} render(s)) needs about {need / 2**30:.1f} "
                          f"GiB with the grids, more than the {avail / 2**30:.1f} GiB available; lower render.sizes, "
                          "render.n_samples, generator.resolution or generator.per_prompt")
