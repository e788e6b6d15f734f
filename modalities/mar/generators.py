"""MARVAL's student: the teacher's transformer (frozen, or trained with `train_transformer`) and a one-step (or
few-step) head started from the teacher's head, run through the same K unmasking iterations as the teacher.

The head's map from noise: x = eps is read as a point at the time t_1 whose sigma/alpha is sigmas[0], and each
step j forms D = (x - sigma_j eps_theta(x, t_j, z)) / alpha_j and moves deterministically to the next time with the
predicted noise, x = alpha_{j+1} D + sigma_{j+1} eps_theta (DDIM); the last D is the token. So at initialisation
the student is the teacher's head evaluated at few noise levels, as SiD starts its generator from the teacher."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .model import MAR
from .sampler import gather_tokens, unmask
from .schedule import check_iters


@dataclass
class Latent:
    """The student's condition: a class per sample (B,) and the order its tokens are revealed in (B, L)."""

    labels: Tensor
    order: Tensor
    iters: int


def times_of(process, sigmas: list[float]) -> list[float]:
    """The process times whose sigma/alpha are `sigmas` (bisection; they must lie inside the process's range)."""
    out = []
    lo_ratio = float(process.sigma(torch.tensor(process.t_min)) / process.alpha(torch.tensor(process.t_min)))
    hi_ratio = float(process.sigma(torch.tensor(process.t_max)) / process.alpha(torch.tensor(process.t_max)))
    for target in sigmas:
        if not lo_ratio <= target <= hi_ratio:
            raise ValueError(f"sigma {target} is outside the head's range [{lo_ratio:.3g}, {hi_ratio:.3g}]")
        lo, hi = process.t_min, process.t_max
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            t = torch.tensor(mid, dtype=torch.float64)
            lo, hi = (mid, hi) if float(process.sigma(t) / process.alpha(t)) < target else (lo, mid)
        out.append(0.5 * (lo + hi))
    return out


class OneStepMAR(nn.Module):
    """G(noise (B, L, d), Latent) -> tokens (B, L, d): K iterations of (transformer pass, few-step head on the
    tokens revealed). Without `context_grad` the tokens fed back as context carry no graph (GSIM holds each token's
    context fixed); with it the graph runs through every iteration (MARVAL-RL's reward back-propagation)."""

    def __init__(self, teacher: MAR, iters: int, sigmas: list[float], train_transformer: bool = False,
                 context_grad: bool = False):
        super().__init__()
        check_iters(iters, teacher.length)
        if not sigmas:
            raise ValueError("head sigmas must hold at least one value (one per head step)")
        if sorted(sigmas, reverse=True) != list(sigmas) or len(set(sigmas)) != len(sigmas):
            raise ValueError(f"head sigmas must decrease strictly, got {list(sigmas)}")
        self.transformer = copy.deepcopy(teacher.transformer)
        self.transformer.label.drop_prob = 0.0
        self.transformer.requires_grad_(train_transformer)
        self.head = copy.deepcopy(teacher.head).requires_grad_(True)
        self.process = teacher.process
        self.length, self.token_dim, self.patch = teacher.length, teacher.token_dim, teacher.patch
        self.iters, self.context_grad = iters, context_grad
        self.times = times_of(self.process, list(sigmas))

    def head_map(self, eps: Tensor, z: Tensor) -> Tensor:
        """Noise (N, d) and conditions (N, W) -> tokens (N, d) in len(times) head evaluations."""
        x = eps
        for j, t in enumerate(self.times):
            tt = torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)
            a, s = self.process.alpha(tt)[:, None], self.process.sigma(tt)[:, None]
            e = self.head(x, tt, z)
            d = (x - s * e) / a
            if j == len(self.times) - 1:
                return d
            nxt = torch.full_like(tt, self.times[j + 1])
            x = self.process.alpha(nxt)[:, None] * d + self.process.sigma(nxt)[:, None] * e
        return x

    def forward(self, noise: Tensor, latent: Latent, watch=None) -> Tensor:
        """Tokens revealed over latent.iters iterations (the K of training, `iters`, or any other in [1, L])."""
        from .sampler import _no_watch

        watch = watch or _no_watch
        labels, order = latent.labels, latent.order
        keep = torch.zeros_like(labels, dtype=torch.bool)

        def predict(tokens, visible, idx, k):
            b, n = idx.shape
            context = tokens if self.context_grad else tokens.detach()
            with watch("transformer", 1, noise.device):
                z = gather_tokens(self.transformer(context, visible, labels, drop=keep), idx)
            with watch("head", len(self.times) * b * n, noise.device):
                out = self.head_map(gather_tokens(noise, idx).reshape(b * n, -1), z.reshape(b * n, -1))
            return out.reshape(b, n, -1)

        return unmask(order, latent.iters, self.token_dim, predict, dtype=noise.dtype)
