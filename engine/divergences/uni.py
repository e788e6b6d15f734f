"""Uni-Instruct (Wang et al. 2025): the diffusion expansion of an f-divergence,
U_t(theta) = E_{x_t ~ q_t}[ h(r) ||s_p - s_q||^2 ], h(r) = r^2 f''(r), r = p_t / q_t.

Tractable loss (networks and ratio estimator frozen, x_t and x0 live; y = s_p - s_psi, g = -eps/sigma):
  h(r) y . (s_psi - g) + 1/2 (h(r) - r h'(r)) ||y||^2,
whose gradient is dU_t/dtheta / 2 (checked by quadrature in tests/test_divergence_parity.py).
For f = rkl (h = 1) it is SiD with alpha = 1/2. Our derivation; see docs/methods.md.

`form: released` is the base term of the released Uni-Instruct code instead (a-little-hoof/Uni_Instruct,
fsim_training/fsim_loss.py): SiD with alpha = 1 and SiD's per-example normalisation, whatever f. Its per-example f
weight is built from the batch-mean BCE value and is about 1 for forward KL, and its GAN term is the engine's
`distill.adversarial` (weight 0.01 there); neither is part of this form. It needs no discriminator.
"""
from __future__ import annotations

import torch

from ..config import OptionError
from .base import DIVERGENCES, WEIGHTINGS, Critics, Divergence, per_element, per_example, score_terms
from .fdiv import F_FUNCTIONS
from .score import SiD

FORMS = ("expanded", "released")


@DIVERGENCES.register("uni")
class UniInstruct(Divergence):
    needs = frozenset({"fake", "ratio"})

    def __init__(self, f: str = "fkl", weighting: str | None = None, log_ratio_clip: float = 10.0,
                 form: str = "expanded"):
        if not log_ratio_clip > 0:
            raise OptionError("log_ratio_clip", f"must be > 0, got {log_ratio_clip}")
        if form not in FORMS:
            raise OptionError("form", f"must be one of {', '.join(FORMS)}, got {form!r}")
        self.fn = F_FUNCTIONS.get(f)
        self.form = form
        if form == "released":
            self.needs = frozenset({"fake"})
            self.released = SiD(alpha=1.0, weighting=weighting or "sid")
        self.weighting = WEIGHTINGS.get(weighting or "sigma4")
        self.clip = log_ratio_clip

    def loss(self, x0, t, eps, critics: Critics):
        if self.form == "released":
            return self.released.loss(x0, t, eps, critics)
        s = score_terms(x0, t, eps, critics)
        y = s.a * (s.d_p - s.d_q) / s.b**2  # s_p - s_psi
        l = critics.log_ratio(s.x_t, t).clamp(-self.clip, self.clip)
        h, rh = self.fn.h(l), self.fn.dh(l)
        per = h * per_element(y * (s.s_q + eps / s.b), t) + 0.5 * (h - rh) * per_element(y**2, t)
        with torch.no_grad():
            w = self.weighting(t, critics.process, x0.detach(), s.d_p.detach())
        return per_example(w * per)
