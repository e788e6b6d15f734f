"""The exact teacher and three small MLPs (generator, fake score, discriminator) on 1-D samples (B, 1)."""
from __future__ import annotations

import torch
from torch import nn

from unidistill.engine.process import GaussianProcess, bcast


class Teacher(nn.Module):
    """The exact denoiser E[x0 | x_t] of x0 ~ N(mean, std^2) under any Gaussian process."""

    def __init__(self, mean: float, std: float, process: GaussianProcess):
        super().__init__()
        self.mean, self.var, self.process = mean, std**2, process

    def forward(self, x_t, t, c=None):
        a, b = bcast(self.process.alpha(t), x_t), bcast(self.process.sigma(t), x_t)
        return self.mean + a * self.var / (a**2 * self.var + b**2) * (x_t - a * self.mean)


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, d_out))


class Generator(nn.Module):
    """x0 = G(z): z (B, 1) -> x0 (B, 1)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.net = mlp(1, hidden, 1)

    def forward(self, z, c=None):
        return self.net(z)

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> torch.Tensor:
        z = torch.randn(n, 1, generator=torch.Generator().manual_seed(seed))
        return self(z.to(next(self.parameters()).device)).cpu()


class Critic(nn.Module):
    """An MLP of (x_t / sqrt(sigma^2 + alpha^2), log sigma): a fake denoiser (skip + MLP) or a logit."""

    def __init__(self, process: GaussianProcess, hidden: int, denoiser: bool):
        super().__init__()
        self.process, self.denoiser, self.net = process, denoiser, mlp(2, hidden, 1)

    def forward(self, x_t, t, c=None):
        a, b = bcast(self.process.alpha(t), x_t), bcast(self.process.sigma(t), x_t)
        u = torch.sqrt(b**2 + a**2)
        out = self.net(torch.cat([x_t / u, torch.log(b)], -1))
        return a * x_t / u**2 + b / u * out if self.denoiser else out.squeeze(-1)
