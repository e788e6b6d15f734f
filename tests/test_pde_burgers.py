"""Viscous Burgers (burgers.py): solver output at round-off, the residual operator against hand-derived
closed forms and the exact Cole-Hopf solution, initial conditions, and one-line errors."""
import math

import numpy as np
import pytest
import torch

from unidistill.modalities.pde import burgers
from unidistill.modalities.pde.burgers import (
    burgers_initial_conditions,
    burgers_residual,
    burgers_scale,
    solve_burgers,
)


def relative(u: torch.Tensor, **kw) -> torch.Tensor:
    t_end = kw.get("t_end", 1.0)
    return burgers_residual(u, **kw).flatten(1).norm(dim=1) / burgers_scale(u, t_end=t_end)


def cole_hopf(size: int, steps: int, nu: float, t_end: float = 1.0, a: float = 1.5) -> np.ndarray:
    """Exact periodic viscous Burgers solution u = -2 nu (log phi)_x, phi = a + exp(-nu k^2 t) cos(k x), k = 2 pi."""
    x = np.arange(size) / size
    t = np.linspace(0.0, t_end, steps)[:, None]
    k = 2 * np.pi
    e = np.exp(-nu * k**2 * t)
    return 2 * nu * k * e * np.sin(k * x) / (a + e * np.cos(k * x))


@pytest.mark.parametrize("n,size", [(8, 32), (2, 64)])
def test_solver_residual_is_round_off(n, size):
    u0 = burgers_initial_conditions(n, size, np.random.default_rng(size))
    u = solve_burgers(u0, steps=size)
    assert u.shape == (n, size, size) and u.dtype == np.float64
    assert np.array_equal(u[:, 0], u0)
    x = torch.from_numpy(u)
    assert relative(x).max() < 1e-12  # measured ~1e-15
    # perturbing the solution by 1e-3 of its size is far above the floor: the residual sees the field
    assert relative(x * 1.001).min() > 1e-5


def test_constant_field_has_zero_residual():
    u = torch.full((2, 5, 16), 0.7, dtype=torch.float64)
    u[1] = -1.3
    assert torch.equal(burgers_residual(u), torch.zeros(2, 4, 16, dtype=torch.float64))


@pytest.mark.parametrize("size", [8, 32])
def test_residual_matches_hand_derived_sine_stencil(size):
    # u = A sin(2 pi x): sin^2(a) - sin^2(b) = sin(a + b) sin(a - b) and sin(q + h) - 2 sin q + sin(q - h)
    # = -4 sin^2(h / 2) sin q give F(u) = A^2 sin(4 pi x) sin(4 pi dx) / (4 dx) + 4 nu A sin^2(pi dx) sin(2 pi x) / dx^2
    amp, nu, t_end = 0.8, 0.3, 0.25
    dx = 1.0 / size
    x = np.arange(size) * dx
    u = amp * np.sin(2 * np.pi * x)
    flux = (amp**2 * np.sin(4 * np.pi * x) * np.sin(4 * np.pi * dx) / (4 * dx)
            + 4 * nu * amp * np.sin(np.pi * dx) ** 2 * np.sin(2 * np.pi * x) / dx**2)
    # two rows with one time step dt = t_end: (u, 0) and (0, u); F(0) = 0, so the CN average halves F(u)
    fields = torch.from_numpy(np.stack([np.stack([u, 0 * u]), np.stack([0 * u, u])]))
    want = np.stack([-u / t_end + 0.5 * flux, u / t_end + 0.5 * flux])[:, None]
    got = burgers_residual(fields, t_end=t_end, nu=nu).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_residual_converges_second_order_on_exact_cole_hopf_solution():
    # the exact solution's relative residual is the scheme's truncation error, O(dx^2 + dt^2) with dt = dx
    nu = 0.05
    exact = [torch.from_numpy(cole_hopf(size, size + 1, nu))[None] for size in (32, 64, 128, 256)]
    errors = [relative(u, nu=nu).item() for u in exact]
    ratios = [e0 / e1 for e0, e1 in zip(errors, errors[1:])]
    assert errors[0] < 0.02 and all(3.5 < r < 4.5 for r in ratios), (errors, ratios)


def test_solver_converges_second_order_to_exact_cole_hopf_solution():
    nu = 0.05
    errors = []
    for size in (32, 64):
        exact = cole_hopf(size, size + 1, nu)
        u = solve_burgers(exact[None, 0], steps=size + 1, nu=nu)[0]
        errors.append(np.abs(u - exact).max() / np.abs(exact).max())
    assert errors[0] < 5e-3 and 3.5 < errors[0] / errors[1] < 4.5, errors


def test_residual_is_differentiable_and_keeps_dtype():
    u = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: burgers_residual(v, nu=0.1), (u,))
    assert burgers_residual(u.detach().float()).dtype == torch.float32


def test_scale_is_l2_norm_of_time_difference():
    u = torch.zeros(1, 3, 16, dtype=torch.float64)
    u[0, 1], u[0, 2] = 2.0, 3.0  # t_end = 4 -> dt = 2: differences / dt are 1 and 0.5 on 16 nodes each
    assert torch.allclose(burgers_scale(u, t_end=4.0), torch.tensor([math.sqrt(16 * 1.25)], dtype=torch.float64))


def test_initial_conditions_are_reproducible_smooth_and_normalised():
    a = burgers_initial_conditions(200, 32, np.random.default_rng(0))
    b = burgers_initial_conditions(200, 32, np.random.default_rng(0))
    c = burgers_initial_conditions(200, 32, np.random.default_rng(1))
    assert a.shape == (200, 32) and a.dtype == np.float64
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    peak = np.abs(a).max(axis=1)
    assert peak.min() >= 0.5 - 1e-12 and peak.max() <= 1.0 + 1e-12
    assert np.abs(a.mean(axis=1)).max() < 1e-12  # zero mean
    # smooth: Gaussian spectrum, so wavenumbers >= 8 hold a negligible share of the energy
    power = np.abs(np.fft.rfft(a, axis=1)) ** 2
    assert (power[:, 8:].sum(axis=1) / power.sum(axis=1)).max() < 1e-4
    assert np.abs(burgers_initial_conditions(3, 32, np.random.default_rng(0), amplitude=2.0)).max() <= 2.0 + 1e-12


def test_bad_inputs_raise_one_line_errors():
    u0 = burgers_initial_conditions(2, 32, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"Peclet.*nu="):
        solve_burgers(u0 * 0 + 1.0, nu=0.01)  # 1 * (1/32) / 0.01 = 3.1 >= 2
    bad = u0.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="u0 has non-finite"):
        solve_burgers(bad)
    with pytest.raises(ValueError, match="u0 must be"):
        solve_burgers(u0[0])
    with pytest.raises(ValueError, match="steps"):
        solve_burgers(u0, steps=1)
    with pytest.raises(ValueError, match="t_end"):
        solve_burgers(u0, t_end=0.0)
    with pytest.raises(ValueError, match="nu must be"):
        solve_burgers(u0, nu=-0.1)
    with pytest.raises(ValueError, match="u must be"):
        burgers_residual(torch.zeros(4, 32))
    with pytest.raises(ValueError, match="u must be"):
        burgers_scale(torch.zeros(4, 1, 32))
    with pytest.raises(ValueError, match="n >= 1"):
        burgers_initial_conditions(0, 32, np.random.default_rng(0))


def test_newton_failure_names_sample_step_and_residual(monkeypatch):
    monkeypatch.setattr(burgers, "_NEWTON_ITERS", 0)
    u0 = burgers_initial_conditions(2, 32, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match=r"did not converge at sample \d, step 0: \|residual\| = "):
        solve_burgers(u0)
