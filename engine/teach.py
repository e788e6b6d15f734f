"""Training a teacher: a denoiser D(x_t, t, c) fitted by weighted denoising score matching
(Vincent 2011; EDM loss, Karras et al. 2022 eq. 2) on data, with label dropout for
classifier-free guidance (Ho & Salimans 2022). The Trainer runs it like any Objective: the
network is the "generator" module, so EMA, checkpoints, logs and evaluation come for free."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .divergences.base import per_example
from .noise import Noise
from .objective import Objective, Outputs, Progress
from .process import GaussianProcess

Data = Callable[[Noise, int], tuple[Tensor, Tensor | None]]  # (noise, n) -> (x0, cond or None)


def prediction_weight(process: GaussianProcess, prediction: str) -> Callable[[Tensor, GaussianProcess], Tensor]:
    """lambda(t) that turns ||D - x0||^2 into the native loss of a prediction type:
    eps: alpha^2/sigma^2 (DDPM); v: 1/sigma^2 on VP; velocity: (alpha' - sigma' alpha/sigma)^2 (flow
    matching); x0: 1. (Each is |d pred / d D|^2 for the linear map from D to the prediction.)"""

    def w(t: Tensor, proc: GaussianProcess) -> Tensor:
        a, s = proc.alpha(t), proc.sigma(t)
        if prediction == "eps":
            return (a / s) ** 2
        if prediction == "v":  # v = alpha eps - sigma x0, so d v / d D = -(alpha^2 + sigma^2) / sigma
            return ((a**2 + s**2) / s) ** 2
        if prediction == "velocity":
            da, ds = proc.derivatives(t)
            return (da - ds * a / s) ** 2
        if prediction == "x0":
            return torch.ones_like(t)
        raise ValueError(f"unknown prediction {prediction!r}; choose one of: eps, v, velocity, x0")

    return w


class DenoisingObjective(Objective):
    """Per-example loss lambda(t) ||D(x_t, t, c') - x0||^2 with c' = null_cond at rate label_dropout."""

    name = "teach"

    def __init__(self, *, denoiser: nn.Module, process: GaussianProcess, data: Data, time_sampler: Callable,
                 weight: Callable[[Tensor, GaussianProcess], Tensor], label_dropout: float = 0.0,
                 null_cond: int | None = None, outputs: Outputs | None = None):
        super().__init__(outputs)
        if not 0 <= label_dropout < 1:
            raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
        if label_dropout > 0 and null_cond is None:
            raise ValueError("label_dropout needs a null condition (an unconditional class or prompt)")
        self.process, self.data, self.time_sampler, self.weight = process, data, time_sampler, weight
        self.label_dropout, self.null_cond = label_dropout, null_cond
        self.modules: dict[str, nn.Module] = {"generator": denoiser}

    def generator_loss(self, noise: Noise, n: int, progress: Progress) -> tuple[Tensor, dict[str, Tensor]]:
        x0, c = self.data(noise, n)
        t = noise.draw(lambda m, g: self.time_sampler(m, self.process, generator=g, progress=progress.fraction),
                       n).to(x0.device)
        eps = noise.randn(n, *x0.shape[1:]).to(x0)
        drop = noise.rand(n) < self.label_dropout
        if c is not None and self.label_dropout > 0:
            c = torch.where(drop.to(c.device), torch.full_like(c, self.null_cond), c)
        x_t = self.process.add_noise(x0, t, eps)
        d = self.modules["generator"](x_t, t, c)
        loss = self.weight(t, self.process) * per_example((d - x0) ** 2, mean=True)
        return loss, {"denoising_mse": per_example((d.detach() - x0) ** 2, mean=True).mean()}
