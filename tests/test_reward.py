"""The reward term of DI++ / DI*: loss -alpha * reward(x0, c), gradient pathwise through x0."""
from __future__ import annotations

import pytest
import torch

from unidistill.engine.divergences import RewardTerm


def test_reward_gradient_is_minus_alpha_times_reward_gradient():
    target = torch.tensor([1.0, -2.0, 0.5])
    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    term = RewardTerm(lambda x, c: -((x - target * c[:, None]) ** 2).sum(1), alpha=0.3)
    c = torch.tensor([1.0, 2.0, 0.0, -1.0])
    term.loss(x0, c).sum().backward()
    torch.testing.assert_close(x0.grad, 0.3 * 2 * (x0.detach() - target * c[:, None]))


def test_reward_must_be_per_example_and_alpha_non_negative():
    with pytest.raises(ValueError, match="one value per example"):
        RewardTerm(lambda x: x.sum(), alpha=1.0).loss(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        RewardTerm(lambda x: x, alpha=-1.0)
