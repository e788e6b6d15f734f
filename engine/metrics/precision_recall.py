"""Improved precision and recall of a generated feature set against a real one (Kynkaanniemi, Karras, Laine,
Lehtinen and Aila 2019, "Improved Precision and Recall Metric for Assessing Generative Models", NeurIPS, sec. 2).

Each set stands for its manifold: the union of balls around its points, each ball's radius the distance to the
point's k-th nearest neighbour in its own set (itself excluded). Precision is the share of generated points inside
the real manifold (samples that look real), recall the share of real points inside the generated manifold (real
variety the generator covers); mass between the classes lowers precision, dropped classes lower recall.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray
BLOCK = 2**23  # float64 entries per distance block (64 MB): 10k x 10k runs in blocks of 838 rows


class PrecisionRecall(NamedTuple):
    """Precision: share of generated features in the real manifold; recall: share of real ones in the generated."""

    precision: float
    recall: float


def _features(x: ArrayLike, name: str) -> Tensor:
    """x as a float64 (N, D) tensor with N, D >= 1 and finite entries, else a ValueError naming it."""
    t = torch.as_tensor(x).to(torch.float64)
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name} must be features (N, D) with N, D >= 1, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} has non-finite entries")
    return t


def _check_k(k: int, n: int, name: str) -> None:
    """k must be an integer with 1 <= k < n: the k-th nearest other point must exist."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if n <= k:
        raise ValueError(f"{name} needs more than k = {k} points for k-NN radii, got {n}")


def _rows(n_cols: int) -> int:
    """Rows per distance block against n_cols columns, within BLOCK entries."""
    return max(1, BLOCK // max(1, n_cols))


def knn_radii(features: ArrayLike, k: int = 3) -> Tensor:
    """Radii (N,) float64: distance of each row of features (N, D) to its k-th nearest other row (itself excluded,
    duplicates of it count as neighbours at distance 0)."""
    x = _features(features, "features")
    _check_k(k, x.shape[0], "features")
    radii = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    step = _rows(x.shape[0])
    for i in range(0, x.shape[0], step):
        dist = torch.cdist(x[i:i + step], x)
        rows = torch.arange(dist.shape[0], device=x.device)
        dist[rows, rows + i] = float("inf")  # exclude the point itself
        radii[i:i + step] = dist.kthvalue(k, dim=1).values
    return radii


def manifold_fraction(points: ArrayLike, support: ArrayLike, radii: ArrayLike) -> float:
    """Share of points (N, D) inside at least one ball |p - s_j| <= r_j around support (M, D) with radii (M,)."""
    s = _features(support, "support")
    p = _features(points, "points").to(s.device)
    r = torch.as_tensor(radii).to(dtype=torch.float64, device=s.device)
    if p.shape[1] != s.shape[1]:
        raise ValueError(f"points and support need the same feature size, got {p.shape[1]} and {s.shape[1]}")
    if r.shape != (s.shape[0],):
        raise ValueError(f"radii must have shape ({s.shape[0]},), got {tuple(r.shape)}")
    inside = 0
    step = _rows(s.shape[0])
    for i in range(0, p.shape[0], step):
        inside += int((torch.cdist(p[i:i + step], s) <= r).any(dim=1).sum())
    return inside / p.shape[0]


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019, eqs. 1-3) of generated features fake (N_g, D)
    against real features (N_r, D), k-NN radii with k = 3 by default; both sets need more than k rows.

    precision = (1 / N_g) sum_g f(phi_g, Phi_r),  recall = (1 / N_r) sum_r f(phi_r, Phi_g), where f(phi, Phi) = 1
    if |phi - phi'| <= |phi' - NN_k(phi', Phi)| for some phi' in Phi. Computed in float64 with torch.cdist, in
    distance blocks of at most BLOCK entries. The radii shrink as a set grows, so compare at equal set sizes.
    """
    r, g = _features(real, "real"), _features(fake, "fake")
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"real and fake need the same feature size, got {r.shape[1]} and {g.shape[1]}")
    g = g.to(r.device)
    _check_k(k, r.shape[0], "real")
    _check_k(k, g.shape[0], "fake")
    return PrecisionRecall(precision=manifold_fraction(g, r, knn_radii(r, k)),
                           recall=manifold_fraction(r, g, knn_radii(g, k)))
