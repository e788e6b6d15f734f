"""Sampling a MAR model: the outer unmasking loop shared by the teacher and the one-step students, the per-token
reverse chain of the head, and a stopwatch that splits wall time between transformer and head.

Per-token chain: T head calls at times evenly spaced from t_max down to t_min (MAR respaces its 1000 DDPM indices
to T evenly spaced ones from 999 down to 0, the last call at index 0); each call forms D from the (guided) eps and
moves to the next time by the DDPM posterior, variance c^2 = (sigma_s^2 / sigma_t^2)(1 - alpha_t^2 / alpha_s^2)
(eta = 1; eta = 0 is DDIM's deterministic map); the last call returns its D.
Temperature multiplies only the noise of each step, as in MAR (`p_sample`): it is not a density temperature.
MAR learns the variance between beta and the posterior's; the posterior's is used here."""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import Tensor

from .schedule import check_iters, guidance_scales, masked_after, random_orders, step_of_token


class Stopwatch:
    """Seconds and calls per part ("transformer", "head"); the device is synchronised around each timed block,
    so asynchronous CUDA work is charged to the part that launched it."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, part: str, calls: int, device: torch.device):
        _sync(device)
        start = time.perf_counter()
        yield
        _sync(device)
        self.seconds[part] += time.perf_counter() - start
        self.calls[part] += calls


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _no_watch(part, calls, device):
    yield


def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """x (B, L, ...) at positions idx (B, n) -> (B, n, ...)."""
    return x.gather(1, idx.reshape(*idx.shape, *(1,) * (x.ndim - 2)).expand(*idx.shape, *x.shape[2:]))


def unmask(order: Tensor, iters: int, token_dim: int, predict: Callable[[Tensor, Tensor, Tensor, int], Tensor],
           dtype=torch.float32) -> Tensor:
    """MAR's outer loop: tokens (B, L, d) start at zero; iteration k calls predict(tokens, visible (B, L), idx
    (B, n_k), k) -> values (B, n_k, d) of the tokens it reveals (order[:, m_{k+1}:m_k]), written out of place so
    a graph through predict is kept."""
    b, length = order.shape
    check_iters(iters, length)
    m, steps = masked_after(iters, length), step_of_token(order, iters)
    tokens = torch.zeros(b, length, token_dim, dtype=dtype, device=order.device)
    for k in range(iters):
        idx = order[:, m[k + 1]:m[k]]
        values = predict(tokens, steps < k, idx, k)
        tokens = tokens.scatter(1, idx[..., None].expand(-1, -1, token_dim), values.to(dtype))
    return tokens


def reverse_chain(eps_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, process, steps: int, eta: float = 1.0,
                  temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """x (N, d) at t_max -> x0 in `steps` head calls of the DDPM posterior (eta = 1) or DDIM (eta = 0)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"head steps T = {steps!r} must be an integer >= 1")
    times = torch.linspace(process.t_max, process.t_min, steps, dtype=torch.float64) if steps > 1 else \
        torch.tensor([process.t_max], dtype=torch.float64)
    for j in range(steps):
        t = times[j]
        a_t, b_t = float(process.alpha(t)), float(process.sigma(t))
        eps = eps_fn(x, torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype))
        d = (x - b_t * eps) / a_t
        if j == steps - 1:
            return d
        s = times[j + 1]
        a_s, b_s = float(process.alpha(s)), float(process.sigma(s))
        c2 = eta**2 * (b_s**2 / b_t**2) * (1 - a_t**2 / a_s**2)
        x = a_s * d + (b_s**2 - c2) ** 0.5 * eps
        if c2 > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = x + temperature * c2**0.5 * noise
    return x


@torch.no_grad()
def sample_mar(model, labels: Tensor, iters: int, steps: int, guidance: float = 1.0, schedule: str = "linear",
               temperature: float = 1.0, generator: torch.Generator | None = None, order: Tensor | None = None,
               eta: float = 1.0, watch: Stopwatch | None = None) -> Tensor:
    """Tokens (B, L, d) from the MAR teacher: K = iters unmasking iterations, each token by `steps` head steps,
    guidance on eps with MAR's schedule (both halves share their noise). Draws come from `generator` (CPU)."""
    transformer, head, process = model.transformer, model.head, model.process
    device, b = labels.device, labels.shape[0]
    order = random_orders(b, model.length, generator).to(device) if order is None else order
    scales = guidance_scales(guidance, iters, model.length, schedule)
    guided = guidance != 1.0
    halves = 2 if guided else 1
    watch = watch or _no_watch

    def predict(tokens, visible, idx, k):
        n = idx.shape[1]
        with watch("transformer", halves, device):
            drop = torch.arange(halves * b, device=device) >= b
            z = transformer(tokens.repeat(halves, 1, 1), visible.repeat(halves, 1), labels.repeat(halves), drop=drop)
            z = torch.cat([gather_tokens(part, idx) for part in z.split(b)]).reshape(halves, b * n, -1)
        x = torch.randn(b * n, model.token_dim, generator=generator).to(device)

        def eps_fn(x_t, t):
            e = head(x_t.repeat(halves, 1), t.repeat(halves), z.reshape(halves * b * n, -1))
            if not guided:
                return e
            e_c, e_u = e.split(b * n)
            return e_u + float(scales[k]) * (e_c - e_u)

        with watch("head", steps * b * n * halves, device):
            out = reverse_chain(eps_fn, x, process, steps, eta, temperature, generator)
        return out.reshape(b, n, -1)

    return unmask(order, iters, model.token_dim, predict)
