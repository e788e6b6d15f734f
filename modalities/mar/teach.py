"""`unidistill teach` for MAR: the transformer and the diffusion head trained together on the digits' tokens
(Li et al. 2024, sec. 3.3-3.4 and `models/mar.py`): a random order per sample, a mask ratio per sample from the
truncated normal on [mask_min, 1] (loc 1, scale 0.25; MAR draws one per batch, which correlates the gradient noise
of a batch), label dropout to the null class, and the head's eps loss on masked tokens only, each masked token
drawn `head_batch_mul` times at its own time. The EMA model is exported as a MAR folder (run/teacher)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from unidistill.engine.config import ConfigError
from unidistill.engine.noise import Noise
from unidistill.engine.objective import Objective, Outputs, Progress, sample_path

from .config import MarTeachConfig, SampleConfig
from .model import MAR, save_mar
from .schedule import random_orders
from .tokens import patchify


def mask_ratio(u: Tensor, lo: float, scale: float = 0.25) -> Tensor:
    """Inverse-CDF draws of the normal (loc 1, scale) truncated to [lo, 1], from uniforms u."""
    top = torch.special.ndtr(torch.tensor((1 - lo) / scale, dtype=torch.float64))
    return (1 - scale * torch.special.ndtri(0.5 + u.double() * (top - 0.5))).float()


class MARObjective(Objective):
    """The masked per-token diffusion loss of a MAR model (the "generator" module: EMA, checkpoints for free)."""

    name = "teach"

    def __init__(self, model: MAR, tokens: Tensor, labels: Tensor, mask_min: float, head_batch_mul: int,
                 outputs: Outputs | None = None):
        super().__init__(outputs)
        self.tokens, self.labels, self.mask_min, self.mul = tokens, labels, mask_min, head_batch_mul
        self.modules = {"generator": model}

    def generator_loss(self, noise: Noise, n: int, progress: Progress):
        model: MAR = self.modules["generator"]
        device = next(model.parameters()).device
        length, dim, mul = model.length, model.token_dim, self.mul
        pick = noise.randint(len(self.labels), n)
        x, y = self.tokens[pick].to(device), self.labels[pick].to(device)
        order = noise.draw(lambda m, g: random_orders(m, length, g), n).to(device)
        n_masked = torch.ceil(length * mask_ratio(noise.rand(n), self.mask_min)).long().clamp(1, length).to(device)
        rank = torch.argsort(order, dim=1)  # position of each token in its order; the first n_masked stay masked
        masked = rank < n_masked[:, None]
        drop = (noise.rand(n) < model.transformer.label.drop_prob).to(device)
        z = model.transformer(x, ~masked, y, drop=drop)  # (n, L, W)
        process = model.process
        t = noise.draw(lambda m, g: process.t_min + (process.t_max - process.t_min) * torch.rand(m, generator=g),
                       n * mul * length).reshape(n, mul, length).to(device)
        eps = noise.randn(n, mul, length, dim).to(device)
        a, s = process.alpha(t)[..., None], process.sigma(t)[..., None]
        x_t = a * x[:, None] + s * eps
        zz = z[:, None].expand(-1, mul, -1, -1)
        pred = model.head(x_t.reshape(-1, dim), t.reshape(-1), zz.reshape(-1, zz.shape[-1])).reshape(eps.shape)
        err = (pred - eps).pow(2).mean(-1)  # (n, mul, L)
        w = masked[:, None].float()
        loss = (err * w).sum((1, 2)) / (mul * w.sum((1, 2)))
        return loss, {"head_mse": loss.detach().mean()}


def digits_tokens(patch: int, split: str = "train") -> tuple[Tensor, Tensor]:
    from unidistill.modalities.shared.digits import load_digits

    x, y = load_digits(split)
    return patchify(x, patch), y


def sample_outputs(model_of, run_cfg: SampleConfig, patch: int, draw) -> tuple:
    """(evaluate, save_samples) for a model: draw(model, labels, seed, watch) -> tokens."""
    from .evaluate import balanced_labels, image_metrics, timed
    from .pictures import save_digits

    def evaluate(model) -> dict[str, float]:
        labels = balanced_labels(run_cfg.n_samples)
        with torch.no_grad():
            tokens, timing = timed(lambda watch: draw(model_of(model), labels, 0, watch), len(labels))
        return {**image_metrics(tokens, labels, patch), **timing}

    def save_samples(model, run_dir: Path, step: int) -> list[Path]:
        with torch.no_grad():
            tokens = draw(model_of(model), balanced_labels(100), 1, None)
        return [save_digits(tokens, patch, sample_path(run_dir, step, ".png"))]

    return evaluate, save_samples


def build_teach(cfg: MarTeachConfig, run_dir: Path) -> MARObjective:
    from dataclasses import asdict

    from .sampler import sample_mar
    from .tokens import check_patch

    try:
        check_patch(8, cfg.patch)
    except ValueError as e:
        raise ConfigError(f"config key patch: {e}") from None
    if cfg.eval.iters > (8 // cfg.patch) ** 2:
        raise ConfigError(f"config key eval.iters: K = {cfg.eval.iters} is more than the {(8 // cfg.patch) ** 2} "
                          f"tokens of {cfg.patch}x{cfg.patch} patches; choose 1 .. {(8 // cfg.patch) ** 2}")
    if cfg.transformer.width % cfg.transformer.heads:
        raise ConfigError(f"config key transformer.heads: width {cfg.transformer.width} is not divisible by "
                          f"{cfg.transformer.heads} heads")
    tokens, labels = digits_tokens(cfg.patch)
    model = MAR(8, 1, cfg.patch, 10, asdict(cfg.transformer), asdict(cfg.head))
    e = cfg.eval

    def draw(model, labels, seed, watch):
        g = torch.Generator().manual_seed(seed)
        device = next(model.parameters()).device
        return sample_mar(model, labels.to(device), e.iters, e.steps, e.guidance, e.cfg_schedule, e.temperature,
                          generator=g, watch=watch)

    evaluate, save_samples = sample_outputs(lambda m: m.eval(), e, cfg.patch, draw)

    def export(model, run: Path):
        return save_mar(model, Path(run) / "teacher", {"mask_min": cfg.mask_min, "trained_on": "digits train split"})

    outputs = Outputs(evaluate=evaluate, save_samples=save_samples, export=export)
    return MARObjective(model, tokens, labels, cfg.mask_min, cfg.head_batch_mul, outputs)
