"""Deterministic probability-flow ODE sampling for any Gaussian process and any denoiser
D(x_t, t) ~ E[x0 | x_t] (Karras et al. 2022, Alg. 1 without churn); shared by every continuous
modality's teacher baselines and few-step students."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .process import GaussianProcess, VEProcess, karras_sigmas

Denoiser = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, ...), t (B,)) -> D(x_t, t) (B, ...)
ODE_METHODS = ("euler", "heun")


def sigma_hat(process: GaussianProcess, t: Tensor) -> Tensor:
    """EDM noise level of the scaled variable x_t / alpha(t): sigma_hat = sigma(t) / alpha(t)."""
    return process.sigma(t) / process.alpha(t)


def t_of_sigma_hat(process: GaussianProcess, s: Tensor) -> Tensor:
    """Invert the increasing map t -> sigma(t) / alpha(t) on [t_min, t_max] by 60 bisection steps
    (vectorised, float64; clamped to the ends); for VE it is the identity t = sigma."""
    out = s.dtype if isinstance(s, Tensor) and s.is_floating_point() else torch.float64
    s64 = torch.as_tensor(s, dtype=torch.float64)
    if isinstance(process, VEProcess):
        return s64.clamp(process.t_min, process.t_max).to(out)
    s_ends = sigma_hat(process, torch.tensor([process.t_min, process.t_max], dtype=torch.float64))
    if not s_ends[0] < s_ends[1]:
        raise ValueError(f"{type(process).__name__}: sigma/alpha must increase on [t_min, t_max]")
    lo = torch.full_like(s64, process.t_min)
    hi = torch.full_like(s64, process.t_max)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = sigma_hat(process, mid) < s64
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (0.5 * (lo + hi)).to(out)


def _check_ode(n_steps: int, method: str) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of: {', '.join(ODE_METHODS)}")


def ode_nfe(n_steps: int, method: str = "heun") -> int:
    """Denoiser calls made by sample_ode: 2 n_steps - 1 for heun, n_steps for euler."""
    _check_ode(n_steps, method)
    return n_steps if method == "euler" else 2 * n_steps - 1


def sample_ode(denoiser: Denoiser, process: GaussianProcess, n_steps: int, n: int, shape: int | Sequence[int],
               generator: torch.Generator | None = None, method: str = "heun", *,
               rho: float = 7.0, grid: str = "karras", dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
    """Deterministic probability-flow ODE (Karras et al. 2022, Alg. 1 without churn) for any
    Gaussian process, in the scaled variable x_hat = x / alpha with sigma_hat = sigma / alpha:
    d x_hat / d sigma_hat = (x_hat - D(alpha x_hat, t)) / sigma_hat.

    Starts from the standard prior x_T = sigma(T) z (dropping the alpha(T)^2 Var[x0] term), i.e.
    x_hat = sigma_hat(T) z; steps along the Karras grid of n_steps sigma_hats from sigma_hat(t_max)
    to sigma_hat(t_min) (t recovered by t_of_sigma_hat; grid="uniform_t" spaces the native times
    evenly instead, the usual grid of flow-matching samplers), then jumps to x0 = D(x, t_min). Euler or
    Heun steps; n_steps = 1 is the single jump x0 = D(x_T, T). NFE = ode_nfe(n_steps, method).
    Returns x0 (n, *shape) in dtype; differentiable if the denoiser is (sample under torch.no_grad()).
    """
    _check_ode(n_steps, method)
    ends = torch.tensor([process.t_min, process.t_max], dtype=torch.float64)
    if grid == "karras":
        s_min, s_max = sigma_hat(process, ends).tolist()
        sigmas = karras_sigmas(n_steps, s_min, s_max, rho).tolist()
        times = t_of_sigma_hat(process, torch.tensor(sigmas, dtype=torch.float64))
    elif grid == "uniform_t":
        times = torch.linspace(process.t_max, process.t_min, n_steps, dtype=torch.float64)
        sigmas = sigma_hat(process, times).tolist()
    else:
        raise ValueError(f"unknown ODE grid {grid!r}; choose one of: karras, uniform_t")
    alphas = process.alpha(times).tolist()

    def d_hat(x_hat: Tensor, i: int) -> Tensor:
        """D in the scaled variable: E[x0 | x_t = alpha_i x_hat] at t_i."""
        t = torch.full((n,), times[i].item(), dtype=dtype, device=x_hat.device)
        return denoiser(alphas[i] * x_hat, t).to(dtype)

    z_device = device if generator is None else generator.device  # draw where the generator lives
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    x = sigmas[0] * torch.randn(n, *shape, generator=generator, dtype=dtype, device=z_device).to(device)
    for i in range(n_steps - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        slope = (x - d_hat(x, i)) / s
        x_next = x + (s_next - s) * slope
        if method == "heun":
            slope_next = (x_next - d_hat(x_next, i + 1)) / s_next
            x_next = x + (s_next - s) * 0.5 * (slope + slope_next)
        x = x_next
    return d_hat(x, n_steps - 1)
