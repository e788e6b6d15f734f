"""Elliptic PDEs on the unit square with zero Dirichlet boundary, on the N x N interior nodes
x_j = (j + 1) h, h = 1 / (N + 1) (the boundary nodes are implicit zeros):

- Darcy flow   -div(a grad u) = f    conservative finite volumes, face coefficient = harmonic mean of the
                                     two nodes it joins (a is extended to the boundary by its nearest node)
- Poisson      -Laplace(u) = f       5-point stencil
- Helmholtz    -Laplace(u) - k^2 u = f

Each has a sparse direct solver (scipy, float64) and a torch residual A(a) u - f that is the same
discrete operator, differentiable in both fields; solver output has a residual at round-off.
Fields are (N, N) per sample, axis -1 is x, axis -2 is y."""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from torch import Tensor


def _harmonic(a, b):
    """Face coefficient 2ab / (a + b) (exact flux continuity across a jump of a)."""
    return 2 * a * b / (a + b)


# ---- torch residuals (differentiable; (B, N, N) fields) ----

def _check(name: str, *fields: Tensor) -> None:
    for f in fields:
        if f.ndim != 3 or f.shape[-1] != f.shape[-2]:
            raise ValueError(f"{name}: fields must be (B, N, N) square grids, got {tuple(f.shape)}")


def _neighbours(u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(east, west, north, south) neighbours of every interior node, zero on the Dirichlet boundary."""
    p = F.pad(u, (1, 1, 1, 1))
    return p[:, 1:-1, 2:], p[:, 1:-1, :-2], p[:, 2:, 1:-1], p[:, :-2, 1:-1]


def laplacian(u: Tensor) -> Tensor:
    """5-point Laplacian with zero Dirichlet boundary: (uE + uW + uN + uS - 4u) / h^2, (B, N, N)."""
    _check("laplacian", u)
    h = 1.0 / (u.shape[-1] + 1)
    e, w, n, s = _neighbours(u)
    return (e + w + n + s - 4 * u) / h**2


def darcy_operator(a: Tensor, u: Tensor) -> Tensor:
    """-div(a grad u) by finite volumes with harmonic-mean faces; a > 0 and u are (B, N, N)."""
    _check("darcy_operator", a, u)
    if a.shape != u.shape:
        raise ValueError(f"darcy_operator: a {tuple(a.shape)} and u {tuple(u.shape)} must have one shape")
    h = 1.0 / (u.shape[-1] + 1)
    ap = F.pad(a[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    c = ap[:, 1:-1, 1:-1]
    a_e, a_w = _harmonic(c, ap[:, 1:-1, 2:]), _harmonic(c, ap[:, 1:-1, :-2])
    a_n, a_s = _harmonic(c, ap[:, 2:, 1:-1]), _harmonic(c, ap[:, :-2, 1:-1])
    e, w, n, s = _neighbours(u)
    return -(a_e * (e - u) - a_w * (u - w) + a_n * (n - u) - a_s * (u - s)) / h**2


def darcy_residual(a: Tensor, u: Tensor, f: float | Tensor = 1.0) -> Tensor:
    return darcy_operator(a, u) - f


def poisson_residual(f: Tensor, u: Tensor) -> Tensor:
    return -laplacian(u) - f


def helmholtz_residual(f: Tensor, u: Tensor, k: float = 1.0) -> Tensor:
    return -laplacian(u) - k**2 * u - f


# ---- numpy / scipy solvers (float64) ----

def _index(n: int) -> np.ndarray:
    return np.arange(n * n).reshape(n, n)


def darcy_matrix(a: np.ndarray):
    """Sparse (N^2, N^2) matrix of -div(a grad .) for one coefficient field a (N, N), a > 0."""
    import scipy.sparse as sp

    n = a.shape[-1]
    h = 1.0 / (n + 1)
    ap = np.pad(a, 1, mode="edge")
    c = ap[1:-1, 1:-1]
    faces = {(0, 1): _harmonic(c, ap[1:-1, 2:]), (0, -1): _harmonic(c, ap[1:-1, :-2]),
             (1, 0): _harmonic(c, ap[2:, 1:-1]), (-1, 0): _harmonic(c, ap[:-2, 1:-1])}
    idx = _index(n)
    rows, cols, vals = [idx.ravel()], [idx.ravel()], [sum(faces.values()).ravel() / h**2]
    for (di, dj), coef in faces.items():
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        inside = (i + di >= 0) & (i + di < n) & (j + dj >= 0) & (j + dj < n)
        rows.append(idx[inside])
        cols.append(idx[i[inside] + di, j[inside] + dj])
        vals.append(-coef[inside] / h**2)
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n, n * n))


def laplacian_matrix(n: int):
    """Sparse -Laplacian (5-point, zero Dirichlet) on N x N interior nodes: darcy_matrix with a = 1."""
    return darcy_matrix(np.ones((n, n)))


def _solve(matrix, rhs: np.ndarray, what: str) -> np.ndarray:
    from scipy.sparse.linalg import spsolve

    u = spsolve(matrix, rhs.ravel())
    r = matrix @ u - rhs.ravel()
    if not np.all(np.isfinite(u)) or np.linalg.norm(r) > 1e-8 * max(np.linalg.norm(rhs), 1e-300):
        raise RuntimeError(f"{what}: the sparse solve failed (relative residual "
                           f"{np.linalg.norm(r) / max(np.linalg.norm(rhs), 1e-300):.2e})")
    return u.reshape(rhs.shape)


def solve_darcy(a: np.ndarray, f: float = 1.0) -> np.ndarray:
    """u (n, N, N) with -div(a grad u) = f, u = 0 on the boundary, for coefficients a (n, N, N) > 0."""
    if a.ndim != 3 or not np.all(np.isfinite(a)) or not np.all(a > 0):
        raise ValueError(f"solve_darcy: a must be finite, positive and (n, N, N), got shape {a.shape}")
    return np.stack([_solve(darcy_matrix(ai), np.full(ai.shape, float(f)), f"Darcy sample {i}")
                     for i, ai in enumerate(a)])


def dirichlet_eigenvalues(n: int) -> np.ndarray:
    """Eigenvalues of the discrete -Laplacian: (4 / h^2) (sin^2(p pi h / 2) + sin^2(q pi h / 2)), p, q = 1..N."""
    h = 1.0 / (n + 1)
    s = np.sin(np.arange(1, n + 1) * np.pi * h / 2) ** 2 * 4 / h**2
    return (s[:, None] + s[None, :]).ravel()


def solve_helmholtz(f: np.ndarray, k: float = 0.0) -> np.ndarray:
    """u (n, N, N) with -Laplace(u) - k^2 u = f, u = 0 on the boundary (k = 0: Poisson)."""
    import scipy.sparse as sp

    if f.ndim != 3 or not np.all(np.isfinite(f)):
        raise ValueError(f"solve_helmholtz: f must be finite and (n, N, N), got shape {f.shape}")
    n = f.shape[-1]
    gap = np.min(np.abs(dirichlet_eigenvalues(n) - k**2))
    if k != 0 and gap < 1e-6 * k**2:
        raise ValueError(f"solve_helmholtz: k^2 = {k**2} is an eigenvalue of the discrete Laplacian (resonance); "
                         "choose another k")
    matrix = (laplacian_matrix(n) - k**2 * sp.identity(n * n)).tocsc()
    return np.stack([_solve(matrix, fi, f"Helmholtz sample {i}") for i, fi in enumerate(f)])
