"""Isotropic Gaussian-mixture teacher with an exact diffused density, score and denoiser under
any Gaussian process (the probability-flow ODE sampler lives in engine.sampling).

For x0 ~ sum_k w_k N(mu_k, s_k^2 I) and x_t = alpha x0 + sigma eps, component k of x_t is
N(alpha mu_k, v_k I) with v_k = alpha^2 s_k^2 + sigma^2, so p_t, its score and E[x0 | x_t] are
closed form (DESIGN.md s.3: exact teachers first).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from unidistill.engine.process import GaussianProcess, VEProcess

ArrayLike = Tensor | Sequence | float
CONFIG_KEYS = ("means", "weights", "std", "ring", "random")
FORMS = ("means", "ring", "random")
RING_KEYS = ("modes", "radius", "std", "weights")
RANDOM_KEYS = ("modes", "dim", "std", "scale", "seed", "weights")


def _check_keys(where: str, cfg: Any, allowed: Sequence[str], required: Sequence[str]) -> None:
    """Unknown or missing keys fail with one line naming the key and the allowed keys."""
    if not isinstance(cfg, Mapping):  # config errors are ValueErrors, whatever their cause
        raise ValueError(
            f"{where} must be a mapping with keys {', '.join(allowed)}; got {cfg!r}")
    for key in cfg:
        if key not in allowed:
            raise ValueError(f"unknown key {key!r} in {where}; allowed keys: {', '.join(allowed)}")
    for key in required:
        if key not in cfg:
            raise ValueError(f"{where} is missing required key {key!r}")


def _int(where: str, value: Any, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = "" if low is None else f" >= {low}"
        raise ValueError(f"{where} must be an integer{bound}, got {value!r}")
    return value


def _float(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _float64(name: str, value: Any) -> Tensor:
    """A detached float64 copy of value; anything torch cannot read fails naming the argument."""
    try:
        return torch.as_tensor(value, dtype=torch.float64).detach().clone()
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name} must be numbers or a tensor, got {value!r} ({e})") from None


def _diffused(x_t: Tensor, t: Tensor | float, process: GaussianProcess, means: Tensor,
              log_weights: Tensor, var: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per component k: log w_k N(x_t; a mu_k, v_k I) (B, K), E[x0 | x_t, k] = mu_k + a s_k^2 / v_k
    (x_t - a mu_k) (B, K, d) and the score -(x_t - a mu_k) / v_k (B, K, d); v_k = a^2 s_k^2 + b^2.
    Computed in float64 if x_t is float64, else float32."""
    if x_t.ndim != 2 or x_t.shape[1] != means.shape[1]:
        raise ValueError(f"x_t must have shape (B, {means.shape[1]}), got {tuple(x_t.shape)}")
    dtype = torch.promote_types(x_t.dtype, torch.float32)
    x = x_t.to(dtype)
    t = torch.as_tensor(t, dtype=dtype, device=x.device)
    t = t.expand(x.shape[0]) if t.ndim == 0 else t
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must have shape ({x.shape[0]},) or be a scalar, got {tuple(t.shape)}")
    mu, log_w, s2 = (p.to(device=x.device, dtype=dtype) for p in (means, log_weights, var))
    a, b = process.alpha(t)[:, None], process.sigma(t)[:, None]  # (B, 1)
    v = a**2 * s2 + b**2  # (B, K)
    diff = x[:, None, :] - a[..., None] * mu  # (B, K, d)
    log_norm = 0.5 * x.shape[1] * torch.log(2 * math.pi * v)
    log_joint = log_w - 0.5 * diff.pow(2).sum(-1) / v - log_norm
    return log_joint, mu + (a * s2 / v)[..., None] * diff, -diff / v[..., None]


def _posterior_mean(x_t: Tensor, t: Tensor | float, process: GaussianProcess, means: Tensor,
                    log_weights: Tensor, var: Tensor) -> Tensor:
    """D(x_t, t) = sum_k gamma_k E[x0 | x_t, k], gamma = softmax_k log w_k N(x_t; a mu_k, v_k I)."""
    log_joint, post, _ = _diffused(x_t, t, process, means, log_weights, var)
    return (log_joint.softmax(-1)[..., None] * post).sum(1).to(x_t.dtype)


class GaussianMixture:
    """x0 ~ sum_k w_k N(mu_k, s_k^2 I); means (K, d), weights (K,) or None (uniform), stds (K,) or a
    scalar.

    Parameters are stored in float64; every method computes on x's device in float64 for float64
    inputs and float32 otherwise, and returns x's dtype.
    """

    def __init__(self, means: ArrayLike, weights: ArrayLike | None = None, stds: ArrayLike = 1.0):
        mu = _float64("means", means)
        if mu.ndim != 2 or mu.shape[0] < 1 or mu.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d) with K, d >= 1, got {tuple(mu.shape)}")
        if not torch.isfinite(mu).all():
            raise ValueError(f"means must be finite, got {mu.tolist()}")
        k = mu.shape[0]
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else (
            _float64("weights", weights))
        if w.shape != (k,):
            raise ValueError(f"weights must have shape ({k},) to match means, got {tuple(w.shape)}")
        if not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
        total = w.sum().item()
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1 (within 1e-6), got sum {total:.9g}")
        s = _float64("stds", stds)
        s = s.expand(k).clone() if s.ndim == 0 else s
        if s.shape != (k,):
            raise ValueError(f"stds must be a scalar or have shape ({k},), got {tuple(s.shape)}")
        if not torch.isfinite(s).all() or (s <= 0).any():
            raise ValueError(f"stds must be finite and > 0, got {s.tolist()}")
        self.means, self.weights, self.stds = mu, w / total, s  # weights now sum exactly to 1

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> GaussianMixture:
        """Build from exactly one of three forms (weights null or absent means uniform):

        means:  {means: [[...], ...] (K lists of d), weights: [w_k] | null, std: s | [s_k]}
        ring:   {ring: {modes: K, radius: R, std: s | [s_k], weights: [w_k] | null}}
                K means R (cos 2 pi k / K, sin 2 pi k / K) on a circle in 2-D
        random: {random: {modes: K, dim: d, std: s | [s_k], scale: 1.0, seed: 0, weights: null}}
                K means ~ scale N(0, I_d), drawn from torch.Generator().manual_seed(seed)
        """
        _check_keys("gmm config", cfg, CONFIG_KEYS, ())
        forms = [f for f in FORMS if f in cfg]
        if len(forms) != 1:
            raise ValueError(
                f"gmm config needs exactly one of {', '.join(FORMS)}; got {forms or 'none'}")
        form = forms[0]
        if form == "means":
            _check_keys("gmm config", cfg, ("means", "weights", "std"), ("means", "std"))
            return cls(cfg["means"], cfg.get("weights"), cfg["std"])
        if len(cfg) > 1:
            extra = ", ".join(repr(key) for key in cfg if key != form)
            raise ValueError(
                f"gmm config key(s) {extra} not allowed beside {form!r}; put them inside it")
        sub = cfg[form]
        if form == "ring":
            _check_keys("gmm config 'ring'", sub, RING_KEYS, ("modes", "radius", "std"))
            k = _int("gmm config ring.modes", sub["modes"], low=1)
            angle = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
            radius = _float("gmm config ring.radius", sub["radius"])
            means = radius * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
        else:
            _check_keys("gmm config 'random'", sub, RANDOM_KEYS, ("modes", "dim", "std"))
            k = _int("gmm config random.modes", sub["modes"], low=1)
            d = _int("gmm config random.dim", sub["dim"], low=1)
            g = torch.Generator().manual_seed(_int("gmm config random.seed", sub.get("seed", 0)))
            scale = _float("gmm config random.scale", sub.get("scale", 1.0))
            means = scale * torch.randn(k, d, generator=g, dtype=torch.float64)
        return cls(means, sub.get("weights"), sub["std"])

    def _params(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.means, self.weights.log(), self.stds**2

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """x0 = mu_k + s_k z with k ~ Categorical(w), z ~ N(0, I); (n, d) float32."""
        if n < 1:
            raise ValueError(f"sample needs n >= 1, got {n}")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, device=self.means.device,
                        generator=generator)
        return (self.means[k] + self.stds[k, None] * z).float()

    def log_prob(self, x: Tensor) -> Tensor:
        """log p_0(x) = logsumexp_k [log w_k + log N(x; mu_k, s_k^2 I)]; x (B, d) -> (B,)."""
        data = VEProcess()  # alpha = 1, sigma = t = 0: the undiffused mixture
        return self.diffused_log_prob(x, torch.zeros(x.shape[0], device=x.device), data)

    def diffused_log_prob(self, x_t: Tensor, t: Tensor | float, process: GaussianProcess) -> Tensor:
        """log p_t(x_t) = logsumexp_k [log w_k + log N(x_t; a mu_k, (a^2 s_k^2 + b^2) I)]; (B,)."""
        log_joint, _, _ = _diffused(x_t, t, process, *self._params())
        return log_joint.logsumexp(-1).to(x_t.dtype)

    def score(self, x_t: Tensor, t: Tensor | float, process: GaussianProcess) -> Tensor:
        """grad log p_t(x_t) = -sum_k gamma_k(x_t) (x_t - a mu_k) / (a^2 s_k^2 + b^2); (B, d)."""
        log_joint, _, scores = _diffused(x_t, t, process, *self._params())
        return (log_joint.softmax(-1)[..., None] * scores).sum(1).to(x_t.dtype)

    def denoiser(self, x_t: Tensor, t: Tensor | float, process: GaussianProcess) -> Tensor:
        """E[x0 | x_t] = sum_k gamma_k [mu_k + a s_k^2 / (a^2 s_k^2 + b^2) (x_t - a mu_k)]."""
        return _posterior_mean(x_t, t, process, *self._params())


class ExactTeacher(nn.Module):
    """Exact D(x_t, t) = E[x0 | x_t] of a mixture under a process; buffers only, no parameters."""

    def __init__(self, mixture: GaussianMixture, process: GaussianProcess):
        super().__init__()
        self.process = process
        means, log_weights, var = mixture._params()
        self.register_buffer("means", means.clone())
        self.register_buffer("log_weights", log_weights.clone())
        self.register_buffer("var", var.clone())

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """x_t (B, d), t (B,) -> E[x0 | x_t] (B, d) in x_t's dtype; the mixture is unconditional."""
        if cond is not None:
            raise ValueError("ExactTeacher is unconditional; got a cond, expected None")
        return _posterior_mean(x_t, t, self.process, self.means, self.log_weights, self.var)
