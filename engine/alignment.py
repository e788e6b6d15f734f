"""Reward alignment: how a reward r(x0) enters the continuous objective (`distill.alignment`).

Each method is a small piece beside the divergence, composable with any of them and any backend:

  dipp             Diff-Instruct++ (and DI* with a score divergence): add -alpha * r(x0) to the generator loss.
  didr             Diff-Instruct with Diffused Reward: replace the teacher's score by the diffused score of the
                   tilted optimum p*(x0) ~ p(x0) exp(r(x0)/beta), s_p + grad_x_t log E_{p(x0|x_t)} exp(r(x0)/beta),
                   estimated by the Diffused Reward Proxy (differentiable short-step denoising of x_t, then the
                   reward's gradient) or exact where the backend has it. No reward term: the divergence's
                   minimiser is p* itself.
  reward_instruct  Reward-Instruct: -alpha * r(x0) plus a pull toward the generator the run started from (in
                   output space or parameter space); meant with divergence `none` (no distillation loss).
  surrogate        non-differentiable rewards (TDM-R1's learned reward): a reward model, fitted online to reward
                   observations of generator samples, whose output stands in for r in -alpha * r.
  reinforce        the score-function baseline on the same reward: a Gaussian policy x = G(z) + std xi,
                   loss -alpha * sg[r(x) - mean r] log pi(x | z).

A method may replace the teacher the critics see (`teacher`), add a per-example generator loss (`loss`), train
networks of its own (`modules`, `aux_losses`) and hold networks fixed that belong to the run (`frozen`,
checkpointed; `start` fills them when a run begins at step 0). MATH.md and docs/methods.md give the equations.
"""
from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import OptionError
from .divergences.base import Denoiser, per_example
from .nn.attention import twice_differentiable
from .noise import Noise
from .process import GaussianProcess, bcast
from .registry import Registry

ALIGNMENTS: Registry[type] = Registry("alignment")
Reward = Callable[..., Tensor]  # (x0[, cond]) -> (B,)


def reward_of(reward: Reward, x: Tensor, cond: Any) -> Tensor:
    """reward(x[, cond]) checked to be one value per example."""
    r = reward(x) if cond is None else reward(x, cond)
    if not isinstance(r, Tensor) or r.shape != x.shape[:1]:
        shape = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
        raise ValueError(f"the reward must return one value per example (shape {tuple(x.shape[:1])}), got {shape}")
    return r


def _positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise OptionError(name, f"must be a finite number > 0, got {value}")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise OptionError(name, f"must be a finite number >= 0, got {value}")
    return float(value)


class Alignment:
    """No reward: the teacher unchanged, no loss, no networks."""

    uses_alpha = True  # the reward section's alpha weighs this method's reward term

    def __init__(self, reward: Reward, alpha: float):
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"reward alpha must be a finite number >= 0, got {alpha!r}")
        self.reward, self.alpha = reward, alpha
        self.modules: dict[str, nn.Module] = {}
        self.frozen: dict[str, nn.Module] = {}

    def teacher(self, teacher: Denoiser, cond: Any) -> Denoiser:
        """The denoiser the divergence's critics see in place of the teacher's."""
        return teacher

    def loss(self, x0: Tensor, z: Tensor, cond: Any, generator: nn.Module, noise: Noise) -> tuple[Tensor, dict]:
        """A per-example generator loss (B,) (x0 with its graph) and scalars to log."""
        return torch.zeros(x0.shape[0], device=x0.device), {}

    def aux_losses(self, x0: Tensor, cond: Any, noise: Noise) -> dict[str, Tensor]:
        """Per-example losses of this method's own networks on detached generator samples."""
        return {}

    def start(self, generator: nn.Module) -> None:
        """Called once when a run begins at step 0 (after train.init_from), not on resume."""


@ALIGNMENTS.register("dipp")
class DIPP(Alignment):
    """Diff-Instruct++ (Luo 2024): -alpha * r(x0); with a score-based divergence this is DI* (Luo et al. 2024)."""

    def __init__(self, *, reward: Reward, alpha: float, **_):
        super().__init__(reward, alpha)

    def loss(self, x0, z, cond, generator, noise):
        r = reward_of(self.reward, x0, cond)
        if x0.requires_grad and not r.requires_grad:
            raise ValueError("the reward is not differentiable in x0 (it has no gradient); align it with "
                             "distill.alignment.name surrogate or reinforce")
        return -self.alpha * r, {"reward": r.detach().mean()}


def short_denoise(teacher: Denoiser, process: GaussianProcess, x_t: Tensor, t: Tensor, steps: int) -> Tensor:
    """x0 from x_t by `steps` deterministic DDIM steps of the teacher (steps = 1: the teacher's denoiser D_p(x_t)),
    differentiable in x_t. The k-th step goes from s_{k-1} to s_k = s_{k-1} + (t_min - s_{k-1}) k / steps (s_0 = t),
    each step covering a growing share of what remains toward the process's t_min."""
    x, d = x_t, teacher(x_t, t)
    for k in range(1, steps):
        s = t + (process.t_min - t) * k / steps
        a_t, b_t = bcast(process.alpha(t), x), bcast(process.sigma(t), x)
        a_s, b_s = bcast(process.alpha(s), x), bcast(process.sigma(s), x)
        x = a_s * d + b_s * (x - a_t * d) / b_t
        t, d = s, teacher(x, s)
    return d


@ALIGNMENTS.register("didr")
class DIDR(Alignment):
    """Diff-Instruct with Diffused Reward (Lin et al. 2026): the critics see the denoiser of p*_t, the diffused
    tilted optimum, D* = D_p + (sigma^2 / alpha) grad_x_t log E_{p(x0|x_t)} exp(r(x0)/beta).

    proxy `denoise`: the Diffused Reward Proxy, grad_x_t r(x0_hat(x_t)) / beta with x0_hat the teacher's
    `steps`-step denoising of x_t (exact for a Gaussian teacher and a linear reward); proxy `exact`: the backend's
    closed-form tilted teacher (toy mixtures with linear or quadratic rewards)."""

    uses_alpha = False

    def __init__(self, beta: float = 1.0, proxy: Literal["denoise", "exact"] = "denoise", steps: int = 1, *,
                 reward: Reward, alpha: float | None, process: GaussianProcess,
                 exact: Callable[[float], Callable] | None = None, **_):
        super().__init__(reward, 0.0)
        self.beta, self.process, self.steps = _positive("beta", beta), process, steps
        if not (isinstance(steps, int) and 1 <= steps <= 64):
            raise OptionError("steps", f"must be an integer in [1, 64], got {steps!r}")
        self.exact = None
        if proxy == "exact":
            self.exact = exact(self.beta) if exact is not None else None  # D*(x_t, t, cond)
            if self.exact is None:
                raise OptionError("proxy", "'exact' needs a closed-form tilted teacher, which this modality and "
                                           "reward do not have; use proxy: denoise")

    def teacher(self, teacher, cond):
        if self.exact is not None:
            return lambda x_t, t: self.exact(x_t, t, cond)
        return lambda x_t, t: self.tilted(teacher, x_t, t, cond)

    def tilted(self, teacher: Denoiser, x_t: Tensor, t: Tensor, cond: Any) -> Tensor:
        live = x_t.requires_grad  # the score family backpropagates through the critics into x_t
        with torch.enable_grad(), (twice_differentiable() if live else contextlib.nullcontext()):
            x = x_t if live else x_t.detach().requires_grad_(True)
            x0_hat = short_denoise(teacher, self.process, x, t, self.steps)
            d = x0_hat if self.steps == 1 else teacher(x, t)
            r = reward_of(self.reward, x0_hat, cond)
            (g,) = torch.autograd.grad(r.sum(), x, create_graph=live)
        a, b = bcast(self.process.alpha(t), x), bcast(self.process.sigma(t), x)
        out = d + b**2 / a * g / self.beta
        return out if live else out.detach()

    def loss(self, x0, z, cond, generator, noise):
        with torch.no_grad():
            r = reward_of(self.reward, x0.detach(), cond)
        return torch.zeros_like(r), {"reward": r.mean()}


@ALIGNMENTS.register("reward_instruct")
class RewardInstruct(Alignment):
    """Reward-Instruct (Luo et al. 2025): -alpha * r(x0) + weight * distance to the starting generator G0,
    mean ||G(z) - G0(z)||^2 per example (`output`) or ||theta - theta0||^2 (`parameter`)."""

    def __init__(self, weight: float = 1.0, anchor: Literal["output", "parameter"] = "output", *, reward: Reward,
                 alpha: float, generator: nn.Module, **_):
        super().__init__(reward, alpha)
        self.weight, self.anchor = _non_negative("weight", weight), anchor
        self.frozen = {"anchor": copy.deepcopy(generator).requires_grad_(False).eval()}

    def start(self, generator):
        self.frozen["anchor"].load_state_dict(generator.state_dict())

    def loss(self, x0, z, cond, generator, noise):
        r = reward_of(self.reward, x0, cond)
        if self.anchor == "output":
            with torch.no_grad():
                ref = self.frozen["anchor"](z, cond)
            dist = per_example((x0 - ref) ** 2, mean=True)
        else:
            ref = dict(self.frozen["anchor"].named_parameters())
            dist = sum(((p - ref[k]) ** 2).sum() for k, p in generator.named_parameters() if p.requires_grad)
            dist = dist.expand(x0.shape[0])
        return -self.alpha * r + self.weight * dist, {"reward": r.detach().mean(), "anchor": dist.detach().mean()}


@ALIGNMENTS.register("surrogate")
class Surrogate(Alignment):
    """A learned reward (TDM-R1's surrogate, Luo et al. 2025): a network f_phi fitted online to r on detached
    generator samples (BCE for rewards in [0, 1], `fit: bce`; squared error otherwise), and -alpha * f(x0) as the
    generator's reward term (f = sigmoid(logit) for bce). The network is the backend's discriminator read at
    t_min, built with the options `net` (those of distill.discriminator); its learning rate is train.lr.surrogate."""

    def __init__(self, fit: Literal["bce", "mse"] = "bce", net: dict | None = None, *, reward: Reward, alpha: float,
                 process: GaussianProcess, network: Callable[[dict], nn.Module] | None = None, **_):
        super().__init__(reward, alpha)
        if network is None:
            raise OptionError("name", "'surrogate' needs a network for the learned reward (the backend's "
                                      "discriminator), which this modality does not build")
        self.fit, self.process = fit, process
        self.modules = {"surrogate": network(dict(net or {}))}

    def _f(self, x: Tensor, cond: Any) -> Tensor:
        t = torch.full(x.shape[:1], float(self.process.t_min), device=x.device)
        out = self.modules["surrogate"](x, t, cond).reshape(x.shape[0])
        return torch.sigmoid(out) if self.fit == "bce" else out

    def aux_losses(self, x0, cond, noise):
        with torch.no_grad():
            r = reward_of(self.reward, x0, cond).to(x0.dtype)
        if self.fit == "bce" and not bool(((r >= 0) & (r <= 1)).all()):
            raise ValueError("alignment 'surrogate' with fit bce needs rewards in [0, 1]; use fit: mse")
        t = torch.full(x0.shape[:1], float(self.process.t_min), device=x0.device)
        out = self.modules["surrogate"](x0, t, cond).reshape(x0.shape[0])
        if self.fit == "bce":
            return {"surrogate": F.binary_cross_entropy_with_logits(out, r, reduction="none")}
        return {"surrogate": (out - r) ** 2}

    def loss(self, x0, z, cond, generator, noise):
        f = self._f(x0, cond)
        return -self.alpha * f, {"reward_surrogate": f.detach().mean()}


@ALIGNMENTS.register("reinforce")
class Reinforce(Alignment):
    """The score-function (REINFORCE) baseline for a non-differentiable reward: x = G(z) + std xi is a Gaussian
    policy, log pi(x | z) = -||x - G(z)||^2 / (2 std^2), loss -alpha * sg[r(x) - mean_batch r] log pi(x | z)."""

    def __init__(self, std: float = 0.1, *, reward: Reward, alpha: float, **_):
        super().__init__(reward, alpha)
        self.std = _positive("std", std)

    def loss(self, x0, z, cond, generator, noise):
        x = (x0 + self.std * noise.randn(*x0.shape).to(x0.dtype)).detach()
        with torch.no_grad():
            r = reward_of(self.reward, x, cond).to(x0.dtype)
        adv = r - r.mean()
        log_pi = -per_example((x - x0) ** 2) / (2 * self.std**2)
        return -self.alpha * adv * log_pi, {"reward": r.mean()}
