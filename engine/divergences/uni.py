"""Uni-Instruct (Wang et al. 2025): the diffusion expansion of an f-divergence,
U_t(theta) = E_{x_t ~ q_t}[ h(r) ||s_p - s_q||^2 ], h(r) = r^2 f''(r), r = p_t / q_t.

Tractable loss (networks and ratio estimator frozen, x_t and x0 live; y = s_p - s_psi, g = -eps/sigma):
  h(r) y . (s_psi - g) + 1/2 (h(r) - r h'(r)) ||y||^2,
whose gradient is dU_t/dtheta / 2 (checked by quadrature in tests/test_divergence_parity.py).
For f = rkl (h = 1) it is SiD with alpha = 1/2. Our derivation; see docs/methods.md.
"""
from __future__ import annotations

import torch

from ..config import OptionError
from .base import DIVERGENCES, WEIGHTINGS, Critics, Divergence, per_element, per_example, score_terms
from .fdiv import F_FUNCTIONS


@DIVERGENCES.register("uni")
class UniInstruct(Divergence):
    needs = frozenset({"fake", "ratio"})

    def __init__(self, f: str = "fkl", weighting: str = "sigma4", log_ratio_clip: float = 10.0):
        if not log_ratio_clip > 0:
            raise OptionError("log_ratio_clip", f"must be > 0, got {log_ratio_clip}")
        self.fn = F_FUNCTIONS.get(f)
        self.weighting = WEIGHTINGS.get(weighting)
        self.clip = log_ratio_clip

    def loss(self, x0, t, eps, critics: Critics):
        s = score_terms(x0, t, eps, critics)
        y = s.a * (s.d_p - s.d_q) / s.b**2  # s_p - s_psi
        l = critics.log_ratio(s.x_t, t).clamp(-self.clip, self.clip)
        h, rh = self.fn.h(l), self.fn.dh(l)
        per = h * per_element(y * (s.s_q + eps / s.b), t) + 0.5 * (h - rh) * per_element(y**2, t)
        with torch.no_grad():
            w = self.weighting(t, critics.process, x0.detach(), s.d_p.detach())
        return per_example(w * per)
