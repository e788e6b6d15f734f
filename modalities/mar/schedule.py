"""MAR's outer loop as data: which tokens each of K iterations reveals, and the guidance scale at each.

A random order per sample ranks the tokens; iteration k (0-based) leaves the first m_{k+1} tokens of the order
masked, m_{k+1} = floor(L cos(pi/2 (k+1)/K)) clamped to [1, m_k - 1] (and 0 after the last iteration), so it
reveals ranks m_{k+1} .. m_k - 1 (MAR's `sample_tokens` and `mask_by_order`). The clamp is written as [K - k - 1,
m_k - 1], which states the invariant that each of the K iterations reveals at least one token; for K <= L it gives
MAR's counts exactly (L sin(pi/2 (K-k-1)/K) >= K-k-1, so the lower bound never binds beyond MAR's 1). Classifier-
free guidance follows MAR's linear schedule w_k = 1 + (w - 1)(L - max(m_{k+1}, 1)) / L (MAR evaluates it on the
clamped mask length, so the last iteration's scale is 1 + (w - 1)(L - 1)/L, not w), or is constant."""
from __future__ import annotations

import math

import torch
from torch import Tensor

CFG_SCHEDULES = ("linear", "constant")


def check_iters(iters: int, length: int) -> None:
    if not isinstance(iters, int) or isinstance(iters, bool) or not 1 <= iters <= length:
        raise ValueError(f"iterations K = {iters!r} must be an integer in [1, {length}] (the number of tokens)")


def masked_after(iters: int, length: int) -> list[int]:
    """[m_0 = L, m_1, ..., m_K = 0]: tokens still masked after each iteration."""
    check_iters(iters, length)
    m = [length]
    for k in range(iters):
        if k == iters - 1:
            m.append(0)
            continue
        target = math.floor(length * math.cos(math.pi / 2 * (k + 1) / iters))
        m.append(max(iters - k - 1, min(m[-1] - 1, target)))
    return m


def step_of_rank(iters: int, length: int) -> Tensor:
    """(L,) long: the iteration at which the token of each rank (position in the order) is revealed."""
    m = masked_after(iters, length)
    out = torch.empty(length, dtype=torch.long)
    for k in range(iters):
        out[m[k + 1]:m[k]] = k
    return out


def step_of_token(order: Tensor, iters: int) -> Tensor:
    """(B, L) long: iteration at which each token is revealed, for orders (B, L) (each row a permutation)."""
    b, length = order.shape
    steps = step_of_rank(iters, length).to(order.device).expand(b, length)
    return torch.empty_like(order).scatter_(1, order, steps)


def guidance_scales(scale: float, iters: int, length: int, schedule: str = "linear") -> Tensor:
    """(K,) guidance scale of each iteration: MAR's linear ramp to `scale` (reached at the last) or constant."""
    if schedule not in CFG_SCHEDULES:
        raise ValueError(f"cfg schedule {schedule!r} is not one of: {', '.join(CFG_SCHEDULES)}")
    if schedule == "constant":
        return torch.full((iters,), float(scale))
    m = torch.tensor(masked_after(iters, length)[1:], dtype=torch.float64).clamp_min(1)
    return (1 + (scale - 1) * (length - m) / length).float()


def random_orders(n: int, length: int, generator: torch.Generator | None = None) -> Tensor:
    """(n, L) random permutations (one order per sample)."""
    return torch.argsort(torch.rand(n, length, generator=generator), dim=1)
