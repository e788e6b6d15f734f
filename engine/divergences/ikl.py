"""Integral KL (Diff-Instruct, Luo et al. 2023; DMD, Yin et al. 2024): gradient through x0 only; SDS
(DreamFusion, Poole et al. 2022) is its special case whose fake score is the injected noise."""
from __future__ import annotations

from dataclasses import replace

from .base import DIVERGENCES, WEIGHTINGS, Critics, Divergence, pathwise


@DIVERGENCES.register("ikl")
class IntegralKL(Divergence):
    """d/dtheta KL(q_t || p_t) = E[(s_q - s_p)(x_t) . dx_t/dtheta]; surrogate sum(sg[w a (s_q - s_p)] x0)."""

    needs = frozenset({"fake"})

    def __init__(self, weighting: str = "sigma2"):
        self.weighting = WEIGHTINGS.get(weighting)

    def loss(self, x0, t, eps, critics: Critics):
        return pathwise(x0, t, eps, critics, self.weighting)


@DIVERGENCES.register("sds")
class SDS(IntegralKL):
    """Score Distillation Sampling: integral KL of a Dirac student, whose diffused score at x_t is the injected
    noise's, s_q = -eps / sigma (D_q = x0), so no fake score is trained. Weighting `sds` gives DreamFusion's
    per-example x0-gradient (1 - abar)(eps_hat - eps); `uniform` and `fantasia3d` threestudio's others."""

    needs = frozenset()

    def __init__(self, weighting: str = "sds"):
        super().__init__(weighting)

    def loss(self, x0, t, eps, critics: Critics):
        dirac = x0.detach()
        return pathwise(x0, t, eps, replace(critics, fake=lambda x_t, s: dirac), self.weighting)
