"""Isotropic Gaussian mixtures whose means and weights vary per example, diffused in closed form.

x0 ~ sum_j pi_j N(mu_j, s0^2 I) and x_t = alpha x0 + sigma eps give p_t = sum_j pi_j N(alpha mu_j, v I) with
v = alpha^2 s0^2 + sigma^2, posterior weights gamma_j(x_t) proportional to pi_j N(x_t; alpha mu_j, v I), and
E[x0 | x_t] = sum_j gamma_j (mu_j + (alpha s0^2 / v)(x_t - alpha mu_j)). The 3D backend's teacher (a mixture over
renders of known scenes, per camera) and its exact fake (over the particles' renders) are such mixtures; so is a
kernel mixture over training examples."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _shapes(x_t: Tensor, means: Tensor, log_weights: Tensor, alpha: Tensor, sigma: Tensor, s0: float):
    """Per-example (B,) alpha and sigma broadcast against means (B, J, ...); v = alpha^2 s0^2 + sigma^2."""
    extra = (1,) * (means.ndim - 1)
    a, b = alpha.reshape(-1, *extra).to(x_t.dtype), sigma.reshape(-1, *extra).to(x_t.dtype)
    v = a**2 * s0**2 + b**2
    diff = x_t.unsqueeze(1) - a * means  # (B, J, ...)
    sq = diff.flatten(2).pow(2).sum(-1)  # (B, J)
    logits = log_weights - 0.5 * sq / v.flatten(1)
    return a, v, diff, logits


def posterior(x_t: Tensor, means: Tensor, log_weights: Tensor, alpha: Tensor, sigma: Tensor, s0: float) -> Tensor:
    """gamma_j(x_t) (B, J): which component x_t came from, given x_t (B, ...), means (B, J, ...), log pi (B, J)."""
    return torch.softmax(_shapes(x_t, means, log_weights, alpha, sigma, s0)[3], dim=1)


def denoise(x_t: Tensor, means: Tensor, log_weights: Tensor, alpha: Tensor, sigma: Tensor, s0: float) -> Tensor:
    """E[x0 | x_t] (B, ...) of the diffused mixture."""
    a, v, diff, logits = _shapes(x_t, means, log_weights, alpha, sigma, s0)
    gamma = torch.softmax(logits, dim=1).reshape(*logits.shape, *(1,) * (means.ndim - 2))
    return (gamma * (means + (a * s0**2 / v) * diff)).sum(1)


def log_density(x_t: Tensor, means: Tensor, log_weights: Tensor, alpha: Tensor, sigma: Tensor, s0: float) -> Tensor:
    """log p_t(x_t) (B,) of the diffused mixture (log_weights normalised or not: they are normalised here)."""
    a, v, diff, logits = _shapes(x_t, means, log_weights, alpha, sigma, s0)
    d = diff[0, 0].numel()
    norm = torch.logsumexp(log_weights, dim=1)
    return torch.logsumexp(logits, dim=1) - norm - 0.5 * d * torch.log(2 * math.pi * v.flatten())


def sample(means: Tensor, log_weights: Tensor, s0: float, u: Tensor, eps: Tensor) -> Tensor:
    """x0 (B, ...) from each example's mixture: the component whose cumulative weight first exceeds u (B,) in
    [0, 1), plus s0 eps (eps like x0; both drawn by the caller, so the draw follows the caller's generator)."""
    cdf = torch.softmax(log_weights.double(), 1).cumsum(1)
    j = (cdf < u.double()[:, None]).sum(1).clamp_max(means.shape[1] - 1)
    return means[torch.arange(means.shape[0], device=means.device), j] + s0 * eps.to(means)
