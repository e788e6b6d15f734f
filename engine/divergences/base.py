"""The divergence seam: a short class per family, a registry of them, and the critics they query.

Times are one per example, t (B,), or one per element, t (B, L) with x (B, L, ...) (tokens diffused
at their own times). Per-example losses reduce first over each element's own axes (`per_element`),
are weighted per element, then summed over the elements (`per_example`); for t (B,) both are the one
reduction over every non-batch axis."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..process import GaussianProcess, bcast
from ..registry import Registry

DIVERGENCES: Registry[type] = Registry("divergence")
WEIGHTINGS: Registry[Callable] = Registry("weighting")

Denoiser = Callable[[Tensor, Tensor], Tensor]  # (x_t, t) -> D(x_t, t), conditions bound by the caller


@dataclass
class Critics:
    """What a continuous divergence may ask about a noisy point x_t at time t.

    teacher:   D_p(x_t, t), the teacher's denoiser (its score s_p follows by Tweedie).
    fake:      D_psi(x_t, t), the online estimate of the student's diffused denoiser.
    log_ratio: log r(x_t, t) = log p_t(x_t) / q_t(x_t), teacher over student.
    """

    process: GaussianProcess
    teacher: Denoiser
    fake: Denoiser | None = None
    log_ratio: Callable[[Tensor, Tensor], Tensor] | None = None


def per_element(x: Tensor, t: Tensor, mean: bool = False) -> Tensor:
    """Sum (or mean) of x over the axes beyond t's: (B, ...) -> t.shape."""
    dims = tuple(range(t.ndim, x.ndim))
    if not dims:
        return x
    return x.mean(dim=dims) if mean else x.sum(dim=dims)


def per_example(x: Tensor, mean: bool = False) -> Tensor:
    """Sum (or mean) over every axis but the batch axis: (B, ...) -> (B,)."""
    if x.ndim == 1:
        return x
    dims = tuple(range(1, x.ndim))
    return x.mean(dim=dims) if mean else x.sum(dim=dims)


class Divergence(ABC):
    """A generator objective. `loss` returns a per-example loss whose gradient with respect to
    the generator's parameters is weight(t) times the gradient of the divergence at time t."""

    needs: frozenset[str] = frozenset()  # subset of {"fake", "ratio"}: auxiliary signals required

    @abstractmethod
    def loss(self, x0: Tensor, t: Tensor, eps: Tensor, critics: Critics) -> Tensor:
        """x0 = G(z) with its graph (B, ...); t (B,) or (B, L); eps like x0. Returns (B,)."""


def pathwise(x0: Tensor, t: Tensor, eps: Tensor, critics: Critics, weighting: Callable,
             h: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
    """The pathwise surrogate of the KL family: sum(sg[w h(r) alpha (s_q - s_p)(x_t)] x0), whose x0-gradient
    is w(t) h(r) times the x0-gradient of KL(q_t || p_t) (integral KL: h = 1; f-divergences: h = r^2 f''(r)).
    `h(x_t, t)` returns the ratio weight per element; critics are queried without a graph."""
    process = critics.process
    with torch.no_grad():
        x_t = process.add_noise(x0, t, eps)
        a, b = bcast(process.alpha(t), x_t), bcast(process.sigma(t), x_t)
        d_p = critics.teacher(x_t, t)
        gap = a * (critics.fake(x_t, t) - d_p) / b**2  # s_q - s_p in score units
        w = weighting(t, process, x0.detach(), d_p)
        if h is not None:
            w = w * h(x_t, t)
        grad_x0 = bcast(w * process.alpha(t), x0) * gap
    return per_example(grad_x0 * x0)


@dataclass
class ScoreTerms:
    """The quantities the score family and Uni-Instruct share at x_t = alpha x0 + sigma eps, with x0's graph
    live and the networks queried on x_t (their parameters frozen by the trainer)."""

    x_t: Tensor
    a: Tensor  # alpha(t), broadcast against x_t
    b: Tensor  # sigma(t), broadcast against x_t
    d_p: Tensor  # teacher denoiser D_p(x_t)
    d_q: Tensor  # fake denoiser D_psi(x_t)
    s_p: Tensor  # teacher score (alpha D_p - x_t) / sigma^2
    s_q: Tensor  # fake score (alpha D_psi - x_t) / sigma^2
    g: Tensor  # conditional score grad log q(x_t | x0) = -eps / sigma


def score_terms(x0: Tensor, t: Tensor, eps: Tensor, critics: Critics) -> ScoreTerms:
    process = critics.process
    a, b = bcast(process.alpha(t), x0), bcast(process.sigma(t), x0)
    x_t = process.add_noise(x0, t, eps)
    d_p, d_q = critics.teacher(x_t, t), critics.fake(x_t, t)
    return ScoreTerms(x_t, a, b, d_p, d_q, (a * d_p - x_t) / b**2, (a * d_q - x_t) / b**2, -eps / b)


# --------------------------------------------------------------------- weightings
# A weighting is a plain function (t, process, x0, d_teacher) -> t.shape multiplying the
# per-time divergence gradient. x0 and d_teacher are detached.


@WEIGHTINGS.register("unit")
def unit(t, process, x0, d_p):
    """weight 1: the plain gradient of the divergence at time t."""
    return torch.ones_like(t)


@WEIGHTINGS.register("sigma2")
def sigma2(t, process, x0, d_p):
    """Diff-Instruct's sigma^2 weighting, sigma^2 / alpha^2: the x0-gradient of IKL becomes D_psi - D_p."""
    return (process.sigma(t) / process.alpha(t)) ** 2


@WEIGHTINGS.register("dmd")
def dmd(t, process, x0, d_p):
    """DMD's normalised weighting: sigma^2/alpha^2 / mean|x0 - D_p| per example (Yin et al. 2024 eq. 8)."""
    return sigma2(t, process, x0, d_p) / per_element((x0 - d_p).abs(), t, mean=True).clamp_min(1e-8)


@WEIGHTINGS.register("sigma4")
def sigma4(t, process, x0, d_p):
    """sigma^4 / alpha^2: turns the score-family loss into denoiser units (SiD's form in VE)."""
    return process.sigma(t) ** 4 / process.alpha(t) ** 2


@WEIGHTINGS.register("sid")
def sid(t, process, x0, d_p):
    """SiD's weighting (Zhou et al. 2024): denoiser units, normalised by mean|x0 - D_p| per example."""
    return sigma4(t, process, x0, d_p) / per_element((x0 - d_p).abs(), t, mean=True).clamp_min(1e-8)


# threestudio's three SDS weightings (DreamFusion, Fantasia3D) as w(t) on the integral-KL gradient, whose
# x0-gradient is w alpha (s_q - s_p) = w (alpha / sigma)(eps_hat - eps) for a Dirac student (MATH.md, SDS).


@WEIGHTINGS.register("sds")
def sds(t, process, x0, d_p):
    """sigma^3 / alpha: per-example x0-gradient (1 - abar)(eps_hat - eps) on VP (DreamFusion's w = 1 - abar)."""
    return process.sigma(t) ** 3 / process.alpha(t)


@WEIGHTINGS.register("uniform")
def uniform(t, process, x0, d_p):
    """sigma / alpha: per-example x0-gradient eps_hat - eps (threestudio's `uniform`)."""
    return process.sigma(t) / process.alpha(t)


@WEIGHTINGS.register("fantasia3d")
def fantasia3d(t, process, x0, d_p):
    """sigma^3: per-example x0-gradient sqrt(abar)(1 - abar)(eps_hat - eps) on VP (Fantasia3D)."""
    return process.sigma(t) ** 3


@WEIGHTINGS.register("dive3d")
def dive3d(t, process, x0, d_p):
    """2 sigma^2 / alpha: with `sim` (c -> 0) the loss of Dive3D's released SIM-3D step (ANCHORS.md, derived)."""
    return 2 * process.sigma(t) ** 2 / process.alpha(t)


@WEIGHTINGS.register("velocity")
def velocity(t, process, x0, d_p):
    """kappa^2 with u_p - u_q = kappa (s_p - s_q), kappa = sigma (alpha' sigma - alpha sigma') / alpha:
    the score-family loss measured in flow-matching velocity units (FGM, Huang et al. 2024)."""
    a, b = process.alpha(t), process.sigma(t)
    da, db = process.derivatives(t)
    return (b * (da * b - a * db) / a) ** 2
