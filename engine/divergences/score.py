"""Score / Fisher divergences (SiD, SIM, FGM): gradients flow through x_t into the networks.

F(theta) = E_{x_t ~ q_t} d(s_p(x_t) - s_q(x_t)). With y = s_p - s_psi and g = grad log q(x_t | x0)
= -eps / sigma, the loss  1/2 d'(y) . (s_psi - g) + (1 - alpha) d(y)  (network parameters frozen,
x_t and x0 live) has gradient Term1 / 2 + (1 - alpha) Term2 in the notation of MATH.md:
Term1 moves s_q with the samples frozen, Term2 moves the samples. For d = ||y||^2 it is SiD's
loss (Zhou et al. 2024) in score units; alpha = 1/2 gives dF/dtheta / 2, alpha = 1 SIM's
frozen-sampling gradient. A distance acts on each element's own axes (per_element).
"""
from __future__ import annotations

import torch

from ..config import OptionError
from ..process import bcast
from .base import DIVERGENCES, WEIGHTINGS, Critics, Divergence, per_element, per_example, score_terms


def l2(y, t):
    """d(y) = ||y||^2 and d'(y) = 2y."""
    return per_element(y**2, t), 2 * y


def pseudo_huber(c: float):
    """d(y) = sqrt(||y||^2 + c^2) - c (SIM, Luo et al. 2024), d'(y) = y / sqrt(||y||^2 + c^2)."""
    if not c > 0:
        raise OptionError("c", f"(pseudo-Huber) must be > 0, got {c}")

    def d(y, t):
        n = torch.sqrt(per_element(y**2, t) + c**2)
        return n - c, y / bcast(n, y)

    return d


class ScoreDivergence(Divergence):
    """Shared body of the score family; subclasses choose the distance d and alpha."""

    needs = frozenset({"fake"})

    def __init__(self, distance, alpha: float, weighting: str):
        self.distance = distance
        self.alpha = alpha
        self.weighting = WEIGHTINGS.get(weighting)

    def loss(self, x0, t, eps, critics: Critics):
        s = score_terms(x0, t, eps, critics)
        dist, d_prime = self.distance(s.s_p - s.s_q, t)
        per = 0.5 * per_element(d_prime * (s.s_q - s.g), t) + (1 - self.alpha) * dist
        with torch.no_grad():
            w = self.weighting(t, critics.process, x0.detach(), s.d_p.detach())
        return per_example(w * per)


@DIVERGENCES.register("sid")
class SiD(ScoreDivergence):
    """Score identity Distillation: d = L2, alpha = 1.2 by default (Zhou et al. 2024)."""

    def __init__(self, alpha: float = 1.2, weighting: str = "sid"):
        super().__init__(l2, alpha, weighting)


@DIVERGENCES.register("sim")
class SIM(ScoreDivergence):
    """Score Implicit Matching with pseudo-Huber d (Luo et al. 2024); alpha = 1 is the frozen-sampling
    gradient of MATH.md, alpha = 1/2 the full gradient of E d(s_p - s_q)."""

    def __init__(self, c: float = 1.0, alpha: float = 1.0, weighting: str = "sigma4"):
        super().__init__(pseudo_huber(c), alpha, weighting)


@DIVERGENCES.register("fgm")
class FGM(ScoreDivergence):
    """Flow Generator Matching (Huang et al. 2024): the full gradient of E||u_p - u_q||^2 (alpha = 0.5)."""

    def __init__(self, weighting: str = "velocity"):
        super().__init__(l2, 0.5, weighting)
