"""The student: a copy of the teacher's network used as a one-step or few-step generator."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .denoiser import DiffusersDenoiser


class StudentGenerator(nn.Module):
    """x = D_theta(sigma(t_1) z_1, t_1, c), then for k = 2..K: x = D_theta(alpha_k x + sigma_k z_k, t_k, c).

    K = 1 is the one-step generator of SiD / DMD / Diff-Instruct (x0 = D(sigma_init z, sigma_init));
    K > 1 re-noises each estimate to a lower level (the multi-step generator of DMD2 and consistency
    sampling), with gradients through every step. z (B, K, C, H, W); c (B,) or None."""

    def __init__(self, denoiser: DiffusersDenoiser, times: list[float]):
        super().__init__()
        if not times or any(b >= a for a, b in zip(times, times[1:])):
            raise ValueError(f"student times must be a non-empty decreasing list, got {times}")
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
