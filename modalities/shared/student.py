"""The student: a copy of the teacher's network used as a one-step or few-step generator."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from unidistill.engine.process import GaussianProcess

from .denoiser import DiffusersDenoiser, time_of_sigma


def student_times(process: GaussianProcess, sigmas: list[float]) -> list[float]:
    """Native times t_k of the student's EDM noise levels sigma_k = sigma(t_k)/alpha(t_k); they must decrease."""
    from unidistill.engine.sampling import sigma_hat

    if not sigmas:
        raise ValueError("student_sigmas must list at least one noise level")
    lo, hi = sigma_hat(process, torch.tensor([process.t_min, process.t_max], dtype=torch.float64)).tolist()
    outside = [s for s in sigmas if not lo * (1 - 1e-9) <= s <= hi * (1 + 1e-9)]
    if outside:
        raise ValueError(f"student_sigmas {outside} lie outside the teacher's noise levels [{lo:.4g}, {hi:.4g}]")
    times = [time_of_sigma(process, s) for s in sigmas]
    if any(b >= a for a, b in zip(times, times[1:])):
        raise ValueError(f"student_sigmas must decrease, got {list(sigmas)}")
    return times


def make_student(teacher: DiffusersDenoiser, sigmas: list[float]) -> StudentGenerator:
    """A trainable copy of the teacher's denoiser (without its guidance) stepping through noise levels `sigmas`."""
    times = student_times(teacher.process, sigmas)
    net = copy.deepcopy(teacher).requires_grad_(True).train()
    net.guidance_scale = 1.0
    return StudentGenerator(net, times)


def trainable_copy(teacher: DiffusersDenoiser) -> DiffusersDenoiser:
    """A fresh fake score: the teacher's network, trainable, without guidance."""
    net = copy.deepcopy(teacher).requires_grad_(True).train()
    net.guidance_scale = 1.0
    return net


class StudentGenerator(nn.Module):
    """x = D_theta(sigma(t_1) z_1, t_1, c), then for k = 2..K: x = D_theta(alpha_k x + sigma_k z_k, t_k, c).

    K = 1 is the one-step generator of SiD / DMD / Diff-Instruct (x0 = D(sigma_init z, sigma_init));
    K > 1 re-noises each estimate to a lower level (the multi-step generator of DMD2 and consistency
    sampling), with gradients through every step. z (B, K, C, H, W); c (B,) or None."""

    def __init__(self, denoiser: DiffusersDenoiser, times: list[float]):
        super().__init__()
        if not times or any(b >= a for a, b in zip(times, times[1:])):
            raise ValueError(f"student times must be a non-empty decreasing list, got {times}")  # see student_times
        self.denoiser = denoiser
        self.register_buffer("times", torch.tensor(times, dtype=torch.float32), persistent=False)
        t = torch.tensor(times, dtype=torch.float64)
        self._alphas = denoiser.process.alpha(t).tolist()  # x_t = alpha_k x + sigma_k z_k at each step
        self._sigmas = denoiser.process.sigma(t).tolist()

    @property
    def n_steps(self) -> int:
        return len(self.times)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        if z.ndim != 5 or z.shape[1] != self.n_steps:
            raise ValueError(f"student latents must be (B, {self.n_steps}, C, H, W), got {tuple(z.shape)}")
        x = None
        for k in range(self.n_steps):
            t = self.times[k].expand(z.shape[0])
            a, s = self._alphas[k], self._sigmas[k]
            x_t = s * z[:, k] if x is None else a * x + s * z[:, k]
            x = self.denoiser(x_t, t, c)
        return x


@torch.no_grad()
def draw_student(generator: StudentGenerator, n: int, shape: tuple[int, ...], num_conds: int = 0, seed: int = 0,
                 batch: int = 500) -> tuple[Tensor, Tensor | None]:
    """n model-space samples from fixed latents (seeded) with conditions 0, 1, ... cycling (None when
    unconditional); returns (x (n, *shape), c (n,) or None)."""
    g = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    c = torch.arange(n) % num_conds if num_conds else None
    out = []
    for lo in range(0, n, batch):
        m = min(batch, n - lo)
        z = torch.randn(m, generator.n_steps, *shape, generator=g).to(device)
        out.append(generator(z, None if c is None else c[lo:lo + m].to(device)).float().cpu())
    return torch.cat(out), c
