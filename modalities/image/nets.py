"""A time- and class-conditioned density-ratio discriminator for images (f-distill, Uni-Instruct):
logit(x_t, t, c) ~ log p_teacher,t(x_t | c) / p_student,t(x_t | c)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from unidistill.engine.nn import TimestepEmbedding
from unidistill.engine.process import GaussianProcess


class ImageDiscriminator(nn.Module):
    """Conv net on x_t / sqrt(sigma^2 + alpha^2 sigma_data^2) (EDM's c_in) with FiLM by the noise
    level ln(sigma/alpha)/4 and a projection class term (Miyato & Koyama 2018). Output (B,)."""

    def __init__(self, channels: int, process: GaussianProcess, sigma_data: float, width: int = 64,
                 num_conds: int = 0):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"discriminator width must be an integer >= 1, got {width!r}")
        self.process, self.sigma_data = process, sigma_data
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.time = TimestepEmbedding(2 * width)
        self.block1 = nn.Conv2d(width, width, 3, padding=1)
        self.block2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.block3 = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.film = nn.Linear(2 * width, 2 * width)
        self.head = nn.Linear(2 * width, 1)
        self.embed = nn.Embedding(num_conds + 1, 2 * width) if num_conds else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(self, x_t: Tensor, t: Tensor, c: Tensor | None = None) -> Tensor:
        a, s = self.process.alpha(t), self.process.sigma(t)
        scale = (s**2 + a**2 * self.sigma_data**2).rsqrt().reshape(-1, 1, 1, 1)
        emb = self.time(0.25 * torch.log(s / a) * 1000)  # c_noise, spread out for the sinusoidal features
        h = nn.functional.silu(self.inp(x_t * scale))
        h = nn.functional.silu(self.block1(h))
        h = nn.functional.silu(self.block2(h))
        h = h * (1 + self.film(emb)[:, :, None, None])
        h = nn.functional.silu(self.block3(h)).mean(dim=(2, 3))
        out = self.head(h).squeeze(1)
        if self.embed is not None and c is not None:
            out = out + (self.embed(c) * h).sum(1)
        return out
