"""Rewards on the toy mixture and the exact RLHF optimum they tilt it to (MATH.md, "Reward-tilted optimum").

For p = sum_k pi_k N(m_k, s_k^2 I) and p*(x) ~ p(x) exp(r(x)/beta):
  linear    r = w.x                     N(m_k + s_k^2 w / beta, s_k^2 I),  pi*_k ~ pi_k Z_k,
            log Z_k = w.m_k / beta + s_k^2 |w|^2 / (2 beta^2);
  quadratic r = -(lam/2) |x - c|^2      precision 1/s_k^2 + lam/beta, mean s*_k^2 (m_k / s_k^2 + (lam/beta) c),
            Z_k = (2 pi beta/lam)^(d/2) N(m_k; c, (s_k^2 + beta/lam) I);
  inside    r = 1[|x - c| < radius]      binary and not differentiable (no closed-form tilt).
p* is again an isotropic mixture, so its diffused denoiser is exact at every noise level (DIDR's proxy: exact),
and KL(p* || p) = E_p*[r] / beta - log Z with Z = sum_k pi_k Z_k."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from unidistill.engine.registry import Registry

from .mixture import GaussianMixture


def _vector(name: str, value, dim: int) -> Tensor:
    v = torch.as_tensor(value, dtype=torch.float64)
    if v.shape != (dim,) or not bool(torch.isfinite(v).all()):
        raise ValueError(f"reward option {name} must be {dim} finite numbers (the mixture's dimension), got {value!r}")
    return v


def rewards_for(mixture: GaussianMixture) -> Registry:
    """The rewards a toy config may name in distill.reward, their vectors checked against the mixture's dim."""
    d = mixture.dim
    rewards = Registry("toy reward")

    @rewards.register("linear")
    def linear(w: list[float]) -> Callable[[Tensor], Tensor]:
        """r = w.x: pushes mass along w (means shift by s^2 w / beta, weights re-tilt toward w)."""
        wv = _vector("w", w, d)
        return lambda x: x @ wv.to(x)

    @rewards.register("quadratic")
    def quadratic(lam: float = 1.0, c: list[float] | None = None) -> Callable[[Tensor], Tensor]:
        """r = -(lam/2) |x - c|^2: pulls mass toward c (each mode narrows and moves toward c)."""
        if not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"reward option lam must be a finite number > 0, got {lam!r}")
        cv = _vector("c", [0.0] * d if c is None else c, d)
        return lambda x: -0.5 * lam * ((x - cv.to(x)) ** 2).sum(-1)

    @rewards.register("inside")
    def inside(center: list[float], radius: float = 1.0) -> Callable[[Tensor], Tensor]:
        """r = 1 if |x - center| < radius else 0: a binary reward with no gradient (surrogate, reinforce)."""
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"reward option radius must be a finite number > 0, got {radius!r}")
        cv = _vector("center", center, d)
        return lambda x: ((x.detach() - cv.to(x)).norm(dim=-1) < radius).to(x.dtype)

    return rewards


def tilt(mixture: GaussianMixture, section: dict, beta: float) -> tuple[GaussianMixture, float] | None:
    """(p*, log Z) for the reward `section` ({name, options}) at temperature beta; None without a closed form."""
    name = section.get("name")
    mu, pi, s2 = mixture.means, mixture.weights, mixture.stds**2
    d = mixture.dim
    if name == "linear":
        w = _vector("w", section["w"], d)
        means = mu + s2[:, None] * w / beta
        log_z = mu @ w / beta + s2 * (w @ w) / (2 * beta**2)
        var = s2
    elif name == "quadratic":
        lam = float(section.get("lam", 1.0))
        c = _vector("c", section.get("c") or [0.0] * d, d)
        k = lam / beta
        var = 1.0 / (1.0 / s2 + k)
        means = var[:, None] * (mu / s2[:, None] + k * c)
        v = s2 + 1.0 / k
        log_z = (0.5 * d * math.log(2 * math.pi / k) - 0.5 * d * torch.log(2 * math.pi * v)
                 - 0.5 * ((mu - c) ** 2).sum(-1) / v)
    else:
        return None
    log_w = pi.log() + log_z
    total = torch.logsumexp(log_w, 0)
    return GaussianMixture(means, (log_w - total).exp(), var.sqrt()), float(total)


def expected_reward(mixture: GaussianMixture, section: dict) -> float:
    """E_mixture[r] in closed form for the linear and quadratic rewards."""
    mu, pi, s2 = mixture.means, mixture.weights, mixture.stds**2
    if section["name"] == "linear":
        return float(pi @ (mu @ _vector("w", section["w"], mixture.dim)))
    lam = float(section.get("lam", 1.0))
    c = _vector("c", section.get("c") or [0.0] * mixture.dim, mixture.dim)
    return float(-0.5 * lam * (pi @ (((mu - c) ** 2).sum(-1) + mixture.dim * s2)))


def optimum(mixture: GaussianMixture, section: dict, beta: float) -> dict | None:
    """The RLHF optimum's facts: p*, its mean reward, KL(p* || p) = E*[r]/beta - log Z, and the objective
    J* = E*[r] - beta KL = beta log Z (the largest E_q[r] - beta KL(q || p) of any q)."""
    found = tilt(mixture, section, beta)
    if found is None:
        return None
    star, log_z = found
    r = expected_reward(star, section)
    return {"mixture": star, "reward": r, "kl": r / beta - log_z, "objective": beta * log_z}
