"""The math of 3D score distillation against closed forms: threestudio's SDS weightings (MATH.md, SDS), through the
renderer too; the exact isotropic mixture (Tweedie, normalisation, sampling); the mixture-over-renders teacher
(guidance conventions, the Janus case); the exact particle fake; IKL and SIM with an exact fake on one Gaussian
particle; the HiFA time schedule; exact critics in the continuous objective. Each comment names the mutation of
the code under test that the test was seen to catch."""
import math

import pytest
import torch
from torch import nn

from unidistill.engine.config import OptionError
from unidistill.engine.distill import ContinuousDistillation
from unidistill.engine.divergences import SDS, SIM, Critics, IntegralKL
from unidistill.engine.process import DiscreteVPProcess, VEProcess, hifa
from unidistill.modalities.shared import mixture
from unidistill.modalities.shared.guidance import guide, uncond_first_scale
from unidistill.modalities.threed.cameras import from_angles
from unidistill.modalities.threed.generators import Particles
from unidistill.modalities.threed.scenes import SCENES
from unidistill.modalities.threed.teacher import ParticleMixture, RenderMixtureTeacher
from unidistill.modalities.threed.views import View

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64
SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")  # Stable Diffusion's schedule
# threestudio's per-example x0-gradient w(t) (eps_hat - eps) as a function of abar (MATH.md, SDS)
THREESTUDIO = {"sds": lambda ab: 1 - ab, "uniform": lambda ab: torch.ones_like(ab),
               "fantasia3d": lambda ab: ab.sqrt() * (1 - ab)}


def cams(az, el=15.0, dist=1.8, fov=50.0):
    az = torch.tensor(az, dtype=F64)
    return from_angles(az, torch.full_like(az, el), torch.full_like(az, dist), torch.full_like(az, fov))


def col(v, x):
    """(B,) -> broadcast against x (B, ...)."""
    return v.reshape(-1, *(1,) * (x.ndim - 1))


def teacher_fn(x_t, t):
    return 0.3 * x_t + 0.1  # an arbitrary fixed denoiser D_p


def sds_expected(x0, t, eps, process, name):
    """w(t) (eps_hat - eps), eps_hat = (x_t - alpha D_p) / sigma."""
    a, b = col(process.alpha(t), x0), col(process.sigma(t), x0)
    x_t = a * x0 + b * eps
    eps_hat = (x_t - a * teacher_fn(x_t, t)) / b
    return THREESTUDIO[name](a**2) * (eps_hat - eps)


# --- SDS weightings ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(THREESTUDIO))
def test_sds_weightings_give_threestudios_x0_gradient(name):
    """d SDS(weighting).loss / dx0 = w(t)(eps_hat - eps), w = 1 - abar, 1, sqrt(abar)(1 - abar) (DreamFusion,
    threestudio's uniform, Fantasia3D) on the SD schedule."""
    # catches sds <-> fantasia3d formulas swapped, and sigma**3 / alpha -> sigma**3 in `sds`
    torch.manual_seed(0)
    process = DiscreteVPProcess(**SD)
    x0 = torch.randn(3, 3, 4, 4, dtype=F64, requires_grad=True)
    t, eps = torch.tensor([20.0, 437.5, 930.0], dtype=F64), torch.randn(3, 3, 4, 4, dtype=F64)
    loss = SDS(weighting=name).loss(x0, t, eps, Critics(process, teacher_fn))
    assert loss.shape == (3,)
    (grad,) = torch.autograd.grad(loss.sum(), x0)
    assert torch.allclose(grad, sds_expected(x0.detach(), t, eps, process, name), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["sds", "fantasia3d"])
def test_sds_through_the_renderer_is_the_vjp_of_the_render(name):
    """d SDS loss / d(grid parameters) = J_render^T [w(t)(eps_hat - eps)] for x0 = Particles.render (the
    pathwise surrogate reaches the voxel grids only through x0)."""
    # catches sds <-> fantasia3d formulas swapped
    torch.manual_seed(1)
    gen = Particles(prompts=1, per_prompt=2, resolution=4, n_samples=4).double()
    with torch.no_grad():
        gen.grids.density.normal_(0.0, 1.0)
        gen.grids.colour.normal_(0.0, 1.0)
    process, params = DiscreteVPProcess(**SD), [gen.grids.density, gen.grids.colour]
    x0 = gen.render(torch.tensor([0, 1]), cams([30.0, -120.0]), 4)
    t, eps = torch.tensor([250.0, 800.0], dtype=F64), torch.randn(2, 3, 4, 4, dtype=F64)
    loss = SDS(weighting=name).loss(x0, t, eps, Critics(process, teacher_fn)).sum()
    got = torch.autograd.grad(loss, params, retain_graph=True)
    want = torch.autograd.grad(x0, params, grad_outputs=sds_expected(x0.detach(), t, eps, process, name))
    for g, w in zip(got, want):
        assert w.abs().max() > 0 and torch.allclose(g, w, rtol=1e-10, atol=1e-14)


# --- the exact mixture -------------------------------------------------------------------------------------------

def random_mixture(b=4, j=3, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(b, j, d, generator=g, dtype=F64)
    log_w = torch.randn(b, j, generator=g, dtype=F64)  # unnormalised on purpose
    alpha = 0.3 + 0.7 * torch.rand(b, generator=g, dtype=F64)
    sigma = 0.2 + torch.rand(b, generator=g, dtype=F64)
    return means, log_w, alpha, sigma


def test_mixture_denoiser_is_tweedie_of_its_log_density():
    """denoise = (x_t + sigma^2 grad log p_t) / alpha (Tweedie), the score by autograd of log_density."""
    # catches s0**2 -> s0 in denoise, and -0.5 sq / v -> +0.5 sq / v in the logits
    means, log_w, alpha, sigma = random_mixture()
    s0 = 0.6
    x_t = (col(alpha, means[:, 0]) * means[:, 1] + torch.randn(4, 5, dtype=F64)).requires_grad_()
    (score,) = torch.autograd.grad(mixture.log_density(x_t, means, log_w, alpha, sigma, s0).sum(), x_t)
    d = mixture.denoise(x_t.detach(), means, log_w, alpha, sigma, s0)
    assert torch.allclose(d, (x_t.detach() + col(sigma, d) ** 2 * score) / col(alpha, d), rtol=1e-10, atol=1e-12)


def test_mixture_log_density_integrates_to_one_in_1d():
    """int p_t(x) dx = 1 (trapezoid on a fine grid, D = 1, unnormalised log weights)."""
    # catches `- norm` -> `+ norm` and a dropped 0.5 in the log normaliser
    means, log_w, alpha, sigma = random_mixture(b=3, d=1, seed=2)
    x = torch.linspace(-12.0, 12.0, 20001, dtype=F64)
    for i in range(3):
        n = len(x)
        lp = mixture.log_density(x[:, None], means[i].expand(n, -1, -1), log_w[i].expand(n, -1),
                                 alpha[i].expand(n), sigma[i].expand(n), 0.5)
        assert torch.trapezoid(lp.exp(), x).item() == pytest.approx(1.0, abs=1e-9)


def test_mixture_sample_picks_components_with_their_weights():
    """u on a fine midpoint grid of [0, 1): component j is picked for a fraction softmax(log_w)_j of the u's;
    eps = 0 returns the component's mean, and s0 eps is added."""
    # catches softmax(log_w) -> exp(log_w) (unnormalised cdf) in sample
    j, n = 4, 10000
    log_w = torch.tensor([0.3, -1.0, 1.2, 0.0], dtype=F64)
    means = torch.arange(j, dtype=F64)[:, None].expand(j, 2) * 10
    u = (torch.arange(n, dtype=F64) + 0.5) / n
    x = mixture.sample(means.expand(n, -1, -1), log_w.expand(n, -1), 0.5, u, torch.zeros(n, 2, dtype=F64))
    freq = torch.bincount((x[:, 0] / 10).round().long(), minlength=j).to(F64) / n
    assert torch.allclose(freq, torch.softmax(log_w, 0), atol=1.0 / n)
    eps = torch.ones(2, 2, dtype=F64)
    x = mixture.sample(means.expand(2, -1, -1), log_w.expand(2, -1), 0.5, torch.tensor([0.0, 0.999]), eps)
    assert torch.equal(x, torch.tensor([[0.5, 0.5], [30.5, 30.5]], dtype=F64))


# --- the mixture-over-renders teacher ----------------------------------------------------------------------------

WEIGHTS = torch.tensor([[3.0, 1.0], [1.0, 2.0]])  # 2 prompts x 2 scenes


def make_teacher(**kw):
    return RenderMixtureTeacher([SCENES["red_ball"], SCENES["head"]], WEIGHTS, DiscreteVPProcess(**SD),
                                s0=0.2, n_samples=8, **kw)


@pytest.fixture(scope="module")
def teacher_case():
    torch.manual_seed(3)
    view = View(torch.tensor([0, 1, 1]), cams([10.0, 100.0, -170.0]), 6)
    t = torch.tensor([300.0, 500.0, 650.0], dtype=F64)
    return view, t, torch.randn(3, 3, 6, 6, dtype=F64)


def branches(teacher, view, x_t, t):
    """D_c and D_u computed independently: renders of each scene, prompt and prompt-marginal weights."""
    means = torch.stack([teacher.render_scene(k, view.cameras, view.size) for k in range(2)], 1)
    w = (WEIGHTS / WEIGHTS.sum(1, keepdim=True)).to(F64)
    a, b = teacher.process.alpha(t), teacher.process.sigma(t)
    d_c = mixture.denoise(x_t, means, w[view.prompt].log(), a, b, teacher.s0)
    d_u = mixture.denoise(x_t, means, w.mean(0).log().expand(len(view), -1), a, b, teacher.s0)
    return d_c, d_u


def test_teacher_is_tweedie_of_its_log_density(teacher_case):
    """At guidance 1: forward = (x_t + sigma^2 grad log p_t(x_t | view)) / alpha."""
    # catches s0**2 -> s0 in mixture.denoise (the teacher's denoiser and density disagree)
    view, t, x_t = teacher_case
    teacher = make_teacher()
    x = x_t.clone().requires_grad_()
    (score,) = torch.autograd.grad(teacher.log_density(x, t, view).sum(), x)
    a, b = col(teacher.process.alpha(t), x_t), col(teacher.process.sigma(t), x_t)
    assert torch.allclose(teacher(x_t, t, view), (x_t + b**2 * score) / a, rtol=1e-9, atol=1e-10)


def test_teacher_guidance_is_uncond_first_on_the_prompt_marginal(teacher_case):
    """forward at guidance w = D_u + w (D_c - D_u), D_u the mixture under the prompts' mean weights; w = 1 is D_c."""
    # catches cond and uncond swapped in guide
    view, t, x_t = teacher_case
    d_c, d_u = branches(make_teacher(), view, x_t, t)
    assert (d_c - d_u).abs().max() > 1e-3  # the prompts disagree here
    assert torch.allclose(make_teacher()(x_t, t, view), d_c, rtol=1e-9, atol=1e-10)
    want = d_u + 4.0 * (d_c - d_u)  # atol: the teacher's weights buffer is float32
    assert torch.allclose(make_teacher(guidance=4.0)(x_t, t, view), want, atol=1e-6)
    assert torch.allclose(make_teacher()(x_t, t, view, guidance=4.0), want, atol=1e-6)


@pytest.mark.parametrize("s", [1.0, 2.5])
def test_text_first_scale_s_is_uncond_first_s_plus_one(teacher_case, s):
    """D_c + s (D_c - D_u) = D_u + (s + 1)(D_c - D_u): text-first s and uncond-first s + 1 give one teacher."""
    # catches `+ 1.0` dropped in uncond_first_scale (text-first s = 1 then returns D_c unguided)
    view, t, x_t = teacher_case
    text = make_teacher(guidance=s, convention="text_first")(x_t, t, view)
    assert torch.allclose(text, make_teacher(guidance=s + 1)(x_t, t, view), rtol=1e-9, atol=1e-10)
    assert uncond_first_scale(100, "text_first") == 101.0 and uncond_first_scale(7.5) == 7.5
    c, u = torch.tensor([2.0]), torch.tensor([0.5])
    assert torch.equal(guide(c, u, s, "text_first"), guide(c, u, s + 1))


def sector_weights(teacher, view):
    """exp(log pi) of the conditional components, (B, scenes, sectors)."""
    _, log_c, _ = teacher.components(view)
    return log_c.exp().reshape(len(view), 2, 4)


def test_janus_teacher_puts_front_weight_on_every_camera(teacher_case):
    """janus_front = 0.7, view-independent prompts: pi = pi(prompt, scene) x (0.7, 0.1, 0.1, 0.1) over
    (front, left, back, right) whatever the camera's sector; the front component is the scene from the front."""
    # catches janus_front put at index 1 (left) in view_weights
    view, _, _ = teacher_case
    teacher = make_teacher(janus_front=0.7)
    w = (WEIGHTS / WEIGHTS.sum(1, keepdim=True)).to(F64)[view.prompt]
    sectors = torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=F64)
    assert torch.allclose(sector_weights(teacher, view), w[:, :, None] * sectors, atol=1e-7)
    means = teacher.components(view)[0]
    front = cams([10.0, 10.0, 10.0])  # 10, 100 - 90 and -170 + 180: all 10 degrees off their centres
    assert torch.allclose(means[:, 0], teacher.render_scene(0, front, 6), atol=1e-10)


def test_view_prompts_put_all_weight_on_the_cameras_own_sector():
    """view_prompts: pi = pi(prompt, scene) x onehot(sector of the camera), so the denoiser is the plain
    (janus_front = None) teacher's, at cameras in each of the four sectors."""
    # catches the sector index shifted by one in view_weights' one-hot
    torch.manual_seed(4)
    view = View(torch.tensor([0, 1, 0, 1]), cams([20.0, 80.0, -160.0, -95.0]), 6)
    t, x_t = torch.tensor([200.0, 400.0, 600.0, 800.0], dtype=F64), torch.randn(4, 3, 6, 6, dtype=F64)
    teacher = make_teacher(janus_front=0.7, view_prompts=True)
    w = (WEIGHTS / WEIGHTS.sum(1, keepdim=True)).to(F64)[view.prompt]
    assert torch.allclose(sector_weights(teacher, view), w[:, :, None] * torch.eye(4, dtype=F64)[:, None, :],
                          atol=1e-7)
    plain = make_teacher()(x_t, t, view)
    assert torch.allclose(teacher(x_t, t, view), plain, rtol=1e-8, atol=1e-9)
    assert not torch.allclose(make_teacher(janus_front=0.7)(x_t, t, view), plain, atol=1e-3)


# --- the exact particle fake -------------------------------------------------------------------------------------

def particles(per_prompt, seed=5):
    torch.manual_seed(seed)
    gen = Particles(prompts=2, per_prompt=per_prompt, resolution=4, n_samples=4).double()
    with torch.no_grad():
        gen.grids.density.normal_(0.0, 1.0)
        gen.grids.colour.normal_(0.0, 1.0)
    return gen


@pytest.mark.parametrize("per_prompt", [1, 2])
def test_particle_mixture_is_the_mixture_over_the_prompts_particles(per_prompt):
    """fake(x_t) at a view = the equal-weight diffused mixture over the renders of the row's prompt's particles
    from the row's camera; per_prompt = 1: D = mu + (alpha s0^2 / v)(x_t - alpha mu), v = alpha^2 s0^2 + sigma^2."""
    # catches prompt * n -> prompt (per_prompt 2 renders another prompt's particle)
    gen, process, s0 = particles(per_prompt), DiscreteVPProcess(**SD), 0.2
    fake = ParticleMixture(lambda: gen, s0, process)
    view = View(torch.tensor([0, 1, 1]), cams([10.0, 100.0, -170.0]), 4)
    t, x_t = torch.tensor([150.0, 450.0, 700.0], dtype=F64), torch.randn(3, 3, 4, 4, dtype=F64)
    a, b = process.alpha(t), process.sigma(t)
    with torch.no_grad():
        renders = torch.stack([gen.render(view.prompt * per_prompt + k, view.cameras, 4)
                               for k in range(per_prompt)], 1)
    got = fake(x_t, t, view)
    if per_prompt == 1:
        mu, aa = renders[:, 0], col(a, x_t)
        k = aa * s0**2 / (aa**2 * s0**2 + col(b, x_t) ** 2)
        assert torch.allclose(got, mu + k * (x_t - aa * mu), rtol=1e-10, atol=1e-12)
    want = mixture.denoise(x_t, renders, torch.zeros(3, per_prompt, dtype=F64), a, b, s0)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)


def test_particle_mixture_is_exact_no_parameters_no_generator_gradient():
    """The fake holds no parameters; backprop through it reaches x_t (d D / d x_t = alpha s0^2 / v elementwise
    for one particle) and never the generator."""
    # catches the `torch.no_grad()` around the particles' render removed (the grids then get gradients)
    gen, process, s0 = particles(1), DiscreteVPProcess(**SD), 0.2
    fake = ParticleMixture(lambda: gen, s0, process)
    assert list(fake.parameters()) == []
    view = View(torch.tensor([1, 0]), cams([45.0, -60.0]), 4)
    t, x_t = torch.tensor([300.0, 600.0], dtype=F64), torch.randn(2, 3, 4, 4, dtype=F64, requires_grad=True)
    fake(x_t, t, view).sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in gen.parameters())
    a, b = col(process.alpha(t), x_t), col(process.sigma(t), x_t)
    assert torch.allclose(x_t.grad, (a * s0**2 / (a**2 * s0**2 + b**2)).expand_as(x_t), rtol=1e-10)


def test_particle_mixture_ratio_is_teacher_over_student_log_density():
    """ratio=True: log r = log p_t(x_t | view) - log q_t(x_t | view), q_t = N(alpha mu, v I) for one particle."""
    # catches the ratio's sign flipped (student over teacher)
    gen, s0 = particles(1), 0.2
    teacher = make_teacher()  # s0 = 0.2 too
    disc = ParticleMixture(lambda: gen, s0, teacher.process, teacher=teacher, ratio=True)
    assert not any(p.requires_grad for p in disc.parameters())
    view = View(torch.tensor([1, 0]), cams([45.0, -60.0]), 4)
    t = torch.tensor([300.0, 600.0], dtype=F64)
    a, b = teacher.process.alpha(t), teacher.process.sigma(t)
    with torch.no_grad():
        mu = gen.render(view.prompt, view.cameras, 4)
    x_t = col(a, mu) * mu + 0.5 * torch.randn_like(mu)
    v = a**2 * s0**2 + b**2
    log_q = -0.5 * ((x_t - col(a, mu) * mu) ** 2).flatten(1).sum(1) / v - 0.5 * mu[0].numel() * torch.log(
        2 * math.pi * v)
    assert torch.allclose(disc(x_t, t, view), teacher.log_density(x_t, t, view) - log_q, rtol=1e-10)


# --- IKL (VSD) and SIM with the exact fake on one Gaussian particle ----------------------------------------------

def gaussian_case(process, t_value, b=4):
    """x0 = mu (b copies, leaf), teacher N(m, s0^2 I), fake the exact mixture over the particle N(mu, s0^2 I)."""
    torch.manual_seed(6)
    s0, m = 0.4, torch.tensor([1.0, 0.2, -0.4], dtype=F64)
    mu = torch.tensor([0.3, -1.2, 0.5], dtype=F64)
    x0 = mu.repeat(b, 1).requires_grad_()
    t, eps = torch.full((b,), t_value, dtype=F64), torch.randn(b, 3, dtype=F64)
    zeros = torch.zeros(b, 1, dtype=F64)
    critics = Critics(
        process,
        teacher=lambda x, s: mixture.denoise(x, m.expand(b, 1, 3), zeros, process.alpha(s), process.sigma(s), s0),
        fake=lambda x, s: mixture.denoise(x, x0.detach()[:, None], zeros, process.alpha(s), process.sigma(s), s0))
    a, sig = process.alpha(t[:1]), process.sigma(t[:1])
    return x0, t, eps, critics, mu, m, s0, a, a**2 * s0**2 + sig**2


PROCESSES = [(VEProcess(), 0.7), (DiscreteVPProcess(**SD), 400.0)]


@pytest.mark.parametrize("process,t_value", PROCESSES, ids=["ve", "vp"])
def test_ikl_with_exact_fake_is_the_gradient_of_the_gaussian_kl(process, t_value):
    """KL(N(a mu, v I) || N(a m, v I)) = a^2 |mu - m|^2 / (2 v), v = a^2 s0^2 + sigma^2, so every row's
    IKL(unit) gradient is a^2 (mu - m) / v whatever eps (the score gap is constant); VE: (mu - m)/(s0^2 + sigma^2)."""
    # catches the gap's sign in pathwise (fake - teacher -> teacher - fake)
    x0, t, eps, critics, mu, m, s0, a, v = gaussian_case(process, t_value)
    (grad,) = torch.autograd.grad(IntegralKL(weighting="unit").loss(x0, t, eps, critics).sum(), x0)
    want = a**2 * (mu - m) / v
    assert torch.allclose(grad, want.expand_as(grad), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("c", [0.3, 100.0])
@pytest.mark.parametrize("process,t_value", PROCESSES, ids=["ve", "vp"])
def test_sim_with_exact_fake_is_half_the_frozen_sampling_fisher_gradient(process, t_value, c):
    """SIM (alpha = 1, pseudo-Huber c, unit) gradient = Term1 / 2, Term1 = E_{x ~ sg q}[d/dmu d(s_p(x) - s_q(x; mu))]
    (MATH.md), by autograd of an independent closed-form score with x frozen; for equal covariances it is
    eps-free: a^2 (mu - m) / (v^2 n), n = sqrt(|a (m - mu) / v|^2 + c^2)."""
    # catches `0.5 *` -> `1.0 *` in ScoreDivergence.loss
    x0, t, eps, critics, mu, m, s0, a, v = gaussian_case(process, t_value)
    (grad,) = torch.autograd.grad(SIM(c=c, alpha=1.0, weighting="unit").loss(x0, t, eps, critics).sum(), x0)
    x = (a * mu + process.sigma(t)[:, None] * eps).detach()  # frozen samples
    mus = mu.repeat(len(t), 1).requires_grad_()
    y = -(x - a * m) / v + (x - a * mus) / v  # s_p(x) - s_q(x; mu)
    (term1,) = torch.autograd.grad((torch.sqrt((y**2).sum(1) + c**2) - c).sum(), mus)
    assert torch.allclose(grad, term1 / 2, rtol=1e-9, atol=1e-13)
    n = torch.sqrt((a * (m - mu) / v).pow(2).sum() + c**2)
    assert torch.allclose(grad, (0.5 * a**2 * (mu - m) / (v**2 * n)).expand_as(grad), rtol=1e-9, atol=1e-13)


# --- HiFA time schedule ------------------------------------------------------------------------------------------

def test_hifa_square_root_schedule():
    """t = t_min + (t_max - t_min)(1 - sqrt(progress)), every draw the same; defaults to the process range;
    bounds outside the range or t_min >= t_max fail naming the option."""
    # catches sqrt(progress) -> progress (at 0.25: 940 - 480 = 460 vs 940 - 240 = 700)
    process = DiscreteVPProcess(**SD)
    sample = hifa(t_min=20.0, t_max=980.0)
    for progress, want in ((0.0, 980.0), (0.25, 500.0), (1.0, 20.0), (1.5, 20.0)):
        t = sample(5, process, generator=torch.Generator().manual_seed(0), progress=progress)
        assert t.shape == (5,) and torch.allclose(t, torch.full((5,), want))
    assert torch.allclose(hifa()(3, process, progress=0.25), torch.full((3,), 999.0 / 2))
    with pytest.raises(OptionError, match="above t_min") as e:
        hifa(t_min=500.0, t_max=100.0)
    assert e.value.option == "t_max"
    with pytest.raises(OptionError, match="time range") as e:
        hifa(t_max=2000.0)(2, process)
    assert e.value.option == "t_max"
    with pytest.raises(OptionError) as e:
        hifa(t_min=-1.0)(2, process)
    assert e.value.option == "t_min"


# --- exact critics in the objective ------------------------------------------------------------------------------

class Zero(nn.Module):
    """A closed-form fake with no parameters."""

    def forward(self, x_t, t, c):
        return x_t * 0


class Learned(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t, c):
        return self.w * x_t


def objective(fake):
    return ContinuousDistillation(process=VEProcess(), teacher=lambda x, t, c: x * 0, generator=nn.Linear(2, 2),
                                  latents=lambda noise, n, progress: (torch.zeros(n, 2), None),
                                  divergence=IntegralKL(), time_sampler=lambda n, p, **kw: torch.ones(n), fake=fake)


def test_fake_without_parameters_is_exact_and_never_trained():
    """A fake with no trainable parameters is queried, not trained: absent from `modules`, present in `exact`,
    and aux_losses has nothing to train; a fake with a parameter is trained."""
    # catches the exact fake put back in `modules` (aux_losses would then train it)
    fake = Zero()
    obj = objective(fake)
    assert set(obj.modules) == {"generator"} and obj.exact == {"fake": fake}
    assert obj.aux_losses(None, 4, None) == {}
    learned = Learned()
    obj = objective(learned)
    assert obj.modules["fake"] is learned and obj.exact == {}


def test_playground_sds_and_vsd_reach_the_teachers_images():
    """The 2-D playground (parameters = pictures) under one fixed camera: the exact teacher is a two-image mixture.
    SDS with a Dirac student moves every picture to a mode; VSD with the exact fake keeps two particles apart, one
    on each image. Mutation caught: the sign of the integral-KL gap (the pictures then leave the images)."""
    from unidistill.engine.divergences import SDS, IntegralKL
    from unidistill.engine.process import DiscreteVPProcess
    from unidistill.modalities.threed.cameras import from_angles
    from unidistill.modalities.threed.generators import Playground
    from unidistill.modalities.threed.scenes import SCENES
    from unidistill.modalities.threed.teacher import ParticleMixture, RenderMixtureTeacher
    from unidistill.modalities.threed.views import View

    torch.manual_seed(0)
    process = DiscreteVPProcess(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    teacher = RenderMixtureTeacher([SCENES["red_ball"], SCENES["blue_cube"]], torch.tensor([[0.5, 0.5]]), process,
                                   s0=0.1, n_samples=16)
    cams = from_angles(torch.zeros(2), torch.full((2,), 10.0), torch.full((2,), 1.7), torch.full((2,), 50.0))
    images = torch.stack([teacher.render_scene(k, cams.select(0), 8)[0] for k in range(2)])  # (2, 3, 8, 8)
    for divergence, exact_fake in ((SDS(weighting="uniform"), False), (IntegralKL(weighting="uniform"), True)):
        g = Playground(1, per_prompt=2, size=8)
        g.image.data[0], g.image.data[1] = 0.3, -0.3  # two flat greys, slightly apart
        fake = ParticleMixture(lambda g=g: g, 0.1, process) if exact_fake else None
        opt = torch.optim.Adam(g.parameters(), lr=0.05)
        gen = torch.Generator().manual_seed(1)
        for _ in range(300):
            view = View(torch.zeros(2, dtype=torch.long), cams, 8, torch.arange(2))
            x0 = g(torch.arange(2), view)
            t = 20 + 960 * torch.rand(2, generator=gen)
            eps = torch.randn(x0.shape, generator=gen)
            critics = Critics(process, teacher=lambda x, s, v=view: teacher(x, s, v),
                              fake=None if fake is None else (lambda x, s, v=view, f=fake: f(x, s, v)))
            opt.zero_grad()
            divergence.loss(x0, t, eps, critics).mean().backward()
            opt.step()
        with torch.no_grad():
            x = g(torch.arange(2), view)
        dist = ((x[:, None] - images[None]) ** 2).flatten(2).mean(2)  # (particles, images)
        assert dist.min(1).values.max() < 0.02, dist  # every picture sits on an image
        if exact_fake:
            assert set(dist.argmin(1).tolist()) == {0, 1}, dist  # VSD: one particle on each
