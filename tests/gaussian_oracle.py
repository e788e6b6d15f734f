"""Exact 1-D Gaussian teacher and linear-generator student, with Gauss-Hermite quadrature.

Teacher p0 = N(mu_p, s_p^2); student x0 = m + s z, so q0 = N(m, s^2). Diffused by any Gaussian
process, p_t = N(a mu_p, a^2 s_p^2 + b^2) and q_t likewise, so scores, denoisers and ratios are exact.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from unidistill.engine.divergences import Critics


def gauss_hermite(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights for E_{z ~ N(0,1)} g(z) ~ sum_i w_i g(z_i) (probabilists' Hermite)."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.tensor(x, dtype=torch.float64), torch.tensor(w / math.sqrt(2 * math.pi), dtype=torch.float64)


def normal_grid(n: int = 20001, half_width: float = 12.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense trapezoid rule for E_{z ~ N(0,1)} g(z): robust for the sharp scores of mixture teachers
    (exponentially accurate for smooth integrands that vanish at the ends)."""
    x = torch.linspace(-half_width, half_width, n, dtype=torch.float64)
    w = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi) * (x[1] - x[0])
    return x, w


def grid(n: int):
    """2-D product rule over (z, eps): flattened nodes z, eps (n^2,) and weights (n^2,)."""
    x, w = gauss_hermite(n)
    z, e = torch.meshgrid(x, x, indexing="ij")
    return z.reshape(-1), e.reshape(-1), (w[:, None] * w[None, :]).reshape(-1)


def denoiser(mean, var, a, b):
    """E[x0 | x_t] for x0 ~ N(mean, var), x_t = a x0 + b eps."""
    return lambda x_t: mean + a * var / (a**2 * var + b**2) * (x_t - a * mean)


def log_normal(x, mean, var):
    return -0.5 * (x - mean) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)


class GaussianCase:
    """theta = (m, s) as leaf tensors; critics evaluated at stop-gradient theta (the oracle).
    The teacher is N(mu_p, s_p^2), or a 1-D Gaussian mixture when `mixture` = [(w, mu, s), ...]
    (a non-Gaussian teacher exercises terms that average out under Gaussian scores)."""

    def __init__(self, process, t: float, mu_p=-0.2, s_p=1.0, m=0.4, s=1.1, mixture=None):
        self.process = process
        self.t = torch.tensor([t], dtype=torch.float64)
        self.a = process.alpha(self.t).item()
        self.b = process.sigma(self.t).item()
        comps = mixture or [(1.0, mu_p, s_p)]
        self.w = torch.tensor([c[0] for c in comps], dtype=torch.float64)
        self.mu = torch.tensor([c[1] for c in comps], dtype=torch.float64)
        self.var = torch.tensor([c[2] ** 2 for c in comps], dtype=torch.float64)
        self.mu_p, self.var_p = mu_p, s_p**2
        self.gaussian = mixture is None
        self.m = torch.tensor(m, dtype=torch.float64, requires_grad=True)
        self.s = torch.tensor(s, dtype=torch.float64, requires_grad=True)

    def params(self):
        return [self.m, self.s]

    def diffused(self, m, s):
        return self.a * m, self.a**2 * s**2 + self.b**2

    def teacher_logp(self, x):
        """log p_t(x) of the diffused teacher, x of any shape."""
        mk, vk = self.a * self.mu, self.a**2 * self.var + self.b**2
        return torch.logsumexp(torch.log(self.w) + log_normal(x[..., None], mk, vk), -1)

    def teacher_score(self, x):
        mk, vk = self.a * self.mu, self.a**2 * self.var + self.b**2
        resp = torch.softmax(torch.log(self.w) + log_normal(x[..., None], mk, vk), -1)
        return (resp * (-(x[..., None] - mk) / vk)).sum(-1)

    def critics(self) -> Critics:
        a, b = self.a, self.b
        m0, v0 = self.m.detach(), self.s.detach() ** 2
        d_q = denoiser(m0, v0, a, b)
        mq, vq = self.diffused(m0, v0.sqrt())

        def d_p(x, t):  # Tweedie: D = (x + b^2 s_p(x)) / a
            return (x + b**2 * self.teacher_score(x)) / a

        def log_ratio(x_t, t):
            return (self.teacher_logp(x_t) - log_normal(x_t, mq, vq)).reshape(-1)

        return Critics(self.process, teacher=d_p, fake=lambda x, t: d_q(x), log_ratio=log_ratio)

    def estimator_grad(self, divergence, n: int = 48):
        """Gradient of E_{z,eps}[loss] by quadrature over (z, eps); shape (B, 1) samples."""
        z, e, w = grid(n)
        x0 = (self.m + self.s * z).unsqueeze(1)
        t = self.t.expand(len(z))
        loss = divergence.loss(x0, t, e.unsqueeze(1), self.critics())
        return torch.autograd.grad((w * loss).sum(), self.params())

    # ---- exact objectives as functions of theta (autograd gives their gradients)
    def kl_qp(self):
        assert self.gaussian, "closed-form KL needs a Gaussian teacher; use f_div with rkl"
        mq, vq = self.diffused(self.m, self.s)
        mp, vp = self.mu_p * self.a, self.a**2 * self.var_p + self.b**2
        return 0.5 * (torch.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1)

    def f_div(self, fn):
        """D_f(p_t || q_t) = E_{q_t} f(p_t / q_t) by 1-D quadrature over q_t (reparameterised)."""
        x, w = normal_grid()
        mq, vq = self.diffused(self.m, self.s)
        xs = mq + vq.sqrt() * x
        lr = self.teacher_logp(xs) - log_normal(xs, mq, vq)
        return (w * fn.f(lr)).sum()

    def score_terms(self, distance):
        """(Term1, Term2) of MATH.md for F = E_{x ~ q_t} d(s_p - s_q): Term1 moves s_q, Term2 the samples."""
        x, w = normal_grid()
        m0 = self.m.detach().clone().requires_grad_(True)
        s0 = self.s.detach().clone().requires_grad_(True)
        mq, vq = self.diffused(self.m, self.s)  # sampling distribution (theta)
        mq0, vq0 = self.diffused(m0, s0)  # score function (theta0)
        xs = mq + vq.sqrt() * x
        y = self.teacher_score(xs) - (-(xs - mq0) / vq0)
        dist, _ = distance(y.unsqueeze(1), y)  # one element per sample: reduce over its one axis
        g = (w * dist).sum()
        term2 = torch.autograd.grad(g, self.params(), retain_graph=True)
        term1 = torch.autograd.grad(g, [m0, s0])
        return term1, term2


def expanded_f(case: GaussianCase, fn):
    """Uni-Instruct's integrand U_t = E_{q_t}[h(r) (s_p - s_q)^2], everything a function of theta."""
    x, w = normal_grid()
    mq, vq = case.diffused(case.m, case.s)
    xs = mq + vq.sqrt() * x
    lr = case.teacher_logp(xs) - log_normal(xs, mq, vq)
    y = case.teacher_score(xs) + (xs - mq) / vq
    return (w * fn.h(lr) * y**2).sum()
