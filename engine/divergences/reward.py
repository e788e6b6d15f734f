"""A differentiable reward term added to a divergence: -alpha * reward(x0)
(DI++, Luo 2024; DI*, Luo et al. 2024; Reward-Instruct; Phys-Instruct's residual guidance)."""
from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor


class RewardTerm:
    """Per-example loss -alpha * reward(x0, cond); reward must be differentiable in x0 and return (B,)."""

    def __init__(self, reward: Callable[..., Tensor], alpha: float):
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"reward alpha must be a finite number >= 0, got {alpha}")
        self.reward = reward
        self.alpha = alpha

    def loss(self, x0: Tensor, cond=None) -> Tensor:
        r = self.reward(x0) if cond is None else self.reward(x0, cond)
        if r.shape != x0.shape[:1]:
            raise ValueError(f"reward must return one value per example (shape {tuple(x0.shape[:1])}), "
                             f"got {tuple(r.shape)}")
        return -self.alpha * r
