"""Score-function (policy-gradient) estimator for samples that are not differentiable.

For a student p_theta over discrete sequences, its corrupted marginal q_theta,t(z) =
sum_x p_theta(x) Q_t(z | x) and a teacher marginal p_t(z), with r = p_t / q_theta,t
(teacher over student, as everywhere in this library):

  d/dtheta E_{q_theta,t} f(r) = E_{x ~ p_theta}[ grad log p_theta(x) * E_{z ~ Q_t(.|x)} (f(r) - r f'(r)) ].

So the reward of a sample is R = E_z[r f'(r) - f(r)] and the per-example loss is -sg[A] log p_theta(x)
with A the (optionally group-normalised) reward. For f = rkl this is DiDi-Instruct's
reward log r - 1 = -log(student / teacher) - 1 (Zheng et al. 2025).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..config import OptionError
from ..registry import Registry
from .fdiv import F_FUNCTIONS

ESTIMATORS: Registry[type] = Registry("discrete estimator")  # for samples that are not differentiable


def group_normalise(reward: Tensor, group_size: int, clip: float | None = None, eps: float = 1e-6) -> Tensor:
    """(R - mean_group) / (std_group + eps) over consecutive groups of `group_size`, then clipped."""
    if reward.ndim != 1 or reward.shape[0] % group_size:
        raise ValueError(f"reward of shape {tuple(reward.shape)} does not split into groups of {group_size}: the "
                         "per-process batch (train.batch_size / processes) must be a multiple of "
                         "distill.divergence.group_size")
    r = reward.view(-1, group_size)
    if group_size > 1:
        r = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True, unbiased=False) + eps)
    if clip is not None:
        r = r.clamp(-clip, clip)
    return r.reshape(-1)


@ESTIMATORS.register("didi")
class PolicyGradient:
    """Discrete integral f-divergence by policy gradient (DiDi-Instruct for f = rkl)."""

    def __init__(self, f: str = "rkl", group_size: int = 1, normalise: bool = True,
                 clip: float | None = 5.0, log_ratio_clip: float = 10.0):
        self.fn = F_FUNCTIONS.get(f)
        if group_size < 1:
            raise OptionError("group_size", f"must be >= 1, got {group_size}")
        if clip is not None and not clip > 0:
            raise OptionError("clip", f"must be > 0 (or null: no clipping), got {clip}")
        if not log_ratio_clip > 0:
            raise OptionError("log_ratio_clip", f"must be > 0, got {log_ratio_clip}")
        self.group_size = group_size
        self.normalise = normalise
        self.clip = clip
        self.log_ratio_clip = log_ratio_clip

    def reward(self, log_ratio: Tensor, z_weights: Tensor | None = None) -> Tensor:
        """R = E_z[r f'(r) - f(r)]; log_ratio (B,) or (B, M) for M corruptions of each sample,
        averaged uniformly or with z_weights (B, M) (rows summing to 1, for exact expectations)."""
        lr = log_ratio.clamp(-self.log_ratio_clip, self.log_ratio_clip)
        r = torch.exp(lr) * self.fn.f_prime(lr) - self.fn.f(lr)
        if r.ndim == 1:
            return r
        return r.mean(-1) if z_weights is None else (r * z_weights).sum(-1)

    def loss(self, log_prob: Tensor, log_ratio: Tensor, weight: Tensor | None = None,
             z_weights: Tensor | None = None, bonus: Tensor | None = None) -> Tensor:
        """log_prob (B,) with graph: log p_theta of each sample (or its sampling trajectory);
        log_ratio at the corrupted samples (no graph); weight (B,) the time weight; bonus (B,) a task reward
        (alpha * r(x)) added to each sample's reward before normalisation. Returns (B,)."""
        with torch.no_grad():
            adv = self.reward(log_ratio.detach(), z_weights)
            if bonus is not None:
                adv = adv + bonus.detach().to(adv.dtype)
            if self.normalise:
                adv = group_normalise(adv, self.group_size, self.clip)
            if weight is not None:  # after normalisation (DiDi-Instruct): a weight shared by a group survives it
                adv = adv * weight
        return -adv * log_prob
