"""Auxiliary models learn what the divergences assume: the fake score learns the student's
diffused denoiser, the discriminator learns log(teacher_t / student_t); the reward term adds
-alpha * grad reward; bf16 autocast trains."""
from __future__ import annotations

import pytest
import torch
from tiny import GaussianTeacher, LinearGenerator
from torch import nn

from unidistill.engine.alignment import DIPP
from unidistill.engine.distill import ContinuousDistillation, edm_weight
from unidistill.engine.divergences import DIVERGENCES
from unidistill.engine.noise import Noise
from unidistill.engine.objective import Progress
from unidistill.engine.process import VEProcess, lognormal
from unidistill.modalities.toy_gmm.nets import MLPDenoiser, MLPDiscriminator

START = Progress(0, 1)

pytestmark = pytest.mark.usefixtures("one_thread")


def fixed_student(process, with_disc=False, reward=None):
    """Student x0 = 0.5 + 0.8 z (1-D), teacher N(1.0, 0.5^2) exact."""
    torch.manual_seed(0)
    gen = LinearGenerator(1)
    with torch.no_grad():
        gen.weight.fill_(0.8)
        gen.bias.fill_(0.5)
    teacher = GaussianTeacher(mu=(1.0,), s=0.5)
    fake = MLPDenoiser(1, process, sigma_data=0.8, hidden=64, depth=2)
    disc = MLPDiscriminator(1, process, sigma_data=0.8, hidden=64, depth=2) if with_disc else None
    real = (lambda noise, n: (1.0 + 0.5 * noise.randn(n, 1), None)) if with_disc else None
    obj = ContinuousDistillation(
        process=process, teacher=teacher, generator=gen, latents=lambda noise, n, progress: (noise.randn(n, 1), None),
        divergence=DIVERGENCES.get("ikl")(), time_sampler=lognormal(-0.5, 1.0), fake=fake,
        aux_time_sampler=lognormal(-0.5, 1.0), fake_weight=edm_weight(0.8), discriminator=disc, real=real,
        alignment=reward)
    return obj


def train_aux(obj, steps, lr=3e-3, n=256):
    noise = Noise(0)
    mods = [m for k, m in obj.modules.items() if k != "generator"]
    opt = torch.optim.Adam([p for m in mods for p in m.parameters()], lr=lr)
    for _ in range(steps):
        losses = obj.aux_losses(noise, n, START)
        opt.zero_grad()
        sum(v.mean() for v in losses.values()).backward()
        opt.step()


def exact_denoiser(mean, var, x_t, sigma):
    return mean + var / (var + sigma**2) * (x_t - mean)


def test_fake_score_learns_student_denoiser():
    process = VEProcess(0.01, 20.0)
    obj = fixed_student(process)
    train_aux(obj, 600)
    x = torch.linspace(-1.0, 2.0, 31)[:, None]
    for s in (0.2, 0.7, 2.0):
        t = torch.full((31,), s)
        with torch.no_grad():
            got = obj.fake(x, t)
        want = exact_denoiser(0.5, 0.64, x, s)
        assert (got - want).abs().max().item() < 0.08, (s, (got - want).abs().max().item())
        if s >= 0.7:  # where the two differ, it is the student's denoiser, not the teacher's
            assert (got - exact_denoiser(1.0, 0.25, x, s)).abs().max().item() > 0.2


def test_discriminator_learns_log_ratio():
    process = VEProcess(0.01, 20.0)
    obj = fixed_student(process, with_disc=True)
    train_aux(obj, 1500)
    x = torch.linspace(0.0, 1.5, 24)[:, None]  # the bulk of both distributions
    for s in (0.3, 1.0):
        t = torch.full((24,), s)
        vp, vq = 0.25 + s**2, 0.64 + s**2
        exact = (-0.5 * (x - 1.0) ** 2 / vp - 0.5 * torch.log(torch.tensor(vp))
                 + 0.5 * (x - 0.5) ** 2 / vq + 0.5 * torch.log(torch.tensor(vq))).squeeze(1)
        with torch.no_grad():
            got = obj.disc(x, t, None)
        assert (got - exact).abs().mean().item() < 0.15, (s, (got - exact).abs().mean().item())


def test_dipp_adds_minus_alpha_grad_reward():
    x0 = torch.randn(5, 3, requires_grad=True)
    term = DIPP(reward=lambda x: -(x**2).sum(1), alpha=0.3)
    loss, _ = term.loss(x0, None, None, None, None)
    (g,) = torch.autograd.grad(loss.sum(), x0)
    assert torch.allclose(g, 0.3 * 2 * x0)
    with pytest.raises(ValueError, match="one value per example"):
        DIPP(reward=lambda x: x.sum(), alpha=1.0).loss(x0, None, None, None, None)
    with pytest.raises(ValueError, match="not differentiable"):  # a binary reward trains nothing: refused
        DIPP(reward=lambda x: (x.detach().sum(1) > 0).float(), alpha=1.0).loss(x0, None, None, None, None)


def test_objective_reward_moves_generator_toward_reward():
    process = VEProcess(0.01, 20.0)
    obj = fixed_student(process, reward=DIPP(reward=lambda x: x.sum(1), alpha=10.0))  # reward: larger x
    noise = Noise(0)
    loss, logs = obj.generator_loss(noise, 64, START)
    loss.mean().backward()
    assert obj.modules["generator"].bias.grad.item() < -5  # descending moves the bias up
    assert "reward" in logs


def test_bf16_autocast_trains(tmp_path):
    from tiny import make_objective

    from unidistill.engine.config import TrainConfig
    from unidistill.engine.trainer import Trainer

    t = Trainer(make_objective(), TrainConfig(steps=5, batch_size=32, progress=False, device="cpu",
                                               mixed_precision="bf16", checkpoint_every=5), tmp_path)
    t.fit()
    assert t.step == 5 and sum(t.skipped.values()) == 0
    assert all(torch.isfinite(p).all() for p in t.gen.parameters())


def test_discriminator_without_real_side_is_refused():
    process = VEProcess()
    with pytest.raises(ValueError, match="source of real samples"):
        ContinuousDistillation(process=process, teacher=GaussianTeacher(), generator=nn.Linear(2, 2),
                               latents=lambda noise, n, progress: (noise.randn(n, 2), None),
                               divergence=DIVERGENCES.get("ikl")(), time_sampler=lognormal(),
                               fake=nn.Linear(2, 2), discriminator=nn.Linear(2, 1), real=None)


class TokenTeacher(nn.Module):
    """Exact E[x0 | x_t, c] per token for x0 ~ N(c, 0.25) with the token's own time: x_t (B, L, 1), t (B, L)."""

    def __init__(self, process):
        super().__init__()
        self.process, self.seen = process, []

    def forward(self, x_t, t, c):
        self.seen.append((t.shape, c))
        a, b = self.process.alpha(t)[..., None], self.process.sigma(t)[..., None]
        mu = c[..., None]
        return mu + a * 0.25 / (a**2 * 0.25 + b**2) * (x_t - a * mu)


class TokenGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.7))

    def forward(self, z, c=None):
        return self.scale * z  # (B, L, 1)


def test_per_token_times_progress_and_conditions_from_the_sample():
    """time_shape (L,) draws one time per token; latents and time samplers see the training progress; the
    critics see the condition computed from the sample itself (without its graph), not one bound from z."""
    process, L = VEProcess(0.01, 20.0), 5
    teacher = TokenTeacher(process)
    fake = TokenTeacher(process)
    fake.register_parameter("w", nn.Parameter(torch.zeros(())))
    seen_progress = []

    def latents(noise, n, progress):
        seen_progress.append(progress)
        return noise.randn(n, L, 1), None

    def times(n, proc, device=None, generator=None, progress=0.0):
        seen_progress.append(progress)
        return lognormal()(n, proc, generator=generator)

    def condition(x0, c):  # each token is conditioned on the mean of the others (MAR: the sample's own context)
        assert not x0.requires_grad and c is None
        return (x0.sum(1, keepdim=True) - x0).squeeze(-1) / (L - 1)

    obj = ContinuousDistillation(process=process, teacher=teacher, generator=TokenGenerator(), latents=latents,
                                 divergence=DIVERGENCES.get("sid")(), time_sampler=times, fake=fake,
                                 condition=condition, time_shape=(L,))
    noise = Noise(0)
    loss, _ = obj.generator_loss(noise, 8, Progress(3, 4))
    assert loss.shape == (8,) and torch.isfinite(loss).all()
    (shape, c), = teacher.seen
    assert shape == (8, L) and c.shape == (8, L) and not c.requires_grad
    aux = obj.aux_losses(noise, 8, Progress(3, 4))
    assert aux["fake"].shape == (8,)
    assert seen_progress == [Progress(3, 4), 0.75, Progress(3, 4), 0.75]
    loss.mean().backward()
    assert obj.modules["generator"].scale.grad is not None
