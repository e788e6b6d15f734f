"""Gaussian-mixture teacher: exact denoiser against closed forms, quadrature and autograd (Tweedie),
config parsing, the probability-flow ODE sampler, and the toy MLP networks."""
import math

import pytest
import torch

from unidistill.engine.process import (
    RectifiedFlowProcess,
    VEProcess,
    VPCosineProcess,
    VPLinearProcess,
)
from unidistill.engine.sampling import ode_nfe, sample_ode, sigma_hat, t_of_sigma_hat
from unidistill.modalities.toy_gmm.mixture import ExactTeacher, GaussianMixture
from unidistill.modalities.toy_gmm.nets import MLPDenoiser, MLPDiscriminator, MLPGenerator

PROCESSES = {"ve": VEProcess, "vp_linear": VPLinearProcess, "rectified_flow": RectifiedFlowProcess}
TIMES = {"ve": [0.05, 0.7, 5.0], "vp_linear": [0.05, 0.3, 0.8], "rectified_flow": [0.05, 0.4, 0.9]}
F64 = torch.float64


def mixture_2d() -> GaussianMixture:
    means = [[1.0, -0.5], [-1.5, 0.8], [0.3, 2.0]]
    return GaussianMixture(means, [0.5, 0.2, 0.3], [0.3, 0.6, 0.45])


def times(name: str, b: int) -> list[torch.Tensor]:
    return [torch.full((b,), t, dtype=F64) for t in TIMES[name]]


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_single_component_matches_gaussian_posterior_mean(name):
    process = PROCESSES[name]()
    mu, s = torch.tensor([0.7, -1.2, 2.0], dtype=F64), 0.4
    gmm = GaussianMixture(mu[None], [1.0], s)
    x_t = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    for t in times(name, 16):
        a, b = process.alpha(t)[:, None], process.sigma(t)[:, None]
        expected = mu + a * s**2 / (a**2 * s**2 + b**2) * (x_t - a * mu)
        torch.testing.assert_close(gmm.denoiser(x_t, t, process), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_mixture_denoiser_is_tweedie_of_autograd_score(name):
    """D = (x_t + b^2 grad log p_t(x_t)) / a with the gradient of diffused_log_prob by autograd."""
    process, gmm = PROCESSES[name](), mixture_2d()
    g = torch.Generator().manual_seed(1)
    for t in times(name, 32):
        a, b = process.alpha(t)[:, None], process.sigma(t)[:, None]
        x0 = gmm.sample(32, generator=g).double()
        x_t = process.add_noise(x0, t, torch.randn(x0.shape, generator=g, dtype=x0.dtype))
        x_t.requires_grad_(True)
        grad = torch.autograd.grad(gmm.diffused_log_prob(x_t, t, process).sum(), x_t)[0]
        x_t = x_t.detach()
        torch.testing.assert_close(gmm.denoiser(x_t, t, process), (x_t + b**2 * grad) / a,
                                   rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(gmm.score(x_t, t, process), grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_mixture_denoiser_matches_quadrature_in_1d(name):
    """E[x0 | x_t] = int x0 p0(x0) N(x_t; a x0, b^2) dx0 / int p0(x0) N(x_t; a x0, b^2) dx0."""
    process = PROCESSES[name]()
    gmm = GaussianMixture([[-2.0], [0.5], [3.0]], [0.3, 0.5, 0.2], [0.5, 0.3, 0.8])
    x0 = torch.linspace(-12, 12, 24_001, dtype=F64)
    prior = gmm.log_prob(x0[:, None]).exp()
    for t in times(name, 5):
        a, b = process.alpha(t)[:1], process.sigma(t)[:1]
        x_t = a * torch.tensor([[-3.0], [-1.0], [0.2], [1.5], [4.0]], dtype=F64)
        post = prior * torch.exp(-0.5 * ((x_t - a * x0) / b) ** 2)  # (5, N)
        expected = torch.trapezoid(post * x0, x0) / torch.trapezoid(post, x0)
        denoised = gmm.denoiser(x_t, t, process)[:, 0]
        torch.testing.assert_close(denoised, expected, rtol=1e-6, atol=1e-6)
        density = torch.trapezoid(post, x0) / (math.sqrt(2 * math.pi) * b)
        p_t = gmm.diffused_log_prob(x_t, t, process).exp()
        torch.testing.assert_close(p_t, density, rtol=1e-6, atol=0)


def test_log_prob_matches_torch_distributions():
    gmm = mixture_2d()
    dist = torch.distributions
    ref = dist.MixtureSameFamily(
        dist.Categorical(gmm.weights),
        dist.Independent(dist.Normal(gmm.means, gmm.stds[:, None]), 1),
    )
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(2), dtype=F64) * 2
    torch.testing.assert_close(gmm.log_prob(x), ref.log_prob(x), rtol=1e-12, atol=1e-12)


def test_zero_weight_component_is_ignored():
    process = VPLinearProcess()
    with_zero = GaussianMixture([[0.0, 0.0], [5.0, 5.0]], [1.0, 0.0], [0.5, 0.5])
    alone = GaussianMixture([[0.0, 0.0]], [1.0], 0.5)
    x_t, t = torch.randn(8, 2, dtype=F64) * 3, torch.full((8,), 0.4, dtype=F64)
    torch.testing.assert_close(with_zero.denoiser(x_t, t, process), alone.denoiser(x_t, t, process))
    assert torch.isfinite(with_zero.diffused_log_prob(x_t, t, process)).all()


def test_sample_moments():
    gmm = mixture_2d()
    x = gmm.sample(400_000, generator=torch.Generator().manual_seed(3)).double()
    assert x.dtype == torch.float64 and x.shape == (400_000, 2)
    mean = (gmm.weights[:, None] * gmm.means).sum(0)
    second = (gmm.weights[:, None, None] * (torch.diag_embed(gmm.stds[:, None].expand(-1, 2) ** 2)
                                            + gmm.means[:, :, None] * gmm.means[:, None, :])).sum(0)
    torch.testing.assert_close(x.mean(0), mean, rtol=0, atol=0.01)
    torch.testing.assert_close(x.T.cov(), second - torch.outer(mean, mean), rtol=0, atol=0.02)
    assert gmm.sample(5).dtype == torch.float32


def test_from_config_ring():
    weights = [0.05, 0.1, 0.15, 0.2, 0.2, 0.15, 0.1, 0.05]
    gmm = GaussianMixture.from_config(
        {"ring": {"modes": 8, "radius": 3.0, "std": 0.1, "weights": weights}})
    assert gmm.means.shape == (8, 2) and gmm.n_components == 8 and gmm.dim == 2
    torch.testing.assert_close(gmm.means.norm(dim=1), torch.full((8,), 3.0, dtype=F64))
    angles = torch.atan2(gmm.means[:, 1], gmm.means[:, 0]).remainder(2 * math.pi)
    spaced = torch.arange(8, dtype=F64) * 2 * math.pi / 8
    torch.testing.assert_close(angles, spaced, atol=1e-12, rtol=0)
    torch.testing.assert_close(gmm.weights, torch.tensor(weights, dtype=F64))
    torch.testing.assert_close(gmm.stds, torch.full((8,), 0.1, dtype=F64))
    uniform = GaussianMixture.from_config(
        {"ring": {"modes": 4, "radius": 1.0, "std": 0.2, "weights": None}})
    torch.testing.assert_close(uniform.weights, torch.full((4,), 0.25, dtype=F64))


def test_from_config_means_and_random():
    gmm = GaussianMixture.from_config({"means": [[0.0, 1.0], [2.0, 3.0]], "weights": [0.25, 0.75],
                                       "std": [0.5, 1.0]})
    torch.testing.assert_close(gmm.stds, torch.tensor([0.5, 1.0], dtype=F64))
    cfg = {"random": {"modes": 5, "dim": 3, "scale": 4.0, "std": 0.2, "seed": 7}}
    a, b = GaussianMixture.from_config(cfg), GaussianMixture.from_config(cfg)
    assert a.means.shape == (5, 3)
    torch.testing.assert_close(a.means, b.means)
    other = GaussianMixture.from_config({"random": {**cfg["random"], "seed": 8}})
    assert not torch.allclose(a.means, other.means)


@pytest.mark.parametrize("cfg, match", [
    ({"ring": {"modes": 3, "radius": 1.0, "std": 0.1, "weights": [0.5, 0.3, 0.1]}}, "sum 0.9"),
    ({"ring": {"modes": 2, "radius": 1.0, "std": 0.1, "weights": [1.5, -0.5]}}, "non-negative"),
    ({"ring": {"modes": 3, "radius": 1.0, "std": 0.1, "weights": [0.5, 0.5]}}, "shape \\(3,\\)"),
    ({"ring": {"modes": 3, "radious": 1.0, "std": 0.1}}, "'radious'.*allowed keys: modes, radius"),
    ({"ring": {"modes": 3, "std": 0.1}}, "missing required key 'radius'"),
    ({"ring": {"modes": 0, "radius": 1.0, "std": 0.1}}, "ring.modes"),
    ({"mean": [[0.0]], "std": 1.0}, "unknown key 'mean'.*allowed keys: means, weights"),
    ({"means": [[0.0]], "ring": {"modes": 2, "radius": 1.0, "std": 0.1}}, "exactly one of"),
    ({"ring": {"modes": 2, "radius": 1.0, "std": 0.1}, "std": 1.0},
     "'std' not allowed beside 'ring'"),
    ({"random": {"modes": 2, "dim": 2, "std": 0.1, "sead": 1}}, "'sead'.*allowed keys"),
    ({"means": [[0.0], [1.0]], "std": [0.1, 0.0]}, "stds must be finite and > 0"),
    ({"means": [[0.0, 1.0], [1.0]], "std": 0.1}, "means must be numbers"),
    ({"ring": {"modes": 2, "radius": "far", "std": 0.1}}, "ring.radius must be a finite number"),
    ({"random": {"modes": 2, "dim": 2, "std": 0.1, "seed": 1.5}}, "random.seed must be an integer"),
    (["ring"], "gmm config must be a mapping"),
])
def test_from_config_rejects_bad_configs(cfg, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture.from_config(cfg)


def test_constructor_validation():
    with pytest.raises(ValueError, match="means must have shape"):
        GaussianMixture(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="means must have shape"):
        GaussianMixture([1.0, 2.0])
    with pytest.raises(ValueError, match="stds must be a scalar or have shape \\(2,\\)"):
        GaussianMixture([[0.0], [1.0]], None, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="x_t must have shape \\(B, 2\\)"):
        mixture_2d().denoiser(torch.zeros(4, 3), torch.ones(4), VEProcess())


def test_exact_teacher_is_a_parameter_free_module():
    gmm, process = mixture_2d(), VPLinearProcess()
    teacher = ExactTeacher(gmm, process)
    assert list(teacher.parameters()) == []
    assert {name for name, _ in teacher.named_buffers()} == {"means", "log_weights", "var"}
    x_t, t = torch.randn(10, 2, dtype=F64), torch.rand(10, dtype=F64) * 0.9 + 0.05
    torch.testing.assert_close(teacher(x_t, t), gmm.denoiser(x_t, t, process))
    out32 = teacher.to(torch.float32)(x_t.float(), t.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), gmm.denoiser(x_t, t, process), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="unconditional"):
        teacher(x_t, t, torch.zeros(10))


@pytest.mark.parametrize("process", [VEProcess(), VPLinearProcess(), RectifiedFlowProcess(),
                                     VPCosineProcess()], ids=type)
def test_t_of_sigma_hat_inverts_sigma_hat(process):
    t = torch.linspace(process.t_min, process.t_max, 33, dtype=F64)
    recovered = t_of_sigma_hat(process, sigma_hat(process, t))
    torch.testing.assert_close(recovered, t, rtol=1e-9, atol=1e-12)
    if isinstance(process, VEProcess):
        s = torch.tensor([0.002, 0.5, 80.0], dtype=F64)
        assert torch.equal(t_of_sigma_hat(process, s), s)


@pytest.mark.parametrize("name", ["ve", "vp_linear"])
def test_heun_ode_recovers_a_gaussian(name):
    process = PROCESSES[name]()
    mu, s, n = torch.tensor([1.5, -2.0]), 0.5, 16_000
    teacher = ExactTeacher(GaussianMixture(mu[None], [1.0], s), process)
    # three seeds pooled: the std's Monte-Carlo error (~0.25%) stays well below Heun's own
    # deterministic inflation of the std at 32 steps (~1.6%, see the convergence test)
    x = [sample_ode(teacher, process, 32, n, 2, generator=torch.Generator().manual_seed(seed))
         for seed in range(3)]
    assert x[0].shape == (n, 2) and x[0].dtype == torch.float32
    x = torch.cat(x)
    torch.testing.assert_close(x.mean(0), mu, rtol=0.02, atol=0)
    torch.testing.assert_close((x - mu).pow(2).mean().sqrt(), torch.tensor(s), rtol=0.02, atol=0)


@pytest.mark.parametrize("name", ["ve", "vp_linear"])
def test_heun_ode_converges_at_second_order_to_the_exact_flow(name):
    """The flow of N(mu, s^2) maps x_hat_T = sigma_hat_T z to
    mu + s (x_hat_T - mu) / sqrt(s^2 + sigma_hat_T^2); Heun's error falls ~4x per step doubling."""
    process = PROCESSES[name]()
    mu, s, n = torch.tensor([1.5, -2.0], dtype=F64), 0.5, 256
    teacher = ExactTeacher(GaussianMixture(mu[None], [1.0], s), process)
    s_max = sigma_hat(process, torch.tensor(process.t_max, dtype=F64)).item()
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    exact = mu + s * (s_max * z - mu) / math.sqrt(s**2 + s_max**2)
    err = {}
    for steps in (16, 32):
        g = torch.Generator().manual_seed(6)
        x = sample_ode(teacher, process, steps, n, 2, generator=g, dtype=F64)
        err[steps] = (x - exact).abs().max().item()
    assert err[32] < 0.05 and err[16] / err[32] > 3.5, err


@pytest.mark.parametrize("name", ["ve", "vp_linear", "rectified_flow"])
def test_one_step_ode_is_the_posterior_mean_at_T(name):
    process = PROCESSES[name]()
    gmm = GaussianMixture([[1.5, -2.0]], [1.0], 0.5)
    g = torch.Generator().manual_seed(5)
    x = sample_ode(ExactTeacher(gmm, process), process, 1, 4096, 2, generator=g)
    z = torch.randn(4096, 2, generator=torch.Generator().manual_seed(5))
    t_max = torch.full((4096,), process.t_max)
    expected = gmm.denoiser(process.sigma(t_max)[:, None] * z, t_max, process)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.mean(0), torch.tensor([1.5, -2.0]), rtol=0.02, atol=0)


@pytest.mark.parametrize("method, n_steps", [("heun", 1), ("heun", 5), ("euler", 5)])
def test_ode_counts_network_evaluations(method, n_steps):
    calls = []
    teacher = ExactTeacher(mixture_2d(), VEProcess())

    def counting(x, t):
        calls.append(t[0].item())
        return teacher(x, t)

    sample_ode(counting, VEProcess(), n_steps, 8, 2, method=method)
    assert len(calls) == ode_nfe(n_steps, method)
    assert calls[0] == pytest.approx(80.0)
    assert calls[-1] == pytest.approx(80.0 if n_steps == 1 else 0.002)
    with pytest.raises(ValueError, match="unknown ODE method 'rk4'.*euler, heun"):
        sample_ode(counting, VEProcess(), 2, 8, 2, method="rk4")


@pytest.mark.parametrize("process", [VEProcess(), VPLinearProcess(), RectifiedFlowProcess(),
                                     VPCosineProcess()], ids=type)
def test_mlp_nets_shapes_and_finite_across_time(process):
    torch.manual_seed(0)
    dim, b = 3, 64
    t = torch.exp(torch.linspace(math.log(process.t_min), math.log(process.t_max), b))
    x0 = torch.randn(b, dim)
    x_t = process.add_noise(x0, t, torch.randn_like(x0))
    den = MLPDenoiser(dim, process, hidden=32, depth=2)
    disc = MLPDiscriminator(dim, process, hidden=32)
    d, logit = den(x_t, t), disc(x_t, t)
    assert d.shape == (b, dim) and logit.shape == (b,)
    assert torch.isfinite(d).all() and torch.isfinite(logit).all()
    gen = MLPGenerator(dim, latent_dim=5, hidden=32)
    x = gen(torch.randn(b, 5))
    assert x.shape == (b, dim)
    x.pow(2).mean().backward()
    assert all(p.grad is not None for p in gen.parameters())


def test_mlp_denoiser_with_zero_output_is_the_exact_gaussian_denoiser():
    """F = 0 leaves D = c_skip x_hat, the exact denoiser of x0 ~ N(0, sigma_data^2 I)."""
    process, sigma_data = VPLinearProcess(), 0.7
    den = MLPDenoiser(2, process, sigma_data=sigma_data, hidden=16)
    torch.nn.init.zeros_(den.net[-1].weight)
    torch.nn.init.zeros_(den.net[-1].bias)
    exact = GaussianMixture([[0.0, 0.0]], [1.0], sigma_data)
    x_t, t = torch.randn(32, 2), torch.linspace(process.t_min, process.t_max, 32)
    torch.testing.assert_close(den(x_t, t), exact.denoiser(x_t, t, process), rtol=1e-5, atol=1e-5)


def test_mlp_nets_reject_bad_arguments():
    with pytest.raises(ValueError, match="MLPDenoiser depth must be an integer >= 1, got 0"):
        MLPDenoiser(2, VEProcess(), depth=0)
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        MLPDiscriminator(2, VEProcess(), sigma_data=0.0)
    with pytest.raises(ValueError, match="input must have shape \\(B, 2\\)"):
        MLPDenoiser(2, VEProcess())(torch.zeros(4, 3), torch.ones(4))
