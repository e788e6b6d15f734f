"""No distillation loss: `none`, for objectives that only align a generator with a reward (Reward-Instruct,
Luo et al. 2025); the reward and its regulariser come from engine.alignment."""
from __future__ import annotations

from .base import DIVERGENCES, Critics, Divergence, per_example


@DIVERGENCES.register("none")
class NoDivergence(Divergence):
    """Zero loss with x0's graph kept (the trainer backpropagates the sum with the alignment's term)."""

    def loss(self, x0, t, eps, critics: Critics):
        return per_example(x0) * 0.0
