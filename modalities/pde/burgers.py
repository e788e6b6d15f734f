"""Viscous Burgers u_t + (u^2 / 2)_x = nu u_xx on the periodic unit interval [0, 1).

Grid: N nodes x_j = j dx, dx = 1 / N; T stored time rows t_n = n dt, dt = t_end / (T - 1); a sample is
u (T, N) with rows as time and row 0 the initial condition.

Scheme (the residual operator): Crank-Nicolson in time, second-order central differences in space on the
conservative flux,
    F(u)_j = (u_{j+1}^2 - u_{j-1}^2) / (4 dx) - nu (u_{j+1} - 2 u_j + u_{j-1}) / dx^2      (periodic j)
    residual^n_j = (u^{n+1}_j - u^n_j) / dt + (F(u^{n+1})_j + F(u^n)_j) / 2,   n = 0 .. T - 2.
`solve_burgers` (numpy / scipy, float64) solves residual^n = 0 for u^{n+1} by Newton's method, so its output
has a residual at round-off; `burgers_residual` is the same operator in torch (differentiable, any dtype).

Defaults nu = 0.05, t_end = 1: the central scheme is resolved (no grid-scale wiggles) when the cell Peclet
number max|u| dx / nu < 2. The initial conditions have max|u0| <= amplitude = 1, and viscous Burgers obeys a
maximum principle, so Pe <= 1 / (32 * 0.05) = 0.625 at N = 32 (0.31 at N = 64); the fronts that steepen by
t ~ 0.3 keep a width ~ 2 nu / max|u| >= 0.1, i.e. >= 3 cells at N = 32. `solve_burgers` refuses Pe >= 2."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_NEWTON_ITERS = 50  # Newton updates per time step before giving up
_NEWTON_TOL = 1e-12  # max-norm of the step residual, relative to 1 + the size of its largest term
_MAX_PECLET = 2.0


def burgers_initial_conditions(n: int, size: int, rng: np.random.Generator, *, length_scale: float = 0.1,
                               amplitude: float = 1.0) -> np.ndarray:
    """n smooth zero-mean periodic fields (n, size): random Fourier series, Gaussian spectrum, max|u0| ~ U(0.5, 1)."""
    if n < 1 or size < 4:
        raise ValueError(f"burgers_initial_conditions needs n >= 1 and size >= 4, got n={n}, size={size}")
    if not length_scale > 0 or not amplitude > 0:
        raise ValueError(f"length_scale and amplitude must be > 0, got {length_scale}, {amplitude}")
    k = np.arange(1, (size - 1) // 2 + 1)  # wavenumbers 1 .. below Nyquist
    # squared-exponential covariance exp(-d^2 / (2 l^2)) has mode variance ~ exp(-(2 pi k l)^2 / 2); k = 1 -> 1
    std = np.exp(-((2 * np.pi * length_scale) ** 2) * (k**2 - 1) / 4)
    phase = 2 * np.pi * k[:, None] * np.arange(size)[None, :] / size  # (K, size)
    a, b = rng.standard_normal((2, n, k.size)) * std
    u0 = a @ np.cos(phase) + b @ np.sin(phase)
    peak = amplitude * rng.uniform(0.5, 1.0, size=(n, 1))
    return u0 / np.abs(u0).max(axis=1, keepdims=True) * peak


def _flux(u: np.ndarray, dx: float, nu: float) -> np.ndarray:
    """Central conservative flux F(u)_j of the scheme, periodic along axis -1."""
    up, um = np.roll(u, -1, axis=-1), np.roll(u, 1, axis=-1)
    return (up**2 - um**2) / (4 * dx) - nu * (up - 2 * u + um) / dx**2


def _jacobian(v: np.ndarray, dt: float, dx: float, nu: float):
    """Block-diagonal sparse Jacobian of the CN step residual in u^{n+1} = v (n, N): periodic tridiagonal blocks."""
    import scipy.sparse as sp

    n, size = v.shape
    idx = np.arange(n * size).reshape(n, size)
    right, left = np.roll(idx, -1, axis=1), np.roll(idx, 1, axis=1)  # columns of u_{j+1}, u_{j-1}
    diag = np.full(v.shape, 1 / dt + nu / dx**2)
    upper = 0.5 * (np.roll(v, -1, axis=1) / (2 * dx) - nu / dx**2)
    lower = 0.5 * (-np.roll(v, 1, axis=1) / (2 * dx) - nu / dx**2)
    rows = np.concatenate([idx.ravel()] * 3)
    cols = np.concatenate([idx.ravel(), right.ravel(), left.ravel()])
    data = np.concatenate([diag.ravel(), upper.ravel(), lower.ravel()])
    return sp.csc_matrix((data, (rows, cols)), shape=(n * size, n * size))  # duplicates (N < 3) are summed


def _step(u: np.ndarray, step: int, dt: float, dx: float, nu: float) -> np.ndarray:
    """One Crank-Nicolson step u^n -> u^{n+1} (n, N) by Newton's method, all samples at once."""
    from scipy.sparse.linalg import spsolve

    f_old = _flux(u, dx, nu)
    peak = np.abs(u).max(axis=1)
    tol = _NEWTON_TOL * (1 + peak * (1 / dt + peak / (2 * dx) + 4 * nu / dx**2))  # per sample
    v = u.copy()
    for it in range(_NEWTON_ITERS + 1):
        g = (v - u) / dt + 0.5 * (_flux(v, dx, nu) + f_old)
        err = np.abs(g).max(axis=1)
        done = bool(np.all(err < tol))
        if it == _NEWTON_ITERS and not done:
            break
        v = v - spsolve(_jacobian(v, dt, dx, nu), g.ravel()).reshape(v.shape)
        if done:  # one update past the tolerance: quadratic convergence takes it to round-off
            return v
    i = int(np.argmax(err / tol))
    raise RuntimeError(f"Burgers Newton solve did not converge at sample {i}, step {step}: |residual| = {err[i]:.3e}")


def solve_burgers(u0: np.ndarray, *, steps: int = 32, t_end: float = 1.0, nu: float = 0.05) -> np.ndarray:
    """Crank-Nicolson / central-flux solution u (n, steps, N) float64 from u0 (n, N); u[:, 0] = u0."""
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.ndim != 2:
        raise ValueError(f"u0 must be (n, N), got shape {u0.shape}")
    if not np.isfinite(u0).all():
        raise ValueError("u0 has non-finite values")
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (row 0 is u0), got {steps}")
    if not t_end > 0:
        raise ValueError(f"t_end must be > 0, got {t_end}")
    if not nu > 0:
        raise ValueError(f"nu must be > 0, got {nu}")
    dx, dt = 1.0 / u0.shape[1], t_end / (steps - 1)
    peak = float(np.abs(u0).max(initial=0.0))
    if peak * dx / nu >= _MAX_PECLET:
        raise ValueError(f"unresolved: cell Peclet max|u| dx / nu = {peak:.3g} * {dx:.3g} / nu={nu:.3g} "
                         f"= {peak * dx / nu:.3g} >= {_MAX_PECLET:g}; raise nu or N")
    u = np.empty((u0.shape[0], steps, u0.shape[1]))
    u[:, 0] = u0
    for n in range(steps - 1):
        u[:, n + 1] = _step(u[:, n], n, dt, dx, nu)
    return u


def burgers_residual(u: Tensor, *, t_end: float = 1.0, nu: float = 0.05) -> Tensor:
    """Crank-Nicolson / central-flux residual (B, T-1, N) of u (B, T, N); dt = t_end / (T-1), dx = 1 / N."""
    if u.ndim != 3 or u.shape[1] < 2:
        raise ValueError(f"u must be (B, T, N) with T >= 2, got {tuple(u.shape)}")
    dx, dt = 1.0 / u.shape[2], t_end / (u.shape[1] - 1)
    up, um = torch.roll(u, -1, dims=-1), torch.roll(u, 1, dims=-1)
    flux = (up**2 - um**2) / (4 * dx) - nu * (up - 2 * u + um) / dx**2
    return (u[:, 1:] - u[:, :-1]) / dt + 0.5 * (flux[:, 1:] + flux[:, :-1])


def burgers_scale(u: Tensor, *, t_end: float = 1.0) -> Tensor:
    """L2 norm (B,) over (n, j) of (u^{n+1} - u^n) / dt: relative residual = ||burgers_residual||_2 / this."""
    if u.ndim != 3 or u.shape[1] < 2:
        raise ValueError(f"u must be (B, T, N) with T >= 2, got {tuple(u.shape)}")
    dt = t_end / (u.shape[1] - 1)
    return ((u[:, 1:] - u[:, :-1]) / dt).flatten(1).norm(dim=1)
