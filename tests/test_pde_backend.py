"""PDE backend: the residual guidance term, students, downstream problems and one-line errors."""
import json

import numpy as np
import pytest
import torch
from pde_fixtures import SIZE, tiny_pde_teacher

from unidistill.modalities.pde.guidance import ResidualReward
from unidistill.modalities.pde.inverse import (
    Observations,
    from_points,
    make_problem,
    relative_error,
    solve_with_student,
    solve_with_teacher,
    unknown_mask,
)
from unidistill.modalities.pde.io import load_student, load_teacher, sample_student, save_student
from unidistill.modalities.shared.student import make_student

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pde")
    return {p: tiny_pde_teacher(root / p, p) for p in ("darcy", "poisson")}


@pytest.fixture(scope="module")
def teachers(folders):
    return {p: load_teacher(f) for p, f in folders.items()}


def solver_fields(teacher, n=4, seed=5):
    return torch.from_numpy(teacher.pde.generate(n, SIZE, np.random.default_rng(seed)))


@pytest.mark.parametrize("pde", ["darcy", "poisson"])
def test_guidance_gradient_is_finite_and_points_downhill(teachers, pde):
    t = teachers[pde]
    x_true = t.norm.to_model(solver_fields(t))
    x = x_true.clone()
    x[:, 1] += 0.05 * torch.randn_like(x[:, 1])  # perturb the solution channel
    x.requires_grad_(True)
    loss = -ResidualReward(t)(x)
    assert (loss > 1e-4).all() and (-ResidualReward(t)(x_true) < 1e-18).all()  # solver data sits at round-off
    grad, = torch.autograd.grad(loss.sum(), x)
    assert torch.isfinite(grad).all()
    # descent direction: -grad has a positive inner product with the way back to the solver's field
    assert ((-grad * (x_true - x.detach())).flatten(1).sum(1) > 0).all()
    eta = 1e-3 / grad.flatten(1).norm(dim=1).max()
    assert (-ResidualReward(t)(x.detach() - eta * grad) < loss.detach()).all()
    # the default stops the gradient at the coefficient; "all" reaches it too, with the same value
    assert (grad[:, 0] == 0).all() and (grad[:, 1] != 0).any()
    x_all = x.detach().clone().requires_grad_(True)
    loss_all = -ResidualReward(t, through="all")(x_all)
    torch.testing.assert_close(loss_all, loss.detach())
    assert torch.autograd.grad(loss_all.sum(), x_all)[0][:, 0].abs().sum() > 0
    with pytest.raises(ValueError, match="choose one of solution, all"):
        ResidualReward(t, through="coefficient")


def test_student_starts_as_the_teacher_and_round_trips(teachers, folders, tmp_path):
    t = teachers["darcy"]
    gen = make_student(t.denoiser, [5.0, 1.0])
    z = torch.randn(3, 2, *t.shape)
    with torch.no_grad():
        x_t = 5.0 * z[:, 0]
        d = t.denoiser(x_t, torch.full((3,), 5.0))
        torch.testing.assert_close(gen.denoiser(x_t, torch.full((3,), 5.0)), d)
    save_student(gen, t, [5.0, 1.0], tmp_path / "student")
    gen2, spec = load_student(tmp_path)
    torch.testing.assert_close(sample_student(gen2, spec, 3, seed=1), sample_student(gen, t, 3, seed=1))
    assert spec.pde.name == "darcy" and gen2.n_steps == 2
    with pytest.raises(ValueError, match="must decrease"):
        make_student(t.denoiser, [1.0, 5.0])


def test_problems_hide_the_unknowns_and_score_the_right_part(teachers):
    t = teachers["darcy"]
    x = solver_fields(t, n=3)
    fwd = make_problem(t, x, "forward", 0.05, seed=1)
    assert fwd.mask[:, 0].all() and 0 < fwd.mask[:, 1].float().mean() < 0.15
    assert (fwd.values[~fwd.mask] == 0).all()
    inv = make_problem(t, x, "inverse", 0.05, seed=1)
    assert not inv.mask[:, 0].any() and inv.mask[:, 1].any()
    assert unknown_mask(t, "forward")[1].all() and not unknown_mask(t, "forward")[0].any()
    err = relative_error(x, x, unknown_mask(t, "inverse"))
    assert (err == 0).all()
    y = x.clone()
    y[:, 0] *= 1.1  # 10% off in the coefficient channel only
    torch.testing.assert_close(relative_error(y, x, unknown_mask(t, "inverse")), torch.full((3,), 0.1, dtype=x.dtype))
    assert (relative_error(y, x, unknown_mask(t, "forward")) == 0).all()


def test_student_and_teacher_solvers_fit_the_observations(teachers):
    t = teachers["darcy"]
    x = solver_fields(t, n=2)
    obs = make_problem(t, x, "forward", 0.1)
    gen = make_student(t.denoiser, [5.0])
    y = t.norm.to_model(obs.values.float())
    m = obs.mask

    def misfit(xm):
        return ((xm - y) * m).square().sum() / m.sum()

    x0, nfe0 = solve_with_student(gen, t, obs, iters=0)
    x1, nfe1 = solve_with_student(gen, t, obs, iters=30, pde_weight=0.0)
    assert (nfe0, nfe1) == (1, 31) and misfit(x1) < 0.5 * misfit(x0)
    xt, nfe = solve_with_teacher(t, obs, steps=6, obs_weight=0.0, pde_weight=0.0)
    xg, _ = solve_with_teacher(t, obs, steps=6, obs_weight=1.0, pde_weight=0.0)
    assert nfe == 6 and xt.shape == x.shape and misfit(xg) < misfit(xt)


def test_bad_observations_fail_in_one_line(teachers):
    t = teachers["darcy"]
    x = solver_fields(t, n=2)
    obs = make_problem(t, x, "forward", 0.1)
    bad = obs.values.clone()
    bad[obs.mask] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        solve_with_student(make_student(t.denoiser, [5.0]), t, Observations(obs.mask, bad))
    with pytest.raises(ValueError, match=r"expected \(B, 2, 16, 16\) fields for this darcy teacher"):
        make_problem(t, torch.zeros(2, 2, 32, 32, dtype=torch.float64), "forward", 0.1)
    with pytest.raises(ValueError, match=r"observation point \[1, 16, 3\] \(instance 0\) is outside the 2x16x16 grid"):
        from_points(t, torch.tensor([[[1, 16, 3]]]), torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match="unknown problem 'backward'"):
        make_problem(t, x, "backward", 0.1)
    obs2 = from_points(t, torch.tensor([[[1, 2, 3], [0, 0, 0]]]), torch.tensor([[0.5, 1.0]]))
    assert obs2.mask.sum() == 2 and obs2.values[0, 1, 2, 3] == 0.5


def test_teacher_folder_checks(teachers, tmp_path):
    import shutil

    t = teachers["poisson"]
    src = tiny_pde_teacher(tmp_path / "t", "poisson")
    info = json.loads((src / "pde.json").read_text())
    info["size"] = 32
    (src / "pde.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="the network is 2 -> 2 channels at 16x16, but pde.json says poisson"):
        load_teacher(src)
    shutil.rmtree(src / "unet")
    with pytest.raises(FileNotFoundError, match="has no unet"):
        load_teacher(src)
    with pytest.raises(FileNotFoundError, match="neither a shipped PDE teacher"):
        load_teacher(tmp_path / "nowhere")
    assert t.shape == (2, 16, 16)


@pytest.mark.parametrize("name", ["darcy", "poisson", "helmholtz", "burgers"])
def test_shipped_teachers_load_with_their_pde(name):
    t = load_teacher(name)
    assert t.pde.name == name and t.shape == (len(t.pde.channels), 32, 32)
    assert t.info["residual_floor"]["float64"] < 1e-12  # the data it was trained on was at round-off
    x = torch.from_numpy(t.pde.generate(2, 32, np.random.default_rng(0)))
    torch.testing.assert_close(t.norm.to_physical(t.norm.to_model(x)), x)


def test_unidistill_sample_reads_an_exported_student_folder(teachers, tmp_path, capsys):
    from unidistill.engine.cli import main as cli

    t = teachers["darcy"]
    gen = make_student(t.denoiser, [5.0])
    folder = save_student(gen, t, [5.0], tmp_path / "student")
    assert json.loads((folder / "student.json").read_text())["modality"] == "pde"
    assert cli(["sample", str(folder), "--n", "3", "--seed", "2", "--out", str(tmp_path / "x.npy")]) == 0
    x = np.load(tmp_path / "x.npy")
    want = t.norm.to_physical(sample_student(gen, t, 3, seed=2).double()).numpy()
    np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-12)
    from unidistill.modalities.pde.distill import conditional_student

    cond = save_student(conditional_student(t, [5.0]), t, [5.0], tmp_path / "cond", condition={"kinds": ["forward"]})
    assert cli(["sample", str(cond), "--n", "1", "--out", str(tmp_path / "y.npy")]) == 2
    assert "answers forward and inverse problems" in capsys.readouterr().err
    assert cli(["sample", str(tmp_path / "nothing"), "--n", "1", "--out", str(tmp_path / "y.npy")]) == 2
    assert "neither a run directory" in capsys.readouterr().err


@pytest.mark.parametrize("pde", ["darcy", "poisson"])
def test_shipped_students_sample_and_solve(pde):
    from unidistill.modalities.pde.conditional import solve_with_conditional

    gen, spec = load_student(pde)
    assert gen.condition is None and spec.pde.name == pde and gen.n_steps == 1
    x = spec.norm.to_physical(sample_student(gen, spec, 4, seed=0).double())
    assert torch.isfinite(x).all() and x.shape == (4, 2, 32, 32)
    solver, spec2 = load_student(f"{pde}_solver")
    assert solver.condition["kinds"] == ["forward", "inverse"]
    truth = torch.from_numpy(spec2.pde.generate(8, 32, np.random.default_rng(11)))
    obs = make_problem(spec2, truth, "forward", 0.03, seed=1)
    answer, passes = solve_with_conditional(solver, spec2, obs)
    err = relative_error(spec2.norm.to_physical(answer.double()), truth, unknown_mask(spec2, "forward"))
    assert passes == 1 and float(err.mean()) < 0.2  # measured 0.05 (Darcy) and 0.09 (Poisson) on 32 problems
