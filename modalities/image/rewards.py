"""Download-free rewards for the alignments of engine.alignment; distill.py offers them by name to
`distill.reward`. `classifier` and `contrast` are differentiable (dipp, didr, reward_instruct); `loop` is binary
and has no gradient (surrogate, reinforce)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def classifier_log_prob() -> Callable[[Tensor, Tensor], Tensor]:
    """log p(c | x0) under the shipped digits classifier: sharper, more legible digits of the prompted class."""
    from unidistill.modalities.shared.digits_classifier import load_classifier

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


def has_loop(x: Tensor, threshold: float = 0.0) -> Tensor:
    """1 where a digit encloses background (paper pixels, value below `threshold`, that 4-connected paper does not
    reach from the border: the hole of a 0, 6, 8 or 9), else 0; x (B, 1, H, W) in [-1, 1] -> (B,)."""
    paper = x[:, 0] < threshold
    border = torch.ones_like(paper)
    border[:, 1:-1, 1:-1] = False
    reach = paper & border
    for _ in range(paper.shape[1] * paper.shape[2]):
        grown = reach.clone()
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown[:, :, 1:] |= reach[:, :, :-1]
        grown[:, :, :-1] |= reach[:, :, 1:]
        grown &= paper
        if torch.equal(grown, reach):
            break
        reach = grown
    return (paper & ~reach).flatten(1).any(1).to(x.dtype)


def loop(threshold: float = 0.0) -> Callable[..., Tensor]:
    """Binary, no gradient: 1 if the digit has a closed loop (enclosed paper), else 0."""

    def reward(x0: Tensor, c: Tensor | None = None) -> Tensor:
        return has_loop(x0.detach(), threshold)

    return reward
