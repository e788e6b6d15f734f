"""PDE solvers and residual operators: solver output at round-off, independent checks on analytic
fields, hand-computed stencils, dataset files, and one-line errors."""
import json

import numpy as np
import pytest
import torch

from unidistill.modalities.pde import elliptic
from unidistill.modalities.pde.data import build_pde, load_dataset, make_dataset
from unidistill.modalities.pde.fields import gaussian_random_field
from unidistill.modalities.pde.problems import PDES, relative_residual


def grid(n):
    h = 1.0 / (n + 1)
    x = np.arange(1, n + 1) * h
    return np.meshgrid(x, x, indexing="xy")  # X varies along axis -1, Y along axis -2


@pytest.mark.parametrize("name,opts", [("darcy", {}), ("darcy", {"coefficient": "lognormal"}), ("poisson", {}),
                                       ("helmholtz", {"k": 1.0}), ("helmholtz", {"k": 7.0})])
@pytest.mark.parametrize("size", [16, 32])
def test_solver_residual_is_round_off(name, opts, size):
    pde = build_pde(name, **opts)
    x = torch.from_numpy(pde.generate(6, size, np.random.default_rng(3)))
    assert x.shape == (6, 2, size, size)
    assert relative_residual(pde, x).max() < 1e-11
    # perturbing the solution by 1e-3 of its size is far above the floor: the residual sees the fields
    y = x.clone()
    y[:, 1] *= 1.001
    assert relative_residual(pde, y).min() > 1e-5


def test_grf_is_reproducible_unit_variance_and_not_periodic():
    a = gaussian_random_field(1000, 32, np.random.default_rng(0))
    b = gaussian_random_field(1000, 32, np.random.default_rng(0))
    assert np.array_equal(a, b)
    assert abs(a.std() - 1) < 0.03 and abs(a.mean()) < 0.05
    edge_corr = np.corrcoef(a[:, :, 0].ravel(), a[:, :, -1].ravel())[0, 1]
    next_corr = np.corrcoef(a[:, :, 0].ravel(), a[:, :, 1].ravel())[0, 1]
    assert abs(edge_corr) < 0.2 and next_corr > 0.9  # a periodic draw would tie opposite edges like neighbours


@pytest.mark.parametrize("n", [8, 31])
def test_laplacian_on_discrete_eigenfunction(n):
    """sin(p pi x) sin(q pi y) is an exact eigenvector of the 5-point Dirichlet Laplacian."""
    X, Y = grid(n)
    h = 1.0 / (n + 1)
    for p, q in [(1, 1), (2, 3)]:
        u = np.sin(p * np.pi * X) * np.sin(q * np.pi * Y)
        lam = 4 / h**2 * (np.sin(p * np.pi * h / 2) ** 2 + np.sin(q * np.pi * h / 2) ** 2)
        lap = elliptic.laplacian(torch.from_numpy(u)[None])[0].numpy()
        np.testing.assert_allclose(-lap, lam * u, atol=1e-9 * lam)
        f = torch.from_numpy(lam * u - 2.0**2 * u)[None]
        r = elliptic.helmholtz_residual(f, torch.from_numpy(u)[None], 2.0)
        assert r.abs().max() < 1e-9 * lam


def test_poisson_converges_to_the_continuous_laplacian_at_second_order():
    errs = []
    for n in (15, 31, 63):
        X, Y = grid(n)
        u = X * (1 - X) * np.sin(np.pi * Y) * np.exp(X)  # zero on the boundary, not an eigenfunction
        uxx = np.sin(np.pi * Y) * np.exp(X) * (-X**2 - 3 * X)  # d2/dx2 of x(1-x)e^x = -(x^2 + 3x) e^x
        lap_exact = uxx - np.pi**2 * u
        lap = elliptic.laplacian(torch.from_numpy(u)[None])[0].numpy()
        errs.append(np.sqrt(((lap - lap_exact) ** 2).mean()))  # RMS: the max hops between nodes
    assert 3.5 < errs[0] / errs[1] < 4.5 and 3.5 < errs[1] / errs[2] < 4.5


def test_darcy_converges_to_the_continuous_operator_for_smooth_a():
    errs = []
    for n in (15, 31, 63):
        X, Y = grid(n)
        a = 1 + X + 0.5 * Y**2
        u = np.sin(np.pi * X) * np.sin(np.pi * Y)
        # -div(a grad u) = -a lap(u) - a_x u_x - a_y u_y
        ux, uy = np.pi * np.cos(np.pi * X) * np.sin(np.pi * Y), np.pi * np.sin(np.pi * X) * np.cos(np.pi * Y)
        exact = a * 2 * np.pi**2 * u - 1.0 * ux - Y * uy
        got = elliptic.darcy_operator(torch.from_numpy(a)[None], torch.from_numpy(u)[None])[0].numpy()
        errs.append(np.abs(got - exact)[2:-2, 2:-2].max())  # away from the replicated boundary faces
    assert 3.0 < errs[0] / errs[1] < 5.0 and 3.0 < errs[1] / errs[2] < 5.0


def test_darcy_stencil_by_hand_uses_harmonic_faces():
    rng = np.random.default_rng(1)
    a = rng.uniform(1, 10, (4, 4))
    u = rng.standard_normal((4, 4))
    h = 1 / 5
    i, j = 1, 2  # an interior node with four interior neighbours

    def face(p, q):
        return 2 * p * q / (p + q)

    want = -(face(a[i, j], a[i, j + 1]) * (u[i, j + 1] - u[i, j]) - face(a[i, j], a[i, j - 1]) * (u[i, j] - u[i, j - 1])
             + face(a[i, j], a[i + 1, j]) * (u[i + 1, j] - u[i, j])
             - face(a[i, j], a[i - 1, j]) * (u[i, j] - u[i - 1, j])) / h**2
    got = elliptic.darcy_operator(torch.from_numpy(a)[None], torch.from_numpy(u)[None])[0, i, j].item()
    assert got == pytest.approx(want, rel=1e-12)
    # a corner node: the boundary neighbours are zero and the boundary faces carry the node's own a
    want0 = -(face(a[0, 0], a[0, 1]) * (u[0, 1] - u[0, 0]) - a[0, 0] * (u[0, 0] - 0)
              + face(a[0, 0], a[1, 0]) * (u[1, 0] - u[0, 0]) - a[0, 0] * (u[0, 0] - 0)) / h**2
    got0 = elliptic.darcy_operator(torch.from_numpy(a)[None], torch.from_numpy(u)[None])[0, 0, 0].item()
    assert got0 == pytest.approx(want0, rel=1e-12)


def test_darcy_with_constant_a_is_a_times_poisson():
    u = torch.randn(2, 12, 12, dtype=torch.float64)
    got = elliptic.darcy_operator(torch.full_like(u, 3.0), u)
    torch.testing.assert_close(got, -3.0 * elliptic.laplacian(u))


def test_residuals_are_differentiable():
    pde = build_pde("darcy")
    x = torch.from_numpy(pde.generate(2, 16, np.random.default_rng(0))).requires_grad_(True)
    relative_residual(pde, x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_boundaries_options_and_resonance_fail_in_one_line():
    with pytest.raises(ValueError, match="boundary 'neumann' is not supported; supported: dirichlet0"):
        build_pde("poisson", boundary="neumann")
    with pytest.raises(ValueError, match="coefficient"):
        build_pde("darcy", coefficient="binary")
    with pytest.raises(ValueError, match="pde 'darcy'.*unexpected keyword"):
        build_pde("darcy", k=2.0)
    with pytest.raises(KeyError, match="unknown pde 'heat'; choose one of"):
        build_pde("heat")
    n = 16
    lam = elliptic.dirichlet_eigenvalues(n)[0]
    with pytest.raises(ValueError, match="resonance"):
        elliptic.solve_helmholtz(np.ones((1, n, n)), k=float(np.sqrt(lam)))
    with pytest.raises(ValueError, match="positive"):
        elliptic.solve_darcy(-np.ones((1, n, n)))
    with pytest.raises(ValueError, match=r"\(B, 2, N, N\)"):
        relative_residual(build_pde("poisson"), torch.zeros(1, 3, 8, 8))
    assert set(PDES.names()) >= {"darcy", "poisson", "helmholtz"}


def test_dataset_round_trip_is_reproducible_and_atomic(tmp_path):
    pde = build_pde("darcy")
    a = make_dataset(pde, tmp_path / "a", size=16, n_train=20, n_test=5, seed=7, progress=False)
    b = make_dataset(pde, tmp_path / "b", size=16, n_train=20, n_test=5, seed=7, progress=False)
    da, db = load_dataset(a), load_dataset(b)
    assert np.array_equal(da.train, db.train) and np.array_equal(da.test, db.test)
    assert not np.array_equal(da.train[:5], da.test)  # test split has its own seed
    assert da.meta["residual_floor"]["float64"] < 1e-11
    assert sorted(p.name for p in a.iterdir()) == ["meta.json", "test.npz", "train.npz"]  # no temp files left
    with pytest.raises(FileNotFoundError, match="no meta.json"):
        load_dataset(tmp_path)
    np.savez(a / "test.npz", fields=np.zeros((5, 3, 16, 16)))
    with pytest.raises(ValueError, match="test.npz: 'fields' must be finite"):
        load_dataset(a)
    meta = json.loads((a / "meta.json").read_text())
    meta["options"]["boundary"] = "periodic"
    (a / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="boundary 'periodic'"):
        load_dataset(a)


# ---- Burgers (the scheme itself is tested in test_pde_burgers.py) ----

@pytest.mark.parametrize("size", [32, 64])
def test_burgers_as_a_pde_is_at_round_off_with_the_initial_row_as_coefficient(size):
    pde = build_pde("burgers")
    x = torch.from_numpy(pde.generate(6, size, np.random.default_rng(2)))
    assert x.shape == (6, 1, size, size)
    assert relative_residual(pde, x).max() < 1e-10
    mask = pde.coefficient_mask(size)
    assert mask[0, 0].all() and mask.sum() == size
    with pytest.raises(ValueError, match="boundary 'dirichlet0' is not supported; supported: periodic"):
        build_pde("burgers", boundary="dirichlet0")
