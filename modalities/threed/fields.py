"""Scenes as parameters: a batch of density + colour voxel grids read by trilinear interpolation.

grid[b, c, i, j, k] holds the value at (x, y, z) = (-bound + 2 bound i/(R-1), ... j -> y, k -> z), so voxel
(0, 0, 0) sits at the corner (-bound, -bound, -bound) and (R-1, R-1, R-1) at the opposite one (align_corners).
sigma = softplus(raw density + blob bias), rgb = sigmoid(raw colour) (Magic3D's blob initialisation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .render import Field


def sample_grid(grid: Tensor, points: Tensor, bound: float = 1.0) -> Tensor:
    """Trilinear grid (B, C, R, R, R) at points (B, N, 3) -> (B, N, C); zero outside [-bound, bound]^3."""
    b, n = points.shape[:2]
    # grid_sample reads (x, y, z) of its last axis as indices (W, H, D) = our (k, j, i), so reverse the coordinates
    coords = (points.flip(-1) / bound).reshape(b, 1, 1, n, 3).to(grid.dtype)
    out = F.grid_sample(grid, coords, mode="bilinear", padding_mode="zeros", align_corners=True)  # (B, C, 1, 1, N)
    return out.reshape(b, grid.shape[1], n).transpose(1, 2)


def blob_bias(points: Tensor, strength: float = 10.0, radius: float = 0.5) -> Tensor:
    """Magic3D's density bias strength (1 - |x| / radius), (B, N): a dense ball of that radius at the start."""
    return strength * (1.0 - torch.linalg.vector_norm(points, dim=-1) / radius)


def lattice(resolution: int, bound: float = 1.0, dtype=None, device=None) -> Tensor:
    """The grid's node positions (R^3, 3), row-major over (i, j, k) like grid[b, c].reshape(-1)."""
    axis = torch.linspace(-bound, bound, resolution, dtype=dtype, device=device)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def inverse_softplus(y: Tensor) -> Tensor:
    """x with softplus(x) = y > 0: y + log(1 - exp(-y))."""
    return y + torch.log(-torch.expm1(-y))


class VoxelGrids(nn.Module):
    """count scenes, each a density + colour voxel grid (parameter names start with `density` / `colour`, so
    per-group learning rates `generator.density`, `generator.colour` work through named parameters)."""

    def __init__(self, count: int, resolution: int = 32, bound: float = 1.0, blob: float = 10.0,
                 blob_radius: float = 0.5, init_std: float = 0.0):
        super().__init__()
        for name, value, low in (("count", count, 1), ("resolution", resolution, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"VoxelGrids {name} must be an integer >= {low}, got {value!r}")
        if not (bound > 0 and blob_radius > 0 and init_std >= 0):
            raise ValueError(f"VoxelGrids needs bound > 0, blob_radius > 0, init_std >= 0; "
                             f"got {bound!r}, {blob_radius!r}, {init_std!r}")
        r = resolution
        self.resolution, self.bound, self.blob, self.blob_radius = r, float(bound), float(blob), float(blob_radius)
        self.density = nn.Parameter(init_std * torch.randn(count, 1, r, r, r))  # raw, before the bias and softplus
        self.colour = nn.Parameter(torch.zeros(count, 3, r, r, r))  # logits

    def __len__(self) -> int:
        return self.density.shape[0]

    def density_at(self, index: Tensor, points: Tensor) -> Tensor:
        """sigma = softplus(trilinear raw density + blob bias), (B, N) for index (B,), points (B, N, 3)."""
        raw = sample_grid(self.density[index], points, self.bound)[..., 0]
        return F.softplus(raw + blob_bias(points, self.blob, self.blob_radius).to(raw))

    def colour_at(self, index: Tensor, points: Tensor) -> Tensor:
        """rgb = sigmoid(trilinear raw colour), (B, N, 3)."""
        return torch.sigmoid(sample_grid(self.colour[index], points, self.bound))

    def forward(self, index: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
        """Scene index[b] at points[b]: sigma (B, N), rgb (B, N, 3)."""
        return self.density_at(index, points), self.colour_at(index, points)

    def field(self, index: Tensor) -> Field:
        """The renderable field of scene index[b] for batch row b."""
        return lambda points: self(index, points)

    @torch.no_grad()
    def fit(self, index: int, field: Field, eps: float = 1e-4, chunk: int = 65536) -> None:
        """Set grid `index` to reproduce field at the grid nodes: raw = softplus^-1(max(sigma, eps)) - bias,
        colour = logit(clamp(rgb, eps, 1 - eps))."""
        pts = lattice(self.resolution, self.bound, self.density.dtype, self.density.device)  # (R^3, 3)
        sig, col = zip(*(field(p[None]) for p in pts.split(chunk)))
        sigma, rgb = torch.cat(sig, 1)[0], torch.cat(col, 1)[0]  # (R^3,), (R^3, 3)
        raw = inverse_softplus(sigma.clamp_min(eps)) - blob_bias(pts, self.blob, self.blob_radius)
        r = self.resolution
        self.density[index] = raw.reshape(1, r, r, r)
        self.colour[index] = torch.logit(rgb.clamp(eps, 1 - eps)).T.reshape(3, r, r, r)
