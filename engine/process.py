"""Corruption processes: Gaussian (x_t = alpha(t) x0 + sigma(t) eps) and absorbing-state masking.

Every Gaussian process shares one parameterisation, so a divergence never needs to know which
one it runs on. The common currency between networks is the denoiser D(x_t, t) ~ E[x0 | x_t];
`to_denoiser` / `from_denoiser` convert eps, v, score and velocity predictions.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .config import OptionError
from .registry import Registry

PROCESSES: Registry[type] = Registry("process")
TIME_SAMPLERS: Registry[Callable] = Registry("time sampler")
PREDICTIONS = ("x0", "eps", "v", "score", "velocity")


def bcast(t: Tensor, x: Tensor) -> Tensor:
    """Reshape times or weights so they broadcast against x: (B,) against (B, ...), or per element,
    (B, L) against (B, L, ...) (MAR diffuses each token at its own time)."""
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


class GaussianProcess:
    """x_t = alpha(t) x0 + sigma(t) eps; subclasses define alpha, sigma and the time range."""

    t_min: float
    t_max: float

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(d alpha / dt, d sigma / dt), by autograd so every process gets them for free."""
        out = []
        for fn in (self.alpha, self.sigma):
            with torch.enable_grad():
                tt = t.detach().clone().requires_grad_(True)
                y = fn(tt)
                out.append(torch.autograd.grad(y.sum(), tt)[0] if y.requires_grad else torch.zeros_like(t))
        return out[0], out[1]

    def add_noise(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t = alpha(t) x0 + sigma(t) eps; t (B,) or per element (B, L) (see bcast)."""
        return bcast(self.alpha(t), x0) * x0 + bcast(self.sigma(t), x0) * eps

    # --- conversions; every prediction maps to and from the denoiser D = E[x0 | x_t] ---
    def to_denoiser(self, pred: Tensor, x_t: Tensor, t: Tensor, kind: str) -> Tensor:
        """Convert a network prediction of the given kind into D(x_t, t)."""
        a, b = bcast(self.alpha(t), x_t), bcast(self.sigma(t), x_t)
        if kind == "x0":
            return pred
        if kind == "eps":
            return (x_t - b * pred) / a
        if kind == "score":
            return (x_t + b**2 * pred) / a
        if kind == "v":  # v = alpha eps - sigma x0 (Salimans & Ho 2022)
            return (a * x_t - b * pred) / (a**2 + b**2)
        if kind == "velocity":  # u = dx_t/dt = alpha' x0 + sigma' eps (flow matching)
            da, db = (bcast(d, x_t) for d in self.derivatives(t))
            return (db * x_t - b * pred) / (a * db - da * b)
        raise ValueError(f"unknown prediction kind {kind!r}; choose one of: {', '.join(PREDICTIONS)}")

    def from_denoiser(self, d: Tensor, x_t: Tensor, t: Tensor, kind: str) -> Tensor:
        """Convert D(x_t, t) into a prediction of the given kind."""
        a, b = bcast(self.alpha(t), x_t), bcast(self.sigma(t), x_t)
        if kind == "x0":
            return d
        eps = (x_t - a * d) / b
        if kind == "eps":
            return eps
        if kind == "score":
            return -eps / b
        if kind == "v":
            return a * eps - b * d
        if kind == "velocity":
            da, db = (bcast(v, x_t) for v in self.derivatives(t))
            return da * d + db * eps
        raise ValueError(f"unknown prediction kind {kind!r}; choose one of: {', '.join(PREDICTIONS)}")


@PROCESSES.register("ve")
class VEProcess(GaussianProcess):
    """Variance exploding / EDM (Karras et al. 2022): alpha = 1, sigma = t."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"ve process needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.t_min, self.t_max = sigma_min, sigma_max

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        return t


@PROCESSES.register("vp_linear")
class VPLinearProcess(GaussianProcess):
    """DDPM / VP-SDE with linear beta(t) (Song et al. 2021): alpha = exp(-int beta / 2)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3):
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"vp_linear needs 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        if not 0 < t_min < 1:
            raise ValueError(f"vp_linear needs 0 < t_min < 1, got {t_min}")
        self.beta_min, self.beta_max = beta_min, beta_max
        self.t_min, self.t_max = t_min, 1.0

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(-0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min)

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(-0.5 * t**2 * (self.beta_max - self.beta_min) - t * self.beta_min))


@PROCESSES.register("vp_cosine")
class VPCosineProcess(GaussianProcess):
    """Cosine schedule (Nichol & Dhariwal 2021): alpha = cos(pi/2 (t+s)/(1+s)) / cos(pi/2 s/(1+s))."""

    def __init__(self, s: float = 0.008, t_min: float = 1e-3, t_max: float = 0.999):
        if not (s >= 0 and 0 <= t_min < t_max < 1):
            raise ValueError(f"vp_cosine needs s >= 0 and 0 <= t_min < t_max < 1, got s {s}, {t_min}, {t_max}")
        self.s = s
        self.t_min, self.t_max = t_min, t_max

    def alpha(self, t: Tensor) -> Tensor:
        f0 = math.cos(0.5 * math.pi * self.s / (1 + self.s))
        return torch.cos(0.5 * math.pi * (t + self.s) / (1 + self.s)) / f0

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt((1 - self.alpha(t) ** 2).clamp_min(0))


@PROCESSES.register("rectified_flow")
class RectifiedFlowProcess(GaussianProcess):
    """Rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023): alpha = 1 - t, sigma = t."""

    def __init__(self, t_min: float = 1e-3, t_max: float = 0.999):
        if not 0 < t_min < t_max < 1:
            raise ValueError(f"rectified_flow needs 0 < t_min < t_max < 1, got {t_min}, {t_max}")
        self.t_min, self.t_max = t_min, t_max

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - t

    def sigma(self, t: Tensor) -> Tensor:
        return t


@PROCESSES.register("vp_discrete")
class DiscreteVPProcess(GaussianProcess):
    """A DDPM-style discrete schedule (Ho et al. 2020) made continuous: t in [0, N-1] is the
    timestep index and log alpha_bar is interpolated linearly between integer steps, so a network
    trained on integer timesteps is queried exactly there. Field names follow diffusers' schedulers."""

    SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 beta_schedule: str = "linear"):
        n = num_train_timesteps
        if n < 2:
            raise ValueError(f"vp_discrete needs num_train_timesteps >= 2, got {n}")
        if beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
        elif beta_schedule == "scaled_linear":  # Stable Diffusion
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64) ** 2
        elif beta_schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal 2021, beta capped at 0.999
            f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
            betas = torch.tensor([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)], dtype=torch.float64)
        else:
            raise ValueError(f"unknown beta_schedule {beta_schedule!r}; choose one of: {', '.join(self.SCHEDULES)}")
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError("vp_discrete needs every beta in (0, 1)")
        self.log_alpha_bar = torch.cumsum(torch.log1p(-betas), 0)
        self.t_min, self.t_max = 0.0, float(n - 1)

    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        table = self.log_alpha_bar.to(device=t.device, dtype=t.dtype if t.is_floating_point() else torch.float32)
        i = t.detach().floor().clamp(0, len(table) - 2).long()
        w = t - i.to(t.dtype)
        return (1 - w) * table[i] + w * table[i + 1]

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(0.5 * self._log_alpha_bar(t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(self._log_alpha_bar(t)))


# ------------------------------------------------------------------ time samplers
# A time sampler is a plain function (n, process, device, generator, progress) -> t of shape (n,);
# progress in [0, 1] is the fraction of training done, for schedules that anneal their range.


@TIME_SAMPLERS.register("uniform")
def uniform(t_min: float | None = None, t_max: float | None = None, t_max_end: float | None = None,
            anneal: tuple[float, float] = (0.0, 1.0)) -> Callable:
    """t ~ U[t_min, hi]; defaults to the process's own range. With t_max_end, hi moves linearly from
    t_max to t_max_end while the training fraction goes from anneal[0] to anneal[1] (equal ends: a jump,
    as ProlificDreamer's 0.98 -> 0.5 after 5k of 25k steps is (0.2, 0.2))."""
    if len(anneal) != 2:
        raise OptionError("anneal", f"must be [start, end], got {list(anneal)}")
    lo_a, hi_a = (float(v) for v in anneal)
    if not 0 <= lo_a <= hi_a <= 1:
        raise OptionError("anneal", f"must be [start, end] with 0 <= start <= end <= 1, got {list(anneal)}")
    for name, hi in (("t_max", t_max), ("t_max_end", t_max_end)):
        if t_min is not None and hi is not None and not t_min < hi:
            raise OptionError(name, f"must be above t_min {t_min}, got {hi}")

    def sample(n, process, device=None, generator=None, progress=0.0):
        lo = process.t_min if t_min is None else t_min
        hi = process.t_max if t_max is None else t_max
        for name, v in (("t_min", lo), ("t_max", hi), ("t_max_end", t_max_end)):
            if v is not None and not process.t_min - 1e-9 <= v <= process.t_max + 1e-9:
                raise OptionError(name, f"must lie in the process's time range [{process.t_min:g}, "
                                        f"{process.t_max:g}], got {v}")
        if t_max_end is not None:
            w = 1.0 if progress >= hi_a else 0.0 if progress <= lo_a else (progress - lo_a) / (hi_a - lo_a)
            hi = hi + w * (t_max_end - hi)
        return lo + (hi - lo) * torch.rand(n, device=device, generator=generator)

    return sample


@TIME_SAMPLERS.register("hifa")
def hifa(t_min: float | None = None, t_max: float | None = None) -> Callable:
    """HiFA's square-root schedule (Zhu et al. 2023; threestudio's sqrt_anneal): every draw is the one time
    t_min + (t_max - t_min)(1 - sqrt(progress)), falling from t_max to t_min over training."""
    if t_min is not None and t_max is not None and not t_min < t_max:
        raise OptionError("t_max", f"must be above t_min {t_min}, got {t_max}")

    def sample(n, process, device=None, generator=None, progress=0.0):
        lo = process.t_min if t_min is None else t_min
        hi = process.t_max if t_max is None else t_max
        for name, v in (("t_min", lo), ("t_max", hi)):
            if not process.t_min - 1e-9 <= v <= process.t_max + 1e-9:
                raise OptionError(name, f"must lie in the process's time range [{process.t_min:g}, "
                                        f"{process.t_max:g}], got {v}")
        return torch.full((n,), lo + (hi - lo) * (1 - math.sqrt(min(max(progress, 0.0), 1.0))), device=device)

    return sample


@TIME_SAMPLERS.register("lognormal")
def lognormal(p_mean: float = -1.2, p_std: float = 1.2) -> Callable:
    """EDM training distribution: ln sigma ~ N(p_mean, p_std^2), clipped to the process range."""
    if not p_std > 0:
        raise OptionError("p_std", f"must be > 0, got {p_std}")
    if not abs(p_mean) <= 20:
        raise OptionError("p_mean", f"is ln(sigma): it must lie in [-20, 20], got {p_mean}")

    def sample(n, process, device=None, generator=None, progress=0.0):
        s = torch.exp(p_mean + p_std * torch.randn(n, device=device, generator=generator))
        return s.clamp(process.t_min, process.t_max)

    return sample


@TIME_SAMPLERS.register("logit_normal")
def logit_normal(mean: float = 0.0, std: float = 1.0) -> Callable:
    """t = sigmoid(N(mean, std^2)) rescaled to the process range (Esser et al. 2024, for flows)."""
    if not std > 0:
        raise OptionError("std", f"must be > 0, got {std}")

    def sample(n, process, device=None, generator=None, progress=0.0):
        u = torch.sigmoid(mean + std * torch.randn(n, device=device, generator=generator))
        return process.t_min + (process.t_max - process.t_min) * u

    return sample


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """The EDM sampling grid sigma_0 = sigma_max > ... > sigma_{n-1} = sigma_min (Karras et al. eq. 5)."""
    if n == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    i = torch.arange(n, dtype=torch.float64)
    return (sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


@TIME_SAMPLERS.register("karras")
def karras(n_grid: int | None = 64, rho: float = 7.0, u_max: float = 1.0) -> Callable:
    """t on the Karras ramp t(u) = (t_min^(1/rho) + u (t_max^(1/rho) - t_min^(1/rho)))^rho, u uniform on
    [0, u_max]: on the n_grid-point grid of the whole ramp (its points with u <= u_max), or continuous when
    n_grid is None. SiD's generator loss (Zhou et al. 2024, released code: tmax = 800 of 1000) is continuous
    with u_max = 0.8, which on EDM's 0.002..80 reaches sigma 24.4 with median 0.97."""
    if n_grid is not None and (isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < 2):
        raise OptionError("n_grid", f"must be an integer >= 2 or null (continuous), got {n_grid!r}")
    if not 0 < u_max <= 1:
        raise OptionError("u_max", f"must be in (0, 1], got {u_max}")
    if not rho > 0:
        raise OptionError("rho", f"must be > 0, got {rho}")

    def sample(n, process, device=None, generator=None, progress=0.0):
        if n_grid is None:
            lo, hi = process.t_min ** (1 / rho), process.t_max ** (1 / rho)
            u = torch.rand(n, device=device, generator=generator) * u_max
            return (hi + (1 - u) * (lo - hi)) ** rho  # SiD's form of the ramp
        grid = karras_sigmas(n_grid, process.t_min, process.t_max, rho).to(device=device, dtype=torch.float32)
        if u_max < 1:  # grid[i] sits at u = 1 - i / (n_grid - 1)
            keep = 1 - torch.arange(n_grid, dtype=torch.float64) / (n_grid - 1) <= u_max + 1e-12
            grid = grid[keep.to(grid.device)]
        return grid[torch.randint(len(grid), (n,), device=device, generator=generator)]

    return sample


@TIME_SAMPLERS.register("beta")
def beta(a: float = 1.0, b: float = 1.0) -> Callable:
    """t = t_min + (t_max - t_min) * Beta(a, b)."""
    for name, v in (("a", a), ("b", b)):
        if not v > 0:
            raise OptionError(name, f"must be > 0, got {v}")

    def sample(n, process, device=None, generator=None, progress=0.0):
        # Beta via two Gammas would not take a generator; use the inverse of two uniforms' ordering
        g1 = _gamma(a, n, device, generator)
        g2 = _gamma(b, n, device, generator)
        u = g1 / (g1 + g2)
        return process.t_min + (process.t_max - process.t_min) * u

    return sample


def _gamma(shape: float, n: int, device, generator) -> Tensor:
    """Gamma(shape, 1) samples with an explicit generator (Marsaglia & Tsang 2000)."""
    boost = shape < 1
    k = shape + 1 if boost else shape
    d = k - 1 / 3
    c = 1 / math.sqrt(9 * d)
    out = torch.empty(n, device=device)
    todo = torch.ones(n, dtype=torch.bool, device=device)
    while todo.any():
        m = int(todo.sum())
        x = torch.randn(m, device=device, generator=generator)
        v = (1 + c * x) ** 3
        u = torch.rand(m, device=device, generator=generator)
        ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * x**2 + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        idx = todo.nonzero().squeeze(1)[ok]
        out[idx] = (d * v)[ok]
        todo[idx] = False
    if boost:
        out = out * torch.rand(n, device=device, generator=generator) ** (1 / shape)
    return out


# ------------------------------------------------------------------ masking process
class MaskingProcess:
    """Absorbing-state masking with the log-linear schedule alpha(t) = 1 - (1 - eps) t (MDLM).

    alpha(t) is the probability that a token is still unmasked at time t in [0, 1].
    """

    def __init__(self, mask_id: int, eps: float = 1e-3):
        if mask_id < 0:
            raise ValueError(f"mask_id must be a non-negative token id, got {mask_id}")
        self.mask_id = mask_id
        self.eps = eps
        self.t_min, self.t_max = 0.0, 1.0

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - (1 - self.eps) * t

    def dalpha(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -(1 - self.eps))

    def corrupt(self, x: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z_t: each token of x (B, L) replaced by mask_id with probability 1 - alpha(t)."""
        keep = torch.rand(x.shape, device=x.device, generator=generator) < bcast(self.alpha(t), x)
        return torch.where(keep, x, torch.full_like(x, self.mask_id))

    def step(self, z: Tensor, probs_x0: Tensor, t: Tensor, s: Tensor,
             generator: torch.Generator | None = None) -> Tensor:
        """One ancestral step z_t -> z_s (s < t): a masked token unmasks with probability
        (alpha_s - alpha_t) / (1 - alpha_t) to a token drawn from probs_x0 (B, L, V)."""
        a_t, a_s = bcast(self.alpha(t), z), bcast(self.alpha(s), z)
        p_unmask = ((a_s - a_t) / (1 - a_t)).clamp(0, 1)
        u = torch.rand(z.shape, device=z.device, generator=generator)
        where = ((z == self.mask_id) & (u < p_unmask)).nonzero(as_tuple=True)
        out = z.clone()
        if where[0].numel():  # draw tokens only where one unmasks: most steps of a long sampler touch few
            out[where] = gumbel_argmax(torch.log(probs_x0[where].double().clamp_min(1e-300)), generator)
        return out


def gumbel_argmax(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Categorical sample by argmax(logits + Gumbel), in float64: float32 Gumbel noise
    truncates the tail and lowers sample entropy (noted by Zheng et al. 2024 for MDLM)."""
    u = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
    g = -torch.log(-torch.log(u.clamp(1e-300, 1 - 1e-16)))
    return (logits.double() + g).argmax(-1)
