"""Integral KL (Diff-Instruct, Luo et al. 2023; DMD, Yin et al. 2024): gradient through x0 only."""
from __future__ import annotations

from .base import DIVERGENCES, WEIGHTINGS, Critics, Divergence, pathwise


@DIVERGENCES.register("ikl")
class IntegralKL(Divergence):
    """d/dtheta KL(q_t || p_t) = E[(s_q - s_p)(x_t) . dx_t/dtheta]; surrogate sum(sg[w a (s_q - s_p)] x0)."""

    needs = frozenset({"fake"})

    def __init__(self, weighting: str = "sigma2"):
        self.weighting = WEIGHTINGS.get(weighting)

    def loss(self, x0, t, eps, critics: Critics):
        return pathwise(x0, t, eps, critics, self.weighting)
