"""f-divergences D_f(p_t || q_t) = E_q f(r), r = p_t / q_t (f-distill, Xu et al. 2025).

Their gradient is the IKL gradient reweighted by h(r) = r^2 f''(r) (Xu et al. 2025, Thm. 1):
d/dtheta D_f = E[h(r) (s_q - s_p)(x_t) . dx_t/dtheta], with r and the scores at stop-gradient.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import OptionError
from ..registry import Registry
from .base import DIVERGENCES, WEIGHTINGS, Critics, Divergence, pathwise

LOG2 = math.log(2.0)
F_FUNCTIONS: Registry[FFunction] = Registry("f-divergence")


@dataclass(frozen=True)
class FFunction:
    """A convex f with f(1) = 0, its derivative f', h(r) = r^2 f''(r) and dh/dlog r = r h'(r),
    each written as a function of l = log r for numerical range."""

    f: Callable[[Tensor], Tensor]
    f_prime: Callable[[Tensor], Tensor]
    h: Callable[[Tensor], Tensor]
    dh: Callable[[Tensor], Tensor]


def _add(name, f, f_prime, h, dh):
    F_FUNCTIONS.register(name)(FFunction(f, f_prime, h, dh))


# each lambda takes l = log r
_add("rkl", lambda l: -l, lambda l: -torch.exp(-l), lambda l: torch.ones_like(l), torch.zeros_like)  # KL(q||p)
_add("fkl", lambda l: l * torch.exp(l), lambda l: l + 1, torch.exp, torch.exp)  # KL(p || q)
_add(  # Jensen-Shannon
    "js",
    lambda l: torch.exp(l) * l - (1 + torch.exp(l)) * (torch.nn.functional.softplus(l) - LOG2),
    lambda l: l - torch.nn.functional.softplus(l) + LOG2,
    torch.sigmoid,
    lambda l: torch.sigmoid(l) * torch.sigmoid(-l),
)
_add(  # softened reverse KL: f = (r + 1) log((r + 1) / (2 r))
    "srkl",
    lambda l: (torch.exp(l) + 1) * (torch.nn.functional.softplus(-l) - LOG2),
    lambda l: torch.nn.functional.softplus(-l) - LOG2 - torch.exp(-l),
    lambda l: torch.sigmoid(-l),
    lambda l: -torch.sigmoid(l) * torch.sigmoid(-l),
)
_add(  # Neyman chi^2: f = (r - 1)^2 / r
    "neyman_chi2",
    lambda l: (torch.exp(l) - 1) ** 2 * torch.exp(-l),
    lambda l: 1 - torch.exp(-2 * l),
    lambda l: 2 * torch.exp(-l),
    lambda l: -2 * torch.exp(-l),
)
_add(  # squared Hellinger: f = (sqrt(r) - 1)^2
    "hellinger",
    lambda l: (torch.exp(l / 2) - 1) ** 2,
    lambda l: 1 - torch.exp(-l / 2),
    lambda l: 0.5 * torch.exp(l / 2),
    lambda l: 0.25 * torch.exp(l / 2),
)
_add(  # Jeffreys = KL(p||q) + KL(q||p): f = (r - 1) log r
    "jeffreys",
    lambda l: (torch.exp(l) - 1) * l,
    lambda l: l + 1 - torch.exp(-l),
    lambda l: 1 + torch.exp(l),
    torch.exp,
)


@DIVERGENCES.register("fdiv")
class FDivergence(Divergence):
    """Pathwise f-divergence gradient: the integral-KL surrogate with weight h(r) (see base.pathwise)."""

    needs = frozenset({"fake", "ratio"})

    def __init__(self, f: str = "fkl", weighting: str = "sigma2", log_ratio_clip: float = 10.0,
                 normalise_h: bool = False):
        if not log_ratio_clip > 0:
            raise OptionError("log_ratio_clip", f"must be > 0, got {log_ratio_clip}")
        self.name = f
        self.fn = F_FUNCTIONS.get(f)
        self.weighting = WEIGHTINGS.get(weighting)
        self.clip = log_ratio_clip
        self.normalise_h = normalise_h  # divide h by its batch mean (f-distill's variance reduction)

    def loss(self, x0, t, eps, critics: Critics):
        def h(x_t, t):
            h = self.fn.h(critics.log_ratio(x_t, t).clamp(-self.clip, self.clip))
            return h / h.mean().clamp_min(1e-8) if self.normalise_h else h

        return pathwise(x0, t, eps, critics, self.weighting, h)
