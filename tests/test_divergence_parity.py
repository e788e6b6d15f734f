"""Closed-form parity: each continuous divergence's Monte-Carlo gradient (here integrated exactly by
Gauss-Hermite quadrature over z and eps) equals the analytic gradient of the divergence it claims
to minimise, on an exact Gaussian teacher and a linear-generator student. Tolerances are tight
(1e-6 relative), so a flipped sign, a dropped weight or a wrong alpha fails."""
from __future__ import annotations

import pytest
import torch
from gaussian_oracle import GaussianCase

from unidistill.engine.divergences import DIVERGENCES, F_FUNCTIONS
from unidistill.engine.divergences.score import l2, pseudo_huber
from unidistill.engine.process import RectifiedFlowProcess, VEProcess, VPCosineProcess, VPLinearProcess

CASES = [
    (VEProcess(), 0.5), (VEProcess(), 2.0), (VPLinearProcess(), 0.3), (VPLinearProcess(), 0.7),
    (VPCosineProcess(), 0.5), (RectifiedFlowProcess(), 0.4),
]
IDS = [f"{type(p).__name__}-t{t}" for p, t in CASES]


def close(got, want, rtol=1e-6):
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=rtol, atol=1e-9), f"estimator {g.item():.8g} vs exact {w.item():.8g}"


@pytest.mark.parametrize("process,t", CASES, ids=IDS)
def test_ikl_matches_grad_of_kl(process, t):
    case = GaussianCase(process, t)
    got = case.estimator_grad(DIVERGENCES.get("ikl")(weighting="unit"))
    close(got, torch.autograd.grad(case.kl_qp(), case.params()))


@pytest.mark.parametrize("process,t", CASES[:3], ids=IDS[:3])
def test_ikl_sigma2_weighting(process, t):
    case = GaussianCase(process, t)
    got = case.estimator_grad(DIVERGENCES.get("ikl")(weighting="sigma2"))
    w = (case.b / case.a) ** 2
    close(got, [w * g for g in torch.autograd.grad(case.kl_qp(), case.params())])


@pytest.mark.parametrize("f", F_FUNCTIONS.names())
@pytest.mark.parametrize("process,t", [CASES[0], CASES[2], CASES[5]], ids=[IDS[0], IDS[2], IDS[5]])
def test_fdiv_matches_grad_of_f_divergence(f, process, t):
    case = GaussianCase(process, t)
    got = case.estimator_grad(DIVERGENCES.get("fdiv")(f=f, weighting="unit", log_ratio_clip=50.0), n=64)
    close(got, torch.autograd.grad(case.f_div(F_FUNCTIONS.get(f)), case.params()), rtol=1e-5)


def test_fdiv_rkl_is_ikl():
    case = GaussianCase(VEProcess(), 1.0)
    a = case.estimator_grad(DIVERGENCES.get("fdiv")(f="rkl", weighting="unit"))
    b = case.estimator_grad(DIVERGENCES.get("ikl")(weighting="unit"))
    close(a, b, rtol=1e-12)


@pytest.mark.parametrize("f", F_FUNCTIONS.names())
def test_h_is_r2_fpp(f):
    """h(r) = r^2 f''(r), checked against autograd's second derivative of f in r."""
    fn = F_FUNCTIONS.get(f)
    r = torch.linspace(0.2, 5.0, 25, dtype=torch.float64, requires_grad=True)
    fr = fn.f(torch.log(r))
    d1 = torch.autograd.grad(fr.sum(), r, create_graph=True)[0]
    d2 = torch.autograd.grad(d1.sum(), r)[0]
    assert torch.allclose(fn.h(torch.log(r.detach())), r.detach() ** 2 * d2, rtol=1e-9)
    assert torch.allclose(fn.f_prime(torch.log(r.detach())), d1.detach(), rtol=1e-9)
    assert abs(fn.f(torch.zeros(1, dtype=torch.float64)).item()) < 1e-12  # f(1) = 0


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.2])
@pytest.mark.parametrize("process,t", CASES, ids=IDS)
def test_sid_gradient_is_half_term1_plus_one_minus_alpha_term2(alpha, process, t):
    case = GaussianCase(process, t)
    got = case.estimator_grad(DIVERGENCES.get("sid")(alpha=alpha, weighting="unit"))
    term1, term2 = case.score_terms(l2)
    close(got, [0.5 * t1 + (1 - alpha) * t2 for t1, t2 in zip(term1, term2)])


def test_sid_half_alpha_is_half_full_fisher_gradient():
    case = GaussianCase(VEProcess(), 1.5)
    got = case.estimator_grad(DIVERGENCES.get("sid")(alpha=0.5, weighting="unit"))
    term1, term2 = case.score_terms(l2)
    close(got, [0.5 * (t1 + t2) for t1, t2 in zip(term1, term2)])


@pytest.mark.parametrize("c", [0.1, 1.0])
@pytest.mark.parametrize("process,t", [CASES[0], CASES[3]], ids=[IDS[0], IDS[3]])
def test_sim_pseudo_huber_is_frozen_sampling_gradient(c, process, t):
    case = GaussianCase(process, t)
    got = case.estimator_grad(DIVERGENCES.get("sim")(c=c, weighting="unit"))
    term1, _ = case.score_terms(pseudo_huber(c))
    close(got, [0.5 * t1 for t1 in term1], rtol=1e-5)


def test_fgm_is_half_gradient_of_velocity_fisher():
    """FGM in velocity units: its gradient is 1/2 d/dtheta E||u_p - u_q||^2 under rectified flow."""
    process = RectifiedFlowProcess()
    case = GaussianCase(process, 0.4)
    got = case.estimator_grad(DIVERGENCES.get("fgm")())
    term1, term2 = case.score_terms(l2)
    kappa2 = ((case.b * (-case.b - case.a)) / case.a) ** 2  # alpha' = -1, sigma' = 1
    close(got, [0.5 * kappa2 * (t1 + t2) for t1, t2 in zip(term1, term2)])


def test_missing_ratio_estimator_is_refused():
    from tiny import make_objective

    with pytest.raises(ValueError, match="density-ratio"):
        make_objective("fdiv", f="fkl")


def test_unknown_option_and_name_are_named():
    from unidistill.engine.builders import build_named
    from unidistill.engine.config import ConfigError

    with pytest.raises(ConfigError, match="allowed: weighting"):
        build_named(DIVERGENCES, {"name": "ikl", "weigting": "sigma2"}, "divergence")
    with pytest.raises(KeyError, match="choose one of"):
        DIVERGENCES.get("klx")()
    with pytest.raises(KeyError, match="choose one of"):
        DIVERGENCES.get("fdiv")(f="tv")


@pytest.mark.parametrize("f", F_FUNCTIONS.names())
@pytest.mark.parametrize("process,t", [CASES[0], CASES[2], CASES[5]], ids=[IDS[0], IDS[2], IDS[5]])
def test_uni_instruct_is_half_gradient_of_expanded_f(f, process, t):
    from gaussian_oracle import expanded_f

    case = GaussianCase(process, t)
    got = case.estimator_grad(DIVERGENCES.get("uni")(f=f, weighting="unit", log_ratio_clip=50.0), n=64)
    want = torch.autograd.grad(expanded_f(case, F_FUNCTIONS.get(f)), case.params())
    close(got, [0.5 * g for g in want], rtol=1e-5)


@pytest.mark.parametrize("f", F_FUNCTIONS.names())
def test_dh_is_r_h_prime(f):
    fn = F_FUNCTIONS.get(f)
    lr = torch.linspace(-2, 2, 17, dtype=torch.float64, requires_grad=True)
    want = torch.autograd.grad((fn.h(lr) + 0 * lr).sum(), lr)[0]
    assert torch.allclose(fn.dh(lr.detach()), want, rtol=1e-9, atol=1e-12)


MIXTURE = [(0.3, -1.5, 0.4), (0.7, 1.0, 0.6)]  # a bimodal teacher: its score is not linear
MIXTURE_CASES = [(VEProcess(), 1.0), CASES[2], CASES[5]]  # VE at sigma 0.5 needs > 256 nodes for SIM


@pytest.mark.parametrize("name,opts,target", [
    ("sid", {"alpha": 1.2, "weighting": "unit"}, lambda t1, t2: 0.5 * t1 - 0.2 * t2),
    ("sid", {"alpha": 0.5, "weighting": "unit"}, lambda t1, t2: 0.5 * (t1 + t2)),
    ("sim", {"c": 1.0, "weighting": "unit"}, None),
    ("fgm", {"weighting": "unit"}, lambda t1, t2: 0.5 * (t1 + t2)),
])
@pytest.mark.parametrize("process,t", MIXTURE_CASES, ids=["VE-t1.0", IDS[2], IDS[5]])
def test_score_family_on_a_mixture_teacher(name, opts, target, process, t):
    case = GaussianCase(process, t, mixture=MIXTURE)
    got = case.estimator_grad(DIVERGENCES.get(name)(**opts), n=256)
    if target is None:  # SIM: half the frozen-sampling gradient of the pseudo-Huber divergence
        term1, _ = case.score_terms(pseudo_huber(opts["c"]))
        close(got, [0.5 * a for a in term1], rtol=1e-5)
        return
    term1, term2 = case.score_terms(l2)
    close(got, [target(a, b) for a, b in zip(term1, term2)], rtol=1e-5)


@pytest.mark.parametrize("f", ["rkl", "fkl", "js"])
def test_ikl_fdiv_uni_on_a_mixture_teacher(f):
    from gaussian_oracle import expanded_f

    case = GaussianCase(VEProcess(), 0.8, mixture=MIXTURE)
    fn = F_FUNCTIONS.get(f)
    got = case.estimator_grad(DIVERGENCES.get("fdiv")(f=f, weighting="unit", log_ratio_clip=50.0), n=128)
    close(got, torch.autograd.grad(case.f_div(fn), case.params()), rtol=1e-5)
    got = case.estimator_grad(DIVERGENCES.get("uni")(f=f, weighting="unit", log_ratio_clip=50.0), n=128)
    close(got, [0.5 * g for g in torch.autograd.grad(expanded_f(case, fn), case.params())], rtol=1e-5)
    if f == "rkl":
        got = case.estimator_grad(DIVERGENCES.get("ikl")(weighting="unit"), n=128)
        close(got, torch.autograd.grad(case.f_div(fn), case.params()), rtol=1e-5)


# ---------------------------------------------------------------- per-element times (tokens at their own t)
TOKEN_TIMES = {"ve": [0.3, 1.0, 3.0], "vp_linear": [0.2, 0.5, 0.8]}


def token_cases(process, times, mixture=None):
    """One GaussianCase per token time, all sharing the generator's parameters (m, s)."""
    cases = [GaussianCase(process, t, mixture=mixture) for t in times]
    for c in cases[1:]:
        c.m, c.s = cases[0].m, cases[0].s
    return cases


def token_critics(cases):
    """Critics on token batches x_t (N, L, 1), t (N, L): token l is scored by its own exact case."""
    from unidistill.engine.divergences import Critics

    per = [c.critics() for c in cases]

    def split(fn):
        return lambda x, t: torch.stack([fn(per[k])(x[:, k], t[:, k]) for k in range(len(per))], 1)

    return Critics(cases[0].process, teacher=split(lambda c: c.teacher), fake=split(lambda c: c.fake),
                   log_ratio=split(lambda c: c.log_ratio))


@pytest.mark.parametrize("name,opts", [
    ("ikl", {}), ("ikl", {"weighting": "dmd"}), ("fdiv", {"f": "js", "log_ratio_clip": 50.0}), ("sid", {}),
    ("sid", {"alpha": 1.2, "weighting": "sigma4"}), ("sim", {"c": 0.5}), ("fgm", {}), ("uni", {"f": "fkl"}),
])
@pytest.mark.parametrize("process", ["ve", "vp_linear"])
def test_per_token_times_sum_the_per_time_divergences(name, opts, process):
    """With t (N, L) and x0 (N, L, 1), every divergence is the sum over tokens of itself at each token's own
    time: its gradient equals the sum of the single-time gradients (each proven against closed forms above)
    and, for integral KL, the gradient of the summed exact KL. Each token has its own time-dependent weight,
    so reducing over the wrong axes, or broadcasting t per example, fails."""
    from unidistill.engine.process import PROCESSES

    proc, times = PROCESSES.get(process)(), TOKEN_TIMES[process]
    cases = token_cases(proc, times, mixture=None if name != "sim" else MIXTURE)
    div = DIVERGENCES.get(name)(**opts)
    from gaussian_oracle import grid

    z, e, w = grid(24)
    x0 = (cases[0].m + cases[0].s * z)[:, None, None].expand(-1, len(times), 1)
    t = torch.tensor(times, dtype=torch.float64).expand(len(z), -1)
    loss = div.loss(x0, t, e[:, None, None].expand(-1, len(times), 1), token_critics(cases))
    assert loss.shape == (len(z),)
    got = torch.autograd.grad((w * loss).sum(), cases[0].params())
    want = [sum(g) for g in zip(*(c.estimator_grad(div, n=24) for c in cases))]
    close(got, want, rtol=1e-9)
    if name == "ikl" and not opts:
        exact = torch.autograd.grad(sum(c.kl_qp() * c.process.sigma(c.t).item() ** 2 / c.process.alpha(c.t).item()
                                        ** 2 for c in cases), cases[0].params())
        close(got, exact, rtol=1e-6)


@pytest.mark.parametrize("f", ["fkl", "rkl", "js"])
@pytest.mark.parametrize("process,t", [CASES[0], CASES[2]], ids=[IDS[0], IDS[2]])
def test_uni_released_form_is_sid_alpha_one_whatever_f(f, process, t):
    """The released Uni-Instruct code's base term: SiD with alpha = 1 (Term1 / 2 only), no density ratio."""
    case = GaussianCase(process, t)
    uni = DIVERGENCES.get("uni")(f=f, weighting="unit", form="released")
    assert uni.needs == frozenset({"fake"})
    term1, _ = case.score_terms(l2)
    close(case.estimator_grad(uni), [0.5 * t1 for t1 in term1])
    with pytest.raises(Exception, match="expanded, released"):
        DIVERGENCES.get("uni")(form="paper")
