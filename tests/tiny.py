"""A tiny continuous objective for trainer tests: a 2-D Gaussian teacher (exact denoiser),
a linear generator and a small MLP fake score."""
from __future__ import annotations

import torch
from torch import nn

from unidistill.engine.distill import ContinuousDistillation
from unidistill.engine.divergences import DIVERGENCES
from unidistill.engine.objective import Outputs
from unidistill.engine.process import VEProcess, bcast, lognormal


class GaussianTeacher(nn.Module):
    """Exact E[x0 | x_t] for x0 ~ N(mu, s^2 I) under any Gaussian process."""

    def __init__(self, mu=(1.0, -0.5), s=0.5):
        super().__init__()
        self.register_buffer("mu", torch.tensor(mu))
        self.s2 = s**2
        self.process = VEProcess(0.01, 20.0)

    def forward(self, x_t, t, cond=None):
        a, b = bcast(self.process.alpha(t), x_t), bcast(self.process.sigma(t), x_t)
        return self.mu + a * self.s2 / (a**2 * self.s2 + b**2) * (x_t - a * self.mu)


class LinearGenerator(nn.Linear):
    def __init__(self, dim=2):
        super().__init__(dim, dim)

    def forward(self, z, cond=None):
        return super().forward(z)


class TinyFake(nn.Module):
    def __init__(self, dim=2, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x_t, t, cond=None):
        c_in = 1 / torch.sqrt(t**2 + 1)[:, None]
        return x_t * (1 / (t**2 + 1))[:, None] + self.net(torch.cat([x_t * c_in, torch.log(t)[:, None] / 4], 1))


def make_objective(divergence="ikl", seed=0, **div_kwargs):
    torch.manual_seed(seed)
    teacher = GaussianTeacher()
    generator = LinearGenerator()
    fake = TinyFake()
    return ContinuousDistillation(
        process=teacher.process, teacher=teacher, generator=generator,
        latents=lambda noise, n, progress: (noise.randn(n, 2), None),
        divergence=DIVERGENCES.get(divergence)(**div_kwargs), time_sampler=lognormal(),
        fake=fake,
        outputs=Outputs(evaluate=lambda g: {"mean_err": float((g(torch.randn(512, 2), None).mean(0) - teacher.mu)
                                                              .norm())}),
    )
