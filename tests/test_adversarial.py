"""The adversarial term on the fake score (engine/adversarial.py): its head learns log p_t / q_t on an exact
Gaussian teacher and student, the generator's term is weight * softplus(-logit) of its own noisy samples (its
gradient in closed form), the fake score's loss adds the head's BCE, and bad configurations fail in one line."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny import GaussianTeacher, LinearGenerator
from torch import nn

from unidistill.engine.adversarial import Adversarial, FakeWithHead
from unidistill.engine.config import ConfigError, OptionError
from unidistill.engine.distill import ContinuousDistillation, edm_weight
from unidistill.engine.divergences import DIVERGENCES
from unidistill.engine.noise import Noise
from unidistill.engine.objective import Progress
from unidistill.engine.process import VEProcess, lognormal
from unidistill.modalities.toy_gmm.nets import MLPDenoiser

START = Progress(0, 1)
pytestmark = pytest.mark.usefixtures("one_thread")


def last_hidden(net):
    return net.net[-2], net.net[-1].in_features


def student(adv: Adversarial, divergence="sim", fake=None, layer=last_hidden):
    """Student x0 = 0.5 + 0.8 z (1-D) against the exact teacher N(1.0, 0.5^2); real side: exact teacher samples."""
    torch.manual_seed(0)
    process = VEProcess(0.01, 20.0)
    gen = LinearGenerator(1)
    with torch.no_grad():
        gen.weight.fill_(0.8)
        gen.bias.fill_(0.5)
    fake = fake or MLPDenoiser(1, process, sigma_data=0.8, hidden=64, depth=2)
    return ContinuousDistillation(
        process=process, teacher=GaussianTeacher(mu=(1.0,), s=0.5), generator=gen,
        latents=lambda noise, n, progress: (noise.randn(n, 1), None), divergence=DIVERGENCES.get(divergence)(),
        time_sampler=lognormal(-0.5, 1.0), aux_time_sampler=lognormal(-0.5, 1.0), fake_weight=edm_weight(0.8),
        fake=FakeWithHead(fake, layer, adv.hidden), real=lambda noise, n: (1.0 + 0.5 * noise.randn(n, 1), None),
        adversarial=adv)


def test_loss_forms():
    adv = Adversarial(weight=0.3, fake_weight=2.0)
    real, fake = torch.tensor([1.5, -0.5]), torch.tensor([0.2, -2.0])
    want = 2.0 * (torch.log1p(torch.exp(-real)) + torch.log1p(torch.exp(fake)))
    assert torch.allclose(adv.classifier_loss(real, fake), want)
    assert torch.allclose(adv.generator_loss(fake), 0.3 * torch.log1p(torch.exp(-fake)))


def test_head_learns_log_density_ratio():
    obj = student(Adversarial(fake_weight=1.0, hidden=64))
    noise = Noise(0)
    opt = torch.optim.Adam(obj.modules["fake"].parameters(), lr=3e-3)
    for _ in range(1500):
        loss = obj.aux_losses(noise, 256, START)["fake"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.linspace(0.0, 1.5, 24)[:, None]
    for s in (0.3, 1.0):
        vp, vq = 0.25 + s**2, 0.64 + s**2
        exact = (-0.5 * (x - 1.0) ** 2 / vp - 0.5 * torch.log(torch.tensor(vp))
                 + 0.5 * (x - 0.5) ** 2 / vq + 0.5 * torch.log(torch.tensor(vq))).squeeze(1)
        with torch.no_grad():
            got = obj.fake.logit(x, torch.full((24,), s))
        assert (got - exact).abs().mean().item() < 0.15, (s, (got - exact).abs().mean().item())


class ExactFake(nn.Module):
    """The teacher's exact denoiser as the fake score (the divergence term is then zero), with a linear feature
    layer: the head reads x_t itself."""

    def __init__(self):
        super().__init__()
        self.teacher, self.tap = GaussianTeacher(mu=(1.0,), s=0.5), nn.Identity()

    def forward(self, x_t, t, c=None):
        self.tap(x_t)
        return self.teacher(x_t, t)


def test_generator_term_and_its_gradient():
    adv = Adversarial(weight=0.7, hidden=4)
    fake = ExactFake()
    obj = student(adv, fake=fake, layer=lambda m: (m.tap, 1))
    obj.fake.requires_grad_(False)
    logit_of = obj.fake.head  # the head's logit is l(x_t) = head(x_t)
    loss, logs = obj.generator_loss(Noise(3), 64, START)
    gen = obj.modules["generator"]
    (g_bias,) = torch.autograd.grad(loss.sum(), gen.bias)
    # replay the draws: latents, generator-loss times, eps, then the adversarial term's times and noise
    noise = Noise(3)
    z = noise.randn(64, 1)
    obj._times(obj.time_sampler, noise, 64, START)
    noise.randn(64, 1)
    t = obj._times(obj.aux_time_sampler, noise, 64, START)
    x_t = (0.5 + 0.8 * z + obj.process.sigma(t)[:, None] * noise.randn(64, 1)).requires_grad_(True)
    lg = logit_of(x_t).squeeze(-1)
    assert torch.allclose(loss, 0.7 * F.softplus(-lg), atol=1e-6)  # SIM with the exact fake adds nothing
    (dl,) = torch.autograd.grad(lg.sum(), x_t)
    want = (0.7 * torch.sigmoid(-lg) * -dl.squeeze(-1)).sum()  # d softplus(-l)/dx0 = -sigmoid(-l) l'(x_t)
    assert torch.allclose(g_bias, want, atol=1e-6)
    assert torch.allclose(logs["adversarial_logit"], lg.mean(), atol=1e-6)


def test_fake_loss_adds_the_heads_bce():
    adv = Adversarial(fake_weight=0.5, hidden=8)
    obj = student(adv)
    plain = student(adv)
    plain.adversarial = None  # same networks and seed; the DSM draws come first, so its part is identical
    with torch.no_grad():
        both = obj.aux_losses(Noise(1), 32, START)["fake"]
        dsm = plain.aux_losses(Noise(1), 32, START)["fake"]
        noise = Noise(1)
        z = noise.randn(32, 1)
        x0 = 0.5 + 0.8 * z
        t = obj._times(obj.aux_time_sampler, noise, 32, START)
        x_t = x0 + obj.process.sigma(t)[:, None] * noise.randn(32, 1)
        real = 1.0 + 0.5 * noise.randn(32, 1)
        real_t = real + obj.process.sigma(t)[:, None] * noise.randn(32, 1)
        bce = 0.5 * (F.softplus(-obj.fake.logit(real_t, t)) + F.softplus(obj.fake.logit(x_t, t)))
    assert torch.allclose(both - dsm, bce, atol=1e-6)


def test_bad_options_and_configurations():
    with pytest.raises(OptionError):
        Adversarial(weight=-1.0)
    with pytest.raises(OptionError):
        Adversarial(hidden=0)
    with pytest.raises(ValueError, match="classifier head"):
        ContinuousDistillation(
            process=VEProcess(), teacher=GaussianTeacher(), generator=LinearGenerator(),
            divergence=DIVERGENCES.get("sim")(),
            latents=lambda noise, n, p: (noise.randn(n, 2), None), time_sampler=lognormal(), fake=nn.Linear(2, 2),
            real=lambda noise, n: (noise.randn(n, 2), None), adversarial=Adversarial())


@pytest.mark.parametrize("sets, expect", [
    (["distill.adversarial.weight=-1"], "distill.adversarial.weight"),
    (["distill.adversarial.wieght=1"], "distill.adversarial.wieght is not an option"),
    (["distill.divergence.name=sds"], "the head sits on the fake score"),
])
def test_toy_config_errors(tmp_path, sets, expect):
    import yaml

    from unidistill.engine.backend import get_backend
    from unidistill.engine.config import build

    raw = yaml.safe_load(open("examples/toy/ring8_sim.yaml"))
    raw["distill"]["adversarial"] = {"weight": 0.01}
    for s in sets:
        key, value = s.split("=")
        *path, last = key.split(".")
        d = raw
        for p in path:
            d = d.setdefault(p, {})
        d[last] = yaml.safe_load(value)
        if last == "name":  # a new divergence keeps none of the old one's options
            d.clear()
            d[last] = yaml.safe_load(value)
    backend = get_backend("toy_gmm")
    with pytest.raises(ConfigError, match=expect):
        cfg = build(backend.Config, {k: v for k, v in raw.items() if k not in ("modality", "train")}, "")
        backend.build(cfg, tmp_path)


def test_trainer_checkpoints_the_head_and_resumes_exactly(tmp_path):
    from unidistill.engine.config import TrainConfig
    from unidistill.engine.trainer import Trainer

    def objective():
        return student(Adversarial(weight=0.1, hidden=16))

    def train_cfg():
        return TrainConfig(steps=12, batch_size=32, lr={"generator": 1e-3, "fake": 1e-3}, checkpoint_every=6,
                           progress=False, device="cpu", log_every=3)

    full = Trainer(objective(), train_cfg(), tmp_path / "full")
    full.fit()
    part = Trainer(objective(), train_cfg(), tmp_path / "part")
    part.fit(stop_at=6)
    resumed = Trainer(objective(), train_cfg(), tmp_path / "part")
    resumed.fit()
    a, b = full.obj.modules["fake"].state_dict(), resumed.obj.modules["fake"].state_dict()
    assert any(k.startswith("head.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "adversarial_logit" in (tmp_path / "full" / "log.csv").read_text().splitlines()[0]
