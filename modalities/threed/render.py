"""Emission-absorption volume rendering in plain PyTorch, and the render-size helpers training uses.

Rays are clipped to the box [-bound, bound]^3 and sampled at n stratified points t_i = near + (i + u_i)/n (far - near)
(u_i = 1/2 without a generator, so a render is a fixed function of scene and camera); with delta = (far - near)/n,
alpha_i = 1 - exp(-sigma_i delta), T_i = exp(-sum_{j<i} sigma_j delta), w_i = T_i alpha_i (Max 1995; NeRF eq. 3),
rgb = sum_i w_i c_i + (1 - sum_i w_i) background, depth = sum_i w_i t_i.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .cameras import Cameras, rays

Field = Callable[[Tensor], tuple[Tensor, Tensor]]  # points (B, N, 3) -> sigma (B, N) >= 0, rgb (B, N, 3) in [0, 1]


@dataclass
class Rendered:
    """What one render returns, channels first."""

    rgb: Tensor      # (B, 3, H, W) in [0, 1], composited over the background
    opacity: Tensor  # (B, 1, H, W), sum of weights
    depth: Tensor    # (B, 1, H, W), sum_i w_i t_i (expected distance along the ray; 0 where empty)


def clip_to_box(origins: Tensor, dirs: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """Slab test against [-bound, bound]^3: near, far (...,) with near = far = 0 where the ray misses."""
    tiny = torch.finfo(dirs.dtype).tiny ** 0.5
    d = torch.where(dirs.abs() < tiny, torch.full_like(dirs, tiny), dirs)  # a zero component: an infinite slab
    t1, t2 = (-bound - origins) / d, (bound - origins) / d  # (..., 3)
    near = torch.minimum(t1, t2).amax(-1).clamp_min(0.0)
    far = torch.maximum(t1, t2).amin(-1)
    hit = far > near
    return torch.where(hit, near, torch.zeros_like(near)), torch.where(hit, far, torch.zeros_like(far))


def composite(sigma: Tensor, rgb: Tensor, t: Tensor, delta: Tensor, background: Tensor):
    """sigma, t (..., n), rgb (..., n, 3), delta (..., 1), background (..., 3) -> rgb (..., 3), opacity, depth (...)."""
    sd = sigma * delta  # (..., n) optical depth of each sample
    alpha = -torch.expm1(-sd)  # 1 - exp(-sigma delta)
    before = torch.cat([torch.zeros_like(sd[..., :1]), torch.cumsum(sd, -1)[..., :-1]], -1)  # exclusive cumsum
    w = torch.exp(-before) * alpha  # T_i alpha_i
    opacity = w.sum(-1)
    colour = (w[..., None] * rgb).sum(-2) + (1.0 - opacity)[..., None] * background
    return colour, opacity, (w * t).sum(-1)


def _check_field(sigma: Tensor, rgb: Tensor, b: int, n: int) -> None:
    if sigma.shape != (b, n) or rgb.shape != (b, n, 3):
        raise ValueError(f"a field must return sigma ({b}, {n}) and rgb ({b}, {n}, 3) for points ({b}, {n}, 3), "
                         f"got {tuple(sigma.shape)} and {tuple(rgb.shape)}")


def render(field: Field, cameras: Cameras, height: int, width: int, n_samples: int = 64,
           background: Tensor | None = None, bound: float = 1.0, generator: torch.Generator | None = None,
           chunk: int | None = None) -> Rendered:
    """Volume-render field from every camera (module docstring); chunk = rays per camera per field call."""
    sizes = (("height", height), ("width", width), ("n_samples", n_samples))
    for name, value in sizes + ((("chunk", chunk),) if chunk is not None else ()):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"render {name} must be an integer >= 1, got {value!r}")
    b, n, r = len(cameras), n_samples, height * width
    origins, dirs = (x.reshape(b, r, 3) for x in rays(cameras, height, width))  # (B, R, 3)
    dtype, device = dirs.dtype, dirs.device
    near, far = clip_to_box(origins, dirs, bound)  # (B, R)
    if generator is None:
        u = torch.full((b, r, n), 0.5, dtype=dtype, device=device)
    else:  # drawn for all rays at once, so chunking does not change the draws
        u = torch.rand((b, r, n), generator=generator, dtype=dtype, device=generator.device).to(device)
    steps = torch.arange(n, dtype=dtype, device=device)
    t = near[..., None] + (steps + u) / n * (far - near)[..., None]  # (B, R, n)
    delta = ((far - near) / n)[..., None]  # (B, R, 1)
    if background is None:
        background = torch.zeros(3, dtype=dtype, device=device)
    bg = background.to(device=device, dtype=dtype).expand(b, 3)[:, None, :]  # (B, 1, 3)
    outs = []
    for s in range(0, r, chunk or r):
        sl = slice(s, s + (chunk or r))
        pts = origins[:, sl, None, :] + t[:, sl, :, None] * dirs[:, sl, None, :]  # (B, c, n, 3)
        m = pts.shape[1] * n
        sigma, rgb = field(pts.reshape(b, m, 3))
        _check_field(sigma, rgb, b, m)
        c = pts.shape[1]
        outs.append(composite(sigma.reshape(b, c, n), rgb.reshape(b, c, n, 3), t[:, sl], delta[:, sl], bg))
    colour, opacity, depth = (torch.cat(parts, 1) for parts in zip(*outs))  # (B, R, 3), (B, R), (B, R)
    return Rendered(colour.reshape(b, height, width, 3).permute(0, 3, 1, 2),
                    opacity.reshape(b, 1, height, width), depth.reshape(b, 1, height, width))


def render_step_memory(batch: int, height: int, width: int, n_samples: int, channels: int = 4,
                       bytes_per_value: int = 4) -> int:
    """Bytes of one render's per-sample tensors kept for backward: points 3, field outputs `channels`, weighted
    colour 3 and seven scalars (u, t, sigma delta, alpha, cumsum, T, w); the field's own activations are extra."""
    per_sample = 3 + channels + 3 + 7
    return int(batch) * int(height) * int(width) * int(n_samples) * per_sample * int(bytes_per_value)


def resolution_at(progress: float, schedule: Sequence[tuple[float, int]]) -> int:
    """The size of the last (fraction, size) entry with fraction <= progress (the first entry's before it):
    [(0.0, 32), (0.5, 64)] renders 32 until half of training, then 64."""
    entries = list(schedule)
    if not entries:
        raise ValueError("resolution schedule is empty; give [[fraction, size], ...], e.g. [[0.0, 64]]")
    for i, entry in enumerate(entries):
        try:
            fraction, size = entry
        except (TypeError, ValueError):
            raise ValueError(f"resolution schedule entry {i} must be [fraction, size], got {entry!r}") from None
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"resolution schedule entry {i}: size must be an integer >= 1, got {size!r}")
        if i and not fraction > entries[i - 1][0]:
            raise ValueError(f"resolution schedule must be sorted by increasing fraction, got {entries!r}")
    size = entries[0][1]
    for fraction, s in entries:
        if progress >= fraction:
            size = s
    return size
