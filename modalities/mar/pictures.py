"""Pictures of MAR samples: digit grids, and the unmasking order (the picture after each iteration, tokens not yet
revealed shown grey)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from unidistill.modalities.shared.pictures import save_grid

from .schedule import step_of_token
from .tokens import unpatchify


def save_digits(tokens: Tensor, patch: int, path: Path, nrow: int = 10) -> Path:
    """Samples (N, L, d) as a PNG grid of digits."""
    return save_grid(unpatchify(tokens.detach().float().cpu(), patch), path, nrow=nrow)


def save_unmasking(tokens: Tensor, order: Tensor, iters: int, patch: int, path: Path) -> Path:
    """One row per sample (N, L, d): the picture after iterations 1 .. K, unrevealed tokens at 0 (grey)."""
    steps = step_of_token(order.cpu(), iters)
    frames = [torch.where((steps <= k)[..., None], tokens.detach().float().cpu(), torch.zeros(()))
              for k in range(iters)]
    grid = torch.stack(frames, 1).reshape(-1, *tokens.shape[1:])  # row-major: sample, then iteration
    return save_grid(unpatchify(grid, patch), path, nrow=iters)
