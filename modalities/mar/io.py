"""What MAR runs read and write: the teacher (a MAR folder or the shipped one), a tiny random teacher for smoke
runs, the student a distillation trains, and `unidistill sample` for it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unidistill.engine.backend import Drawn, Sampler
from unidistill.engine.config import ConfigError

from .config import MarConfig
from .model import MAR, load_mar, save_mar


def teacher_model(cfg: MarConfig) -> MAR:
    """The teacher of teacher.path; a folder that is not a MAR folder of 8x8 one-channel digits in 10 classes (what
    the evaluator, the reward and the exact teacher read) fails in one line."""
    try:
        model, info = load_mar(cfg.teacher.path)
    except KeyError as e:
        raise ConfigError(f"config key teacher.path: its mar.json lacks the key {e.args[0]!r}") from None
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise ConfigError(f"config key teacher.path: {e}") from None
    shape = (info["image"], info["channels"], info["classes"])
    if shape != (8, 1, 10):
        raise ConfigError(f"config key teacher.path: the teacher makes {shape[0]}x{shape[0]} images of {shape[1]} "
                          f"channels in {shape[2]} classes; this backend evaluates 8x8 one-channel digits in 10")
    return model.requires_grad_(False)


def check_student_iters(model: MAR, cfg: MarConfig) -> None:
    for key, k in (("generator.iters", cfg.generator.iters), ("eval.iters", cfg.eval.iters)):
        if not 1 <= k <= model.length:
            raise ConfigError(f"config key {key}: K = {k} iterations, but the teacher's images have {model.length} "
                              f"tokens ({model.patch}x{model.patch} patches); choose 1 .. {model.length}")


def student_of(cfg: MarConfig, model: MAR):
    from .generators import OneStepMAR

    check_student_iters(model, cfg)
    g = cfg.generator
    try:
        return OneStepMAR(model, g.iters, list(g.sigmas), g.train_transformer, g.context_grad)
    except ValueError as e:  # the iterations were checked above: what is left is the sigmas'
        raise ConfigError(f"config key generator.sigmas: {e}") from None


def draw_student(generator, labels: torch.Tensor, iters: int, seed: int, watch=None, order=None) -> torch.Tensor:
    """Tokens of the student for these labels: noise and orders from a generator seeded with `seed`."""
    from .generators import Latent
    from .schedule import random_orders

    g = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    n = len(labels)
    order = random_orders(n, generator.length, g) if order is None else order
    noise = torch.randn(n, generator.length, generator.token_dim, generator=g)
    return generator(noise.to(device), Latent(labels.to(device), order.to(device), iters), watch)


def sampler(cfg: MarConfig) -> Sampler:
    from .evaluate import balanced_labels
    from .tokens import unpatchify

    model = teacher_model(cfg)
    generator = student_of(cfg, model)

    def draw(gen, n: int, seed: int) -> Drawn:
        labels = balanced_labels(n)
        with torch.no_grad():
            tokens = draw_student(gen.eval(), labels, cfg.eval.iters, seed)
        images = unpatchify(tokens.float().cpu(), model.patch, model.channels).clamp(-1, 1).numpy()
        return Drawn(images, labels.numpy(), f"digits (N, 1, 8, 8) in [-1, 1] from {cfg.eval.iters} iterations")

    def pictures(values: np.ndarray) -> np.ndarray:
        return np.transpose((values + 1) / 2, (0, 2, 3, 1))

    return Sampler(generator, draw, images=pictures)


def tiny_teacher(workdir: Path, patch: int = 2, seed: int = 0) -> Path:
    """A MAR folder with tiny random networks (for smoke runs and tests), written once under workdir."""
    folder = Path(workdir) / f"tiny_mar_p{patch}"
    if not (folder / "mar.json").is_file():
        save_mar(tiny_model(patch, seed), folder)
    return folder


def tiny_model(patch: int = 2, seed: int = 0, std: float = 0.02) -> MAR:
    """A MAR of width 16 with one block each, its zero-initialised layers given N(0, std^2) values so outputs vary."""
    torch.manual_seed(seed)
    model = MAR(8, 1, patch, 10, {"width": 16, "depth": 1, "decoder_depth": 1, "heads": 2, "buffer": 2},
                {"width": 16, "depth": 1})
    for p in model.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=std)
    return model
