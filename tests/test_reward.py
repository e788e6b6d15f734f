"""Reward alignment against closed forms: the tilted mixture p* ~ p exp(r / beta) against quadrature, the
diffused reward score against autograd of log E_{p(x0|x_t)} exp(r / beta) by quadrature, the Diffused Reward
Proxy where it is exact, and each alignment's generator gradient against its analytic value. Every test
fails when a sign or beta is mutated (the mutations tried are listed in docs/methods.md)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unidistill.engine.alignment import DIDR, DIPP, Reinforce, RewardInstruct, Surrogate
from unidistill.engine.divergences import DIVERGENCES, Critics
from unidistill.engine.metrics import kl_to
from unidistill.engine.noise import Noise
from unidistill.engine.process import VEProcess, VPCosineProcess
from unidistill.modalities.toy_gmm.mixture import ExactTeacher, GaussianMixture
from unidistill.modalities.toy_gmm.rewards import optimum, rewards_for, tilt

MIX = GaussianMixture([[-2.0, 0.5], [1.5, 1.0], [0.5, -2.0]], [0.5, 0.3, 0.2], [0.6, 0.4, 0.8])
REWARDS = [{"name": "linear", "w": [0.7, -0.4]}, {"name": "quadratic", "lam": 1.3, "c": [1.0, -0.5]}]


def grid(lo=-9.0, hi=9.0, n=721):
    u = torch.linspace(lo, hi, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), (u[1] - u[0]) ** 2


def reward_fn(section):
    return rewards_for(MIX).get(section["name"])(**{k: v for k, v in section.items() if k != "name"})


@pytest.mark.parametrize("section", REWARDS, ids=["linear", "quadratic"])
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_tilted_mixture_is_the_normalised_tilt_by_quadrature(section, beta):
    x, da = grid()
    log_tilt = MIX.log_prob(x) + reward_fn(section)(x) / beta
    log_z = float(torch.logsumexp(log_tilt, 0) + math.log(da))
    star, got_log_z = tilt(MIX, section, beta)
    assert abs(got_log_z - log_z) < 1e-8
    torch.testing.assert_close(star.log_prob(x), log_tilt - log_z, atol=1e-8, rtol=0)
    facts = optimum(MIX, section, beta)
    p = (log_tilt - log_z).exp() * da
    r = reward_fn(section)(x)
    assert abs(facts["reward"] - float((p * r).sum())) < 1e-7
    kl = float((p * (log_tilt - log_z - MIX.log_prob(x))).sum())
    assert abs(facts["kl"] - kl) < 1e-7
    assert abs(facts["objective"] - (facts["reward"] - beta * facts["kl"])) < 1e-9


def log_e_exp_reward(x_t, t, process, reward, beta):
    """log E_{p(x0 | x_t)} exp(r(x0) / beta) by quadrature over x0 on a grid (2-D), differentiable in x_t."""
    x0, _ = grid(-7.0, 7.0, 281)
    tt = torch.tensor(t, dtype=torch.float64)
    a, b = process.alpha(tt), process.sigma(tt)
    log_joint = MIX.log_prob(x0)[None] - 0.5 * ((x_t[:, None, :] - a * x0[None]) ** 2).sum(-1) / b**2
    post = log_joint.log_softmax(1)
    return torch.logsumexp(post + reward(x0)[None] / beta, 1)


@pytest.mark.parametrize("section", REWARDS, ids=["linear", "quadratic"])
@pytest.mark.parametrize("t", [0.4, 1.5])
def test_exact_diffused_reward_score_is_the_gradient_of_log_e_exp_reward(section, t):
    beta, process = 1.5, VEProcess()
    x_t = torch.tensor([[0.3, -0.2], [-1.5, 1.0], [2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    tt = torch.full((3,), t, dtype=torch.float64)
    (want,) = torch.autograd.grad(log_e_exp_reward(x_t, t, process, reward_fn(section), beta).sum(), x_t)
    star = tilt(MIX, section, beta)[0]
    got = star.score(x_t.detach(), tt, process) - MIX.score(x_t.detach(), tt, process)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)


def gaussian_case(process, m=(0.5, -1.0), s=0.7):
    g = GaussianMixture([list(m)], None, s)
    return g, ExactTeacher(g, process)


@pytest.mark.parametrize("process", [VEProcess(), VPCosineProcess()], ids=["ve", "vp"])
def test_diffused_reward_proxy_is_exact_for_a_gaussian_teacher_and_a_linear_reward(process):
    g, teacher = gaussian_case(process)
    section, beta = {"name": "linear", "w": [0.8, 0.3]}, 0.6
    didr = DIDR(beta=beta, reward=rewards_for(g).get("linear")(w=section["w"]), alpha=None, process=process)
    x_t = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.05, 0.2, 0.5, 0.7, 0.3, 0.9], dtype=torch.float64)
    if isinstance(process, VEProcess):
        t = t * 10
    got = didr.teacher(lambda x, s: teacher(x, s), None)(x_t, t)
    want = ExactTeacher(tilt(g, section, beta)[0], process)(x_t, t)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_didr_integral_kl_gradient_is_that_of_kl_to_the_tilted_teacher():
    """A Dirac generator x0 = mu, the exact fake (D_q = mu), eps at Gauss-Hermite nodes: the IKL surrogate with
    DIDR's critics has x0-gradient a (a mu - a m*) / (a^2 s^2 + b^2), d/dmu KL(N(a mu, b^2) || p*_t)."""
    process = VEProcess()
    g, teacher = gaussian_case(process, m=(0.5,), s=0.7)
    w, beta, t, mu = 0.9, 0.5, 1.3, 0.2
    didr = DIDR(beta=beta, reward=lambda x: w * x[:, 0], alpha=None, process=process)
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    eps = torch.tensor(nodes, dtype=torch.float64)[:, None]
    x0 = torch.full((40, 1), mu, dtype=torch.float64, requires_grad=True)
    tt = torch.full((40,), t, dtype=torch.float64)
    critics = Critics(process, teacher=didr.teacher(lambda x, s: teacher(x, s), None),
                      fake=lambda x, s: torch.full_like(x, mu))
    loss = DIVERGENCES.get("ikl")(weighting="unit").loss(x0, tt, eps, critics)
    grad = float((torch.autograd.grad(loss, x0, torch.tensor(weights / weights.sum()))[0]).sum())
    m_star = 0.5 + 0.7**2 * w / beta
    want = (mu - m_star) / (0.7**2 + t**2)
    assert abs(grad - want) < 1e-9


def test_didr_refuses_an_exact_proxy_it_does_not_have():
    from unidistill.engine.config import OptionError

    with pytest.raises(OptionError, match="closed-form tilted teacher"):
        DIDR(beta=1.0, proxy="exact", reward=lambda x: x.sum(1), alpha=None, process=VEProcess())


class Affine(torch.nn.Linear):
    def forward(self, z, cond=None):
        return super().forward(z)


def test_dipp_and_reward_instruct_gradients():
    x0 = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    target = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    reward = lambda x: -((x - target) ** 2).sum(1)
    loss, _ = DIPP(reward=reward, alpha=0.3).loss(x0, None, None, None, None)
    (g,) = torch.autograd.grad(loss.sum(), x0)
    torch.testing.assert_close(g, 0.3 * 2 * (x0.detach() - target))

    gen = Affine(3, 3).double()
    ri = RewardInstruct(weight=0.7, anchor="output", reward=reward, alpha=0.3, generator=gen)
    z = torch.randn(5, 3, dtype=torch.float64)
    ref = gen(z).detach()
    with torch.no_grad():
        gen.weight.add_(0.1)  # the generator moved away from its anchor
    x0 = gen(z)
    loss, _ = ri.loss(x0, z, None, gen, None)
    (g,) = torch.autograd.grad(loss.sum(), x0)
    torch.testing.assert_close(g, 0.3 * 2 * (x0.detach() - target) + 0.7 * 2 * (x0.detach() - ref) / 3)

    ri = RewardInstruct(weight=0.7, anchor="parameter", reward=lambda x: x.sum(1) * 0, alpha=0.3, generator=gen)
    theta0 = {k: v.detach().clone() for k, v in gen.named_parameters()}
    with torch.no_grad():
        gen.bias.add_(0.25)
    loss, _ = ri.loss(gen(z), z, None, gen, None)
    loss.mean().backward()
    torch.testing.assert_close(gen.bias.grad, 0.7 * 2 * (gen.bias.detach() - theta0["bias"]))


def test_reward_instruct_anchor_is_the_generator_the_run_started_from():
    gen = Affine(2, 2)
    ri = RewardInstruct(reward=lambda x: x.sum(1), alpha=1.0, generator=gen)
    with torch.no_grad():
        gen.weight.fill_(3.0)
    ri.start(gen)
    assert torch.equal(ri.frozen["anchor"].weight, gen.weight.detach())
    assert not any(p.requires_grad for p in ri.frozen["anchor"].parameters())


class LinearLogit(torch.nn.Module):
    def __init__(self, u):
        super().__init__()
        self.u = torch.nn.Parameter(torch.tensor(u, dtype=torch.float64))

    def forward(self, x, t, cond=None):
        return x @ self.u


def test_surrogate_fits_by_bce_and_its_gradient_stands_in_for_the_reward():
    reward = lambda x: (x[:, 0] > 0).to(x.dtype)
    sur = Surrogate(reward=reward, alpha=0.4, process=VEProcess(), network=lambda o: LinearLogit([1.5, -0.5]))
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    got = sur.aux_losses(x, None, None)["surrogate"]
    logit = x @ torch.tensor([1.5, -0.5], dtype=torch.float64)
    torch.testing.assert_close(got, torch.nn.functional.binary_cross_entropy_with_logits(
        logit, reward(x), reduction="none"))
    x0 = x.clone().requires_grad_(True)
    loss, _ = sur.loss(x0, None, None, None, None)
    (g,) = torch.autograd.grad(loss.sum(), x0)
    sig = torch.sigmoid(logit)
    torch.testing.assert_close(g, -0.4 * (sig * (1 - sig))[:, None] * torch.tensor([1.5, -0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"rewards in \[0, 1\]"):
        Surrogate(reward=lambda x: 2 * x[:, 0], alpha=1.0, process=VEProcess(),
                  network=lambda o: LinearLogit([1.0, 0.0])).aux_losses(x, None, None)


def test_reinforce_is_unbiased_for_the_smoothed_reward_gradient():
    """Dirac generator x0 = mu, linear reward w.x: E[-alpha sg[A] grad log pi] = -alpha w (the gradient of
    -alpha E r(mu + std xi)); the batch-mean baseline scales it by (1 - 1/n)."""
    w, n = torch.tensor([0.6, -1.2], dtype=torch.float64), 200_000
    rf = Reinforce(std=0.3, reward=lambda x: x @ w, alpha=0.5)
    mu = torch.tensor([0.2, 0.1], dtype=torch.float64, requires_grad=True)
    loss, _ = rf.loss(mu.expand(n, 2), None, None, None, Noise(0))
    (g,) = torch.autograd.grad(loss.mean(), mu)
    torch.testing.assert_close(g, -0.5 * w * (1 - 1 / n), atol=0.01, rtol=0)


def test_knn_kl_estimate_meets_the_closed_form_on_exact_samples():
    section, beta = REWARDS[0], 1.0
    facts = optimum(MIX, section, beta)
    x = facts["mixture"].sample(4000, generator=torch.Generator().manual_seed(0)).double()
    assert abs(kl_to(x, MIX.log_prob) - facts["kl"]) < 0.05, (kl_to(x, MIX.log_prob), facts["kl"])
    assert abs(kl_to(MIX.sample(4000, generator=torch.Generator().manual_seed(1)).double(), MIX.log_prob)) < 0.05


TOY = {"modality": "toy_gmm", "mixture": {"ring": {"modes": 4, "radius": 2.0, "std": 0.3}},
       "generator": {"hidden": 16, "depth": 2}, "eval": {"n_samples": 200},
       "distill": {"fake": {"hidden": 16, "depth": 2}},
       "train": {"steps": 3, "batch_size": 32, "progress": False, "checkpoint_every": 1}}


def toy_run(tmp_path, name, **distill):
    import yaml

    from unidistill.engine.cli import main

    cfg = {**TOY, "distill": {**TOY["distill"], **distill.pop("distill", {})}, **distill}
    cfg["train"] = {**TOY["train"], **cfg.get("train", {})}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["distill", str(path), "--out", str(tmp_path / name)]) == 0
    return tmp_path / name


def test_init_from_starts_the_generator_from_a_runs_ema_and_the_anchor_survives_resume(tmp_path, capsys):
    from unidistill.engine import checkpoint as ckpt

    base = toy_run(tmp_path, "base")
    base_t, _ = ckpt.load_latest(base / "checkpoints")
    ri = {"divergence": {"name": "none"}, "reward": {"name": "linear", "w": [1.0, 0.0], "alpha": 0.5},
          "alignment": {"name": "reward_instruct", "weight": 2.0}}
    run = toy_run(tmp_path, "ri", distill=ri, train={"init_from": str(base), "steps": 2})
    assert f"initialised generator from {base}" in capsys.readouterr().out
    tensors, _ = ckpt.load_latest(run / "checkpoints")
    anchor = {k[len("frozen.anchor."):]: v for k, v in tensors.items() if k.startswith("frozen.anchor.")}
    ema = {k[len("ema."):]: v for k, v in base_t.items() if k.startswith("ema.")}
    assert anchor and all(torch.equal(anchor[k], ema[k]) for k in ema)  # the anchor is the starting generator
    moved = {k[len("module.generator."):]: v for k, v in tensors.items() if k.startswith("module.generator.")}
    assert any(not torch.equal(moved[k], ema[k]) for k in ema)  # and the generator moved away from it
    toy_run(tmp_path, "ri", distill=ri, train={"init_from": str(base), "steps": 3})  # resume to step 3
    again, _ = ckpt.load_latest(run / "checkpoints")
    assert all(torch.equal(again[f"frozen.anchor.{k}"], ema[k]) for k in ema)  # not re-taken from the resumed one


@pytest.mark.parametrize("distill,expected", [
    ({"reward": {"name": "linear", "w": [1.0, 0.0]}, "alignment": {"name": "didr", "beta": 1.0, "proxy": "exact"}},
     None),
    ({"reward": {"name": "linear", "w": [1.0, 0.0], "alpha": 1.0}, "alignment": {"name": "didr"}},
     "config key distill.reward.alpha: alignment 'didr' puts the reward in the teacher's score"),
    ({"reward": {"name": "linear", "w": [1.0, 0.0]}},
     "config key distill.reward needs 'alpha' (the weight of -reward in the generator loss) for alignment 'dipp'"),
    ({"alignment": {"name": "didr"}}, "config key distill.alignment needs a reward"),
    ({"reward": {"name": "inside", "center": [0.0, 0.0]}, "alignment": {"name": "didr", "proxy": "exact"}},
     "config key distill.alignment.proxy 'exact' needs a closed-form tilted teacher"),
    ({"reward": {"name": "linear", "w": [1.0, 0.0, 2.0], "alpha": 1.0}},
     "config key distill.reward: reward option w must be 2 finite numbers (the mixture's dimension)"),
    ({"reward": {"name": "linear", "w": [1.0, 0.0], "alpha": 1.0}, "alignment": {"name": "dpo"}},
     "config key distill.alignment.name: unknown alignment 'dpo'; choose one of: didr, dipp, reinforce, "
     "reward_instruct, surrogate"),
    ({"reward": {"name": "linear", "w": [1.0, 0.0]}, "alignment": {"name": "didr", "beta": 0}},
     "config key distill.alignment.beta must be a finite number > 0, got 0"),
    ({"reward": {"name": "linear", "w": [1.0, 0.0], "alpha": 1.0}, "alignment": {"name": "surrogate", "fit": "l1"}},
     "config key distill.alignment.fit"),
    ({"divergence": {"name": "fdiv"}, "reward": {"name": "linear", "w": [1.0, 0.0]}, "alignment": {"name": "didr"}},
     "config key distill.alignment: 'didr' tilts the teacher's score, but 'fdiv' estimates a density ratio"),
])
def test_alignment_configs_fail_in_one_line(distill, expected, tmp_path, capsys):
    import yaml

    from unidistill.engine.cli import main

    cfg = {**TOY, "distill": {**TOY["distill"], **distill}, "train": {**TOY["train"], "steps": 1}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc = main(["distill", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    if expected is None:
        assert rc == 0, err
        return
    assert rc != 0 and len(err.splitlines()) == 1 and expected in err, err


def test_dipp_refuses_a_binary_reward_at_its_first_step(tmp_path, capsys):
    import yaml

    from unidistill.engine.cli import main

    cfg = {**TOY, "distill": {**TOY["distill"], "reward": {"name": "inside", "center": [0.0, 0.0], "alpha": 1.0}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["distill", str(path), "--out", str(tmp_path / "run")]) != 0
    assert "the reward is not differentiable in x0" in capsys.readouterr().err


def test_policy_gradient_task_reward_joins_each_samples_reward_before_normalisation():
    from unidistill.engine.divergences import PolicyGradient

    log_prob = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    log_ratio = torch.tensor([0.2, -0.1, 0.5, 0.0], dtype=torch.float64)
    bonus = torch.tensor([1.0, 0.0, -2.0, 0.5], dtype=torch.float64)
    est = PolicyGradient(f="rkl", normalise=False)
    (g,) = torch.autograd.grad(est.loss(log_prob, log_ratio, bonus=bonus).sum(), log_prob)
    torch.testing.assert_close(g, -(est.reward(log_ratio) + bonus))


def test_loop_reward_finds_enclosed_paper():
    from unidistill.modalities.image.rewards import has_loop

    x = -torch.ones(3, 1, 8, 8)
    x[0, 0, 2:6, 2:6] = 1.0
    x[0, 0, 3:5, 3:5] = -1.0  # a ring of ink: a hole
    x[1, 0, 1:7, 3] = 1.0  # a bar: no hole
    x[2, 0, 2:6, 2:6] = 1.0
    x[2, 0, 3:5, 3:5] = -1.0
    x[2, 0, 4, 2] = -1.0  # the ring opened on its left side: the paper inside reaches the border
    torch.testing.assert_close(has_loop(x), torch.tensor([1.0, 0.0, 0.0]))


def test_distinct_token_reward():
    from unidistill.modalities.text.distill import text_rewards

    r = text_rewards(None, None).get("distinct")()
    torch.testing.assert_close(r(torch.tensor([[1, 1, 1, 1], [1, 2, 3, 4], [5, 1, 5, 1]])),
                               torch.tensor([0.25, 1.0, 0.5], dtype=torch.float64))


def test_chain_reward_metrics_are_exact():
    """The chain evaluator's tilted optimum, checked by the identity KL(p || p*) = log Z - E_p[r] / beta and by
    KL(p* || p) = E*[r] / beta - log Z."""
    from unidistill.engine.process import MaskingProcess
    from unidistill.modalities.toy_markov.chain import MarkovChainTeacher
    from unidistill.modalities.toy_markov.distill import rewards_for
    from unidistill.modalities.toy_markov.evaluate import ChainEvaluator, _kl

    chain = MarkovChainTeacher([0.5, 0.3, 0.2], [[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]], 4)
    beta = 0.7
    ev = ChainEvaluator(chain, MaskingProcess(3), 2, [], tilt=(rewards_for(chain).get("count")(token=2), beta))
    xs, p = chain.enumerate()
    r = (xs == 2).sum(-1).double()
    log_z = float(torch.logsumexp(p.log() + r / beta, 0))
    assert abs(_kl(p, ev.optimum) - (log_z - float(p @ r) / beta)) < 1e-10
    assert abs(_kl(ev.optimum, p) - (float(ev.optimum @ r) / beta - log_z)) < 1e-10


def test_didr_inside_the_score_family_backpropagates_through_attention_twice():
    """SIM differentiates the critics again through x_t: DIDR's proxy (a gradient through the teacher) then needs a
    second derivative of attention, which SDPA's fused kernels lack; twice_differentiable() picks the math one."""
    process = VEProcess()

    def teacher(x, t):  # attention over the 4 coordinates of each example
        q = (x[:, None, :, None] * torch.linspace(0.5, 1.5, 8)).contiguous()  # (B, 1 head, 4, 8)
        return x + torch.nn.functional.scaled_dot_product_attention(q, q, q)[:, 0, :, 0]

    didr = DIDR(beta=1.0, reward=lambda x: -(x**2).sum(1), alpha=None, process=process)
    x0 = torch.randn(3, 4, requires_grad=True)
    critics = Critics(process, teacher=didr.teacher(teacher, None), fake=lambda x, s: 0.9 * x)
    loss = DIVERGENCES.get("sim")().loss(x0, torch.full((3,), 0.7), torch.randn(3, 4), critics)
    (g,) = torch.autograd.grad(loss.sum(), x0)
    assert torch.isfinite(g).all()
