"""`unidistill distill` for the toy mixture: the exact teacher, a one-step MLP generator, MLP fake
score and discriminator factories, rewards with their exact tilted optimum, and the engine's recipe around them."""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from unidistill.engine import process as proc
from unidistill.engine.builders import build_named
from unidistill.engine.config import ConfigError
from unidistill.engine.distill import ContinuousDistillation, ContinuousParts, build_continuous, edm_weight
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.sampling import sample_ode

from .config import GMMConfig
from .evaluate import Evaluator
from .io import draw, generator_for, mixture_of
from .mixture import ExactTeacher
from .nets import MLPDenoiser, MLPDiscriminator
from .plots import plot_2d_samples
from .rewards import optimum, rewards_for, tilt


def build_distill(cfg: GMMConfig, run_dir: Path) -> ContinuousDistillation:
    if cfg.eval.n_samples // cfg.eval.draws < 2:
        raise ConfigError(f"config key eval.n_samples = {cfg.eval.n_samples} gives fewer than 2 samples to each of "
                          f"eval.draws = {cfg.eval.draws}; allowed: n_samples >= 2 * draws")
    mixture = mixture_of(cfg)
    process = build_named(proc.PROCESSES, cfg.process, "process")
    d = mixture.dim
    sigma_data = float(torch.sqrt(((mixture.means - mixture.means.T @ mixture.weights) ** 2).sum(1)
                                  @ mixture.weights / d + (mixture.weights * mixture.stds**2).sum()))
    teacher = ExactTeacher(mixture, process)
    generator = generator_for(cfg)
    latent = generator.latent_dim

    def fake(hidden: int = 256, depth: int = 3):
        return MLPDenoiser(d, process, sigma_data, hidden=hidden, depth=depth)

    def discriminator(hidden: int = 256, depth: int = 3):
        return MLPDiscriminator(d, process, sigma_data, hidden=hidden, depth=depth)

    def data():
        return lambda noise, n: (noise.draw(lambda m, g: mixture.sample(m, generator=g), n), None)

    def teacher_samples():  # data-free: the teacher's own 16-step ODE sampler
        return lambda noise, n: (noise.draw(lambda m, g: sample_ode(teacher, process, 16, m, d, generator=g), n), None)

    rewards = rewards_for(mixture)

    def exact_tilt(section, beta):
        found = tilt(mixture, section, beta)
        return None if found is None else ExactTeacher(found[0], process)

    ev = functools.cache(lambda: evaluator(cfg, mixture, rewards))  # after the recipe has checked beta and alpha

    def save_samples(g, run_dir, step):
        return [plot_2d_samples(ev().mixture, draw(g, 2000), sample_path(run_dir, step, ".png"))]  # p* for rewards

    parts = ContinuousParts(
        process=process, teacher=teacher, generator=generator,
        latents=lambda noise, n, progress: (noise.randn(n, latent), None),
        fake=fake, fake_weight=edm_weight(sigma_data), discriminator=discriminator,
        real={"data": data, "teacher": teacher_samples}, rewards=rewards, exact_tilt=exact_tilt,
        fake_features=lambda net: (net.net[-2], net.net[-1].in_features))  # the last hidden layer
    outputs = Outputs(evaluate=lambda g: ev()(draw(g, cfg.eval.n_samples)), save_samples=save_samples)
    return build_continuous(cfg.distill, parts, outputs)


def target_beta(cfg: GMMConfig) -> float | None:
    """The beta of the RLHF problem a reward run is measured against: eval.beta, else the alignment's beta (didr),
    else 1 / reward.alpha (DI++ and the others weigh -alpha * r against a divergence of weight 1)."""
    reward, alignment = cfg.distill.reward, cfg.distill.alignment or {}
    if reward is None:
        return None
    if cfg.eval.beta is not None:
        return cfg.eval.beta
    if "beta" in alignment or alignment.get("name") == "didr":
        return float(alignment.get("beta", 1.0))
    alpha = reward.get("alpha")
    return 1.0 / alpha if alpha else None


def evaluator(cfg: GMMConfig, mixture, rewards) -> Evaluator:
    """Metrics against the teacher, or, for a reward run, against its exact tilted optimum p* where there is one
    (with the mean reward and the KL to the teacher beside the optimum's)."""
    if cfg.distill.reward is None:
        return Evaluator(mixture, cfg.eval)
    section = {k: v for k, v in cfg.distill.reward.items() if k != "alpha"}
    reward = build_named(rewards, section, "distill.reward")
    beta = target_beta(cfg)
    best = optimum(mixture, section, beta) if beta is not None else None
    return Evaluator(mixture, cfg.eval, reward=reward, optimum=best)
