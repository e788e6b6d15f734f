"""Download-free differentiable rewards for DI++ / DI* (a RewardTerm adds -alpha * reward); distill.py
offers them by name to `distill.reward`."""
from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


def classifier_log_prob() -> Callable[[Tensor, Tensor], Tensor]:
    """log p(c | x0) under the shipped digits classifier: sharper, more legible digits of the prompted class."""
    from .classifier import load_classifier

    clf = load_classifier()

    def reward(x0: Tensor, c: Tensor) -> Tensor:
        if c is None:
            raise ValueError("the classifier reward needs class-conditional samples")
        clf.to(x0.device)
        return clf.log_prob(x0.clamp(-1, 1), c)

    return reward


def contrast() -> Callable[..., Tensor]:
    """Mean |x0| per image: pushes pixels towards pure ink or pure paper (a stroke-sharpness reward)."""

    def reward(x0: Tensor, c: Tensor | None = None) -> Tensor:
        return x0.clamp(-1, 1).abs().mean(dim=tuple(range(1, x0.ndim)))

    return reward
