"""The observation-conditioned one-pass student: what it sees (never an unobserved value), how it starts (the
unconditional student), its training problems, and its folder."""
import numpy as np
import pytest
import torch
from pde_fixtures import SIZE, tiny_pde_teacher

from unidistill.engine.noise import Noise
from unidistill.modalities.pde.conditional import (
    ObservedDenoiser,
    ProblemSource,
    encode,
    misfit,
    solve_with_conditional,
    widen,
)
from unidistill.modalities.pde.distill import conditional_student
from unidistill.modalities.pde.inverse import Observations, make_problem
from unidistill.modalities.pde.io import load_student, load_teacher, save_student
from unidistill.modalities.shared.student import make_student

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return load_teacher(tiny_pde_teacher(tmp_path_factory.mktemp("pdec"), "darcy"))


def fields(t, n=4, seed=7):
    return torch.from_numpy(t.pde.generate(n, SIZE, np.random.default_rng(seed)))


def trained_like(t):
    """A conditional student whose condition weights are not zero (as after training)."""
    gen = conditional_student(t, [5.0])
    with torch.no_grad():
        w = gen.denoiser.den.net.conv_in.weight
        w[:, 2:] = torch.randn(w[:, 2:].shape, generator=torch.Generator().manual_seed(0))
    return gen.eval()


@pytest.mark.parametrize("kind", ["forward", "inverse"])
def test_unobserved_values_cannot_reach_the_student(teacher, kind):
    t = teacher
    x = fields(t)
    obs = make_problem(t, x, kind, 0.1, seed=2)
    # the same observations with garbage written everywhere the mask is False
    garbage = torch.where(obs.mask, obs.values, 1e3 * torch.randn(x.shape, dtype=x.dtype))
    leaky = Observations(obs.mask, garbage)
    torch.testing.assert_close(encode(t, leaky), encode(t, obs), rtol=0, atol=0)
    gen = trained_like(t)
    a, _ = solve_with_conditional(gen, t, obs)
    b, _ = solve_with_conditional(gen, t, leaky)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # while a change at an observed entry does reach it
    moved = obs.values.clone()
    moved[obs.mask] += 0.5 * t.norm.std.double().view(1, -1, 1, 1).expand_as(moved)[obs.mask]
    c, _ = solve_with_conditional(gen, t, Observations(obs.mask, moved))
    assert (c - a).abs().max() > 1e-4
    m = misfit(t, t.norm.to_model(x.float()), leaky)
    assert m.max() < 1e-8  # the truth fits its own observations, whatever sits outside the mask


def test_training_problems_hand_over_only_observed_entries(teacher):
    t = teacher
    src = ProblemSource(t, fields(t, n=16).numpy(), ["forward", "inverse"], 0.1)
    obs = src(Noise(0), 12)
    assert (obs.values[~obs.mask] == 0).all()
    coef = obs.mask[:, 0].flatten(1)
    assert coef.all(1).any() and (~coef).all(1).any()  # both kinds drawn
    again = src(Noise(0), 12)
    assert torch.equal(again.mask, obs.mask) and torch.equal(again.values, obs.values)
    with pytest.raises(ValueError, match="choose one or more of forward, inverse"):
        ProblemSource(t, fields(t, n=2).numpy(), ["sideways"], 0.1)


def test_untrained_conditional_student_is_the_unconditional_student(teacher):
    t = teacher
    gen, plain = conditional_student(t, [5.0]), make_student(t.denoiser, [5.0])
    obs = make_problem(t, fields(t), "forward", 0.1)
    z = torch.randn(4, 1, *t.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = gen(z, obs), plain(z)
    keep = obs.mask & t.pde.coefficient_mask(SIZE)  # forward: the whole coefficient, passed through as given
    assert keep[:, 0].all()
    torch.testing.assert_close(a[keep], t.norm.to_model(obs.values.float())[keep])
    torch.testing.assert_close(a[~keep], b[~keep])
    inv = make_problem(t, fields(t), "inverse", 0.1)
    with torch.no_grad():
        torch.testing.assert_close(gen(z, inv), plain(z))  # nothing of the coefficient observed: nothing clamped
    assert gen.denoiser.den.net.config.in_channels == 6 and gen.denoiser.den.channels == 2
    with pytest.raises(ValueError, match="takes 4 concatenated condition channels, got none"):
        gen.denoiser.den(z[:, 0], torch.full((4,), 5.0))
    with pytest.raises(ValueError, match="needs 2 x 2 concatenated channels"):
        ObservedDenoiser(widen(t.denoiser, 3), t)


def test_conditional_student_folder_round_trips(teacher, tmp_path):
    t = teacher
    gen = trained_like(t)
    save_student(gen, t, [5.0], tmp_path / "student", condition={"kinds": ["forward"], "fraction": 0.1})
    gen2, spec = load_student(tmp_path)
    assert gen2.condition["kinds"] == ["forward"] and spec.pde.name == "darcy"
    obs = make_problem(t, fields(t), "inverse", 0.1)
    a, n = solve_with_conditional(gen, t, obs, seed=3)
    b, _ = solve_with_conditional(gen2, spec, obs, seed=3)
    assert n == 1
    torch.testing.assert_close(a, b)
