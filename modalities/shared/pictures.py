"""Sample grids as PNG files (nearest-neighbour upscaled so 8x8 digits are visible)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from torch import Tensor


def save_grid(images: Tensor, path: str | Path, nrow: int = 10, scale: int | None = None) -> Path:
    """Write images (N, C, H, W) in [-1, 1] (C = 1 or 3) as one PNG grid with 1-pixel gutters."""
    from PIL import Image

    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
    n, c, h, w = x.shape
    if c not in (1, 3):
        x = x[:, :1] if c < 3 else x[:, :3]
        c = x.shape[1]
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + 1) + 1, nrow * (w + 1) + 1, c), 64, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = x[i].transpose(1, 2, 0)
    scale = scale or max(1, 256 // max(h, w) // 4)
    img = Image.fromarray(grid[..., 0] if c == 1 else grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                                                   Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    img.save(tmp)
    tmp.replace(path)
    return path
