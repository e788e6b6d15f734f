"""`unidistill distill` for MAR: MARVAL (Gu et al. 2026). The student (generators.OneStepMAR) reveals every token
of an image over K iterations, each token in one head step from its own noise; the engine's divergence is applied
per token (one time per token, `time_shape = (L,)`), against the guided teacher's score for that token's context
(`Teacher.condition`: each token sees the tokens revealed before its iteration, read from the sample itself), with
a fake score (a trainable copy of the teacher's head) trained on the student's tokens: GSIM is `sim`. The
Distilled-Decoding-style baseline (`baseline: dd`) regresses the teacher's DDIM output from the same noise;
MARVAL-RL adds the classifier reward through the engine's alignment, back-propagated through the K iterations
(`generator.context_grad`)."""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch
from torch import Tensor

from unidistill.engine.config import ConfigError
from unidistill.engine.distill import ContinuousDistillation, ContinuousParts, build_continuous
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.registry import Registry
from unidistill.engine.teach import prediction_weight

from .config import MarConfig
from .generators import Latent
from .io import draw_student, student_of, teacher_model
from .model import MAR, Cond, FakeHead, HeadTeacher, Teacher
from .sampler import reverse_chain
from .schedule import random_orders
from .tokens import unpatchify


@functools.cache
def _classifier():
    from unidistill.modalities.shared.digits_classifier import load_classifier

    return load_classifier().requires_grad_(False)


def class_log_prob(tokens: Tensor, labels: Tensor) -> Tensor:
    """log p(label | image) (B,) under the shipped digits classifier (loaded once), of the image the tokens tile."""
    clf = _classifier().to(tokens.device)
    return clf.log_prob(unpatchify(tokens, round(tokens.shape[-1] ** 0.5)).clamp(-1, 1), labels)


def classifier_reward():
    """The `classifier` reward: class_log_prob of the student's tokens for the classes of its latents."""

    def reward(x0: Tensor, latent: Latent) -> Tensor:
        return class_log_prob(x0, latent.labels)

    return reward


def teacher_of(cfg: MarConfig, model: MAR) -> Teacher:
    t = cfg.teacher
    if t.exact:
        from .exact import KernelMixture
        from .teach import digits_tokens

        denoiser = KernelMixture(*digits_tokens(model.patch), t.s0, model.process)
    else:
        denoiser = HeadTeacher(model.head, model.process)
    return Teacher(model.transformer, denoiser, t.guidance, t.cfg_schedule)


def ddim_regression(teacher: Teacher, steps: int):
    """The DD-style baseline as a regulariser: ||x0 - DDIM_teacher(noise)||^2 per token, summed over tokens, where
    the target is the guided teacher's deterministic chain from the same noise on the same contexts."""
    process = teacher.denoiser.process

    def regulariser(x0: Tensor, z: Tensor, cond: Cond, generator) -> tuple[Tensor, dict[str, Tensor]]:
        b, length, d = x0.shape
        with torch.no_grad():
            def eps_fn(x, t):
                xs, ts = x.reshape(b, length, d), t.reshape(b, length)
                den = teacher(xs, ts, cond)
                a, s = process.alpha(ts)[..., None], process.sigma(ts)[..., None]
                return ((xs - a * den) / s).reshape(-1, d)

            target = reverse_chain(eps_fn, z.reshape(-1, d), process, steps, eta=0.0).reshape(x0.shape)
        loss = (x0 - target).pow(2).sum((1, 2))
        return loss, {"dd_mse": loss.detach().mean() / length}

    return regulariser


def build_distill(cfg: MarConfig, run_dir: Path) -> ContinuousDistillation:
    model = teacher_model(cfg)
    generator = student_of(cfg, model)
    teacher = teacher_of(cfg, model)
    process, length, dim, k = model.process, model.length, model.token_dim, cfg.generator.iters
    divergence = (cfg.distill.divergence or {}).get("name")
    if cfg.baseline.name == "dd" and divergence != "none":
        raise ConfigError("config key baseline: 'dd' regresses the teacher's DDIM output on its own; set "
                          "distill.divergence.name: none")
    if cfg.generator.context_grad and divergence != "none":
        raise ConfigError(f"config key generator.context_grad: {divergence!r} matches each token with its context "
                          "held fixed, so its gradient must not run through the context; use context_grad with "
                          "distill.divergence.name: none (reward back-propagation, MARVAL-RL)")

    def latents(noise, n: int, progress) -> tuple[Tensor, Latent]:
        labels = noise.randint(model.classes, n)
        order = noise.draw(lambda m, g: random_orders(m, length, g), n)
        z = noise.randn(n, length, dim)
        return z, Latent(labels.to(z.device), order.to(z.device), k)

    rewards = Registry("reward")
    rewards.register("classifier")(classifier_reward)
    parts = ContinuousParts(
        process=process, teacher=teacher, generator=generator, latents=latents,
        fake=lambda: FakeHead(copy.deepcopy(model.head).requires_grad_(True), process),
        fake_weight=prediction_weight(process, "eps"), rewards=rewards, condition=teacher.condition,
        time_shape=(length,), regulariser=ddim_regression(teacher, cfg.baseline.steps) if cfg.baseline.name == "dd"
        else None)
    return build_continuous(cfg.distill, parts, outputs_of(cfg, model))


def outputs_of(cfg: MarConfig, model: MAR) -> Outputs:
    from .evaluate import balanced_labels, image_metrics, timed
    from .pictures import save_digits, save_unmasking

    e = cfg.eval

    def evaluate(generator) -> dict[str, float]:
        labels = balanced_labels(e.n_samples)
        with torch.no_grad():
            tokens, timing = timed(lambda watch: draw_student(generator.eval(), labels, e.iters, 0, watch), len(labels))
        reward = class_log_prob(tokens, labels.to(tokens.device))
        return {**image_metrics(tokens, labels, model.patch), "classifier_log_prob": float(reward.mean()), **timing}

    def save_samples(generator, run_dir: Path, step: int) -> list[Path]:
        labels = balanced_labels(100)
        order = random_orders(100, model.length, torch.Generator().manual_seed(1))
        with torch.no_grad():
            tokens = draw_student(generator.eval(), labels, e.iters, 1, order=order)
        grid = save_digits(tokens, model.patch, sample_path(run_dir, step, ".png"))
        steps = save_unmasking(tokens[:10], order[:10], e.iters, model.patch,
                               sample_path(run_dir, step, "_unmasking.png"))
        return [grid, steps]

    return Outputs(evaluate=evaluate, save_samples=save_samples)
