"""The solution-error measure, coefficient statistics and spectra (measures.py), and the solver-preconditioned
guidance norm: zero on solver data, known values on manufactured pairs."""
import math

import numpy as np
import pytest
import torch
from pde_fixtures import SIZE, tiny_pde_teacher

from unidistill.modalities.pde import elliptic
from unidistill.modalities.pde.guidance import ResidualReward, solution_distance
from unidistill.modalities.pde.io import load_teacher
from unidistill.modalities.pde.measures import (
    DARCY_PHASES,
    baselines,
    coefficient_stats,
    field_measures,
    high_band_ratio,
    radial_spectrum,
    solution_error,
    spectrum_ratio,
)
from unidistill.modalities.pde.problems import PDES

pytestmark = pytest.mark.usefixtures("one_thread")


def solver(name, n=4, seed=3, size=SIZE):
    pde = PDES.get(name)()
    return pde, torch.from_numpy(pde.generate(n, size, np.random.default_rng(seed)))


@pytest.mark.parametrize("name", ["darcy", "poisson", "helmholtz", "burgers"])
def test_solver_data_has_zero_solution_error_and_zero_is_one(name):
    pde, x = solver(name)
    err = solution_error(pde, x)
    assert err["solution_error"].max() < 1e-10 and err["gradient_error"].max() < 1e-10
    part = ~pde.coefficient_mask(SIZE)
    zero = torch.where(part, torch.zeros_like(x), x)
    err0 = solution_error(pde, zero)
    torch.testing.assert_close(err0["solution_error"], torch.ones(4, dtype=x.dtype))
    torch.testing.assert_close(err0["gradient_error"], torch.ones(4, dtype=x.dtype))
    scaled = torch.where(part, 1.25 * x, x)  # a 25% error in every solution entry, and so in its gradient
    err1 = solution_error(pde, scaled)
    torch.testing.assert_close(err1["solution_error"], torch.full((4,), 0.25, dtype=x.dtype))
    torch.testing.assert_close(err1["gradient_error"], torch.full((4,), 0.25, dtype=x.dtype))


def test_manufactured_darcy_pair_with_constant_coefficient():
    """a = c everywhere: the solver's u is the Poisson solution of f = 1 divided by c. A generated pair that
    holds a = 3 with the solution for a = 4 is off by exactly |3/4 - 1| = 0.25 everywhere."""
    pde = PDES.get("darcy")()
    u1 = elliptic.solve_helmholtz(np.ones((1, SIZE, SIZE)), 0.0)  # -Laplace(u) = 1
    x = torch.from_numpy(np.stack([np.full((1, SIZE, SIZE), math.log(3.0)), u1 / 4.0], axis=1))
    err = solution_error(pde, x)
    torch.testing.assert_close(err["solution_error"], torch.tensor([0.25], dtype=x.dtype))
    torch.testing.assert_close(err["gradient_error"], torch.tensor([0.25], dtype=x.dtype))
    # a smooth error: u + eps * sin(pi x) sin(pi y) on the nodes, against ||u||
    n = np.arange(1, SIZE + 1) / (SIZE + 1)
    phi = np.sin(np.pi * n)[:, None] * np.sin(np.pi * n)[None, :]
    y = x.clone()
    y[0, 1] = torch.from_numpy(u1[0] / 3.0 + 1e-3 * phi)
    want = 1e-3 * np.linalg.norm(phi) / np.linalg.norm(u1[0] / 3.0)
    assert abs(float(solution_error(pde, y)["solution_error"][0]) - want) < 1e-9


def test_baselines_zero_is_one_and_mean_solution_is_between():
    pde, x = solver("darcy", n=16)
    b = baselines(pde, x)
    assert b["u = 0"] == {"solution_error": 1.0, "gradient_error": 1.0}
    assert 0.05 < b["mean solution"]["solution_error"] < 1.0


def test_coefficient_stats_see_phases_and_blur():
    pde, ref = solver("darcy", n=32, seed=1)
    _, x = solver("darcy", n=32, seed=2)
    s = coefficient_stats(pde, x, ref)
    assert s["between_phases"] == 0 and abs(s["phase_high"] - 0.5) < 0.15 and s["coef_spectrum_gap"] < 0.2
    blurred = x.clone()
    blurred[:, 0] = (x[:, 0] + torch.roll(x[:, 0], 1, -1) + torch.roll(x[:, 0], 1, -2)) / 3
    sb = coefficient_stats(pde, blurred, ref)
    assert sb["between_phases"] > 0.05 and sb["coef_spectrum_gap"] > s["coef_spectrum_gap"]
    one_phase = x.clone()
    one_phase[:, 0] = DARCY_PHASES[1]
    assert coefficient_stats(pde, one_phase, ref)["phase_high"] == 1.0


def test_radial_spectrum_puts_a_mode_in_its_shell():
    n = 16
    j = torch.arange(n, dtype=torch.float64)
    wave = torch.cos(2 * math.pi * 3 * j / n)[None, None, :].expand(8, n, n)  # wavenumber (0, 3)
    s = radial_spectrum(wave)
    assert int(s.argmax()) == 3 and s[3] > 0 and (torch.cat([s[:3], s[4:]]) < 1e-20).all()
    rough = torch.randn(8, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(spectrum_ratio(rough, rough), torch.ones(n // 2, dtype=torch.float64))
    assert high_band_ratio(wave + 0.1 * rough, wave + 0.01 * rough) > 50


def test_field_measures_on_data_are_the_floor():
    pde, ref = solver("poisson", n=16, seed=1)
    _, x = solver("poisson", n=16, seed=2)
    m = field_measures(pde, x, ref)
    assert m["solution_error"] < 1e-10 and m["relative_residual"] < 1e-10 and 0.3 < m["solution_high_band"] < 3


@pytest.fixture(scope="module")
def darcy_teacher(tmp_path_factory):
    return load_teacher(tiny_pde_teacher(tmp_path_factory.mktemp("pdem"), "darcy"))


def test_solution_norm_guidance_is_the_squared_solution_error(darcy_teacher):
    t = darcy_teacher
    _, x = solver("darcy", n=3)
    xm = t.norm.to_model(x)
    assert (solution_distance(t, xm) < 1e-8).all()
    y = x.clone()
    y[:, 1] *= 1.1
    ym = t.norm.to_model(y).float().requires_grad_(True)
    r = ResidualReward(t, norm="solution")(ym)
    torch.testing.assert_close(-r, torch.full((3,), 0.01), rtol=1e-4, atol=0)
    grad, = torch.autograd.grad(r.sum(), ym)
    assert (grad[:, 0] == 0).all() and (grad[:, 1] != 0).any()
    # ascent on the reward moves u back toward the solver's u
    assert ((grad[:, 1] * (t.norm.to_model(x).float() - ym.detach())[:, 1]).flatten(1).sum(1) > 0).all()
    with pytest.raises(ValueError, match="use through: solution"):
        ResidualReward(t, through="all", norm="solution")
    with pytest.raises(ValueError, match="choose one of residual, solution"):
        ResidualReward(t, norm="energy")


def test_gradient_error_counts_the_faces_at_the_zero_boundary():
    """u = 1 on every interior node solves -Laplace(u) = f for f = -Laplace(1) (nonzero only next to the
    boundary); its gradient lives only on the boundary faces. A generated u = 2 is off by 1 in both."""
    pde = PDES.get("poisson")()
    ones = torch.ones(1, SIZE, SIZE, dtype=torch.float64)
    f = -elliptic.laplacian(ones)
    x = torch.stack([f, 2 * ones], dim=1)
    err = solution_error(pde, x)
    torch.testing.assert_close(err["solution_error"], torch.ones(1, dtype=x.dtype))
    torch.testing.assert_close(err["gradient_error"], torch.ones(1, dtype=x.dtype))
