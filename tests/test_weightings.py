"""The named weightings reproduce the papers' practical losses exactly (values and x0-gradients),
on arbitrary nonlinear stand-ins for the teacher and fake networks."""
from __future__ import annotations

import torch

from unidistill.engine.divergences import DIVERGENCES, Critics
from unidistill.engine.process import VEProcess, VPLinearProcess

GEN = torch.Generator().manual_seed(0)
W1, W2 = (torch.randn(3, 3, dtype=torch.float64, generator=GEN) for _ in range(2))


def nets(process):
    teacher = lambda x, t: torch.tanh(x @ W1) + 0.1 * x
    fake = lambda x, t: torch.sin(x @ W2) + 0.2 * x
    return Critics(process, teacher=teacher, fake=fake, log_ratio=lambda x, t: (x**2).sum(1) * 0.1)


def batch(process):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    eps = torch.randn(6, 3, dtype=torch.float64, generator=g)
    t = torch.tensor([0.3, 0.8, 1.5, 2.0, 5.0, 0.05], dtype=torch.float64)
    return x0, t, eps


def test_sid_weighting_is_sids_loss_in_ve():
    """Zhou et al. 2024: (y_r - y_f).((y_r - x_g) - alpha (y_r - y_f)) / sg(mean|x_g - y_r|)."""
    p = VEProcess()
    c = nets(p)
    x0, t, eps = batch(p)
    got = DIVERGENCES.get("sid")(alpha=1.2).loss(x0, t, eps, c)
    x_t = x0 + t[:, None] * eps
    y_r, y_f = c.teacher(x_t, t), c.fake(x_t, t)
    want = ((y_r - y_f) * ((y_r - x0) - 1.2 * (y_r - y_f))).sum(1) / (x0 - y_r).abs().mean(1).detach()
    assert torch.allclose(got, want, rtol=1e-10)
    g1, = torch.autograd.grad(got.sum(), x0)
    g2, = torch.autograd.grad(want.sum(), x0)
    assert torch.allclose(g1, g2, rtol=1e-10)


def test_dmd_weighting_gives_dmds_x0_gradient():
    """Yin et al. 2024: grad_x0 = (D_fake - D_real) / mean|x0 - D_real|, in VE and VP."""
    for p in (VEProcess(), VPLinearProcess()):
        c = nets(p)
        x0, t, eps = batch(p)
        t = t.clamp(max=0.99) if isinstance(p, VPLinearProcess) else t
        loss = DIVERGENCES.get("ikl")(weighting="dmd").loss(x0, t, eps, c)
        g, = torch.autograd.grad(loss.sum(), x0)
        a, b = p.alpha(t)[:, None], p.sigma(t)[:, None]
        x_t = a * x0.detach() + b * eps
        d_p, d_q = c.teacher(x_t, t), c.fake(x_t, t)
        assert torch.allclose(g, (d_q - d_p) / (x0.detach() - d_p).abs().mean(1, keepdim=True), rtol=1e-10)


def test_sigma2_weighting_gives_denoiser_difference():
    """Diff-Instruct with sigma^2 / alpha^2 weighting: grad_x0 = D_fake - D_teacher."""
    p = VPLinearProcess()
    c = nets(p)
    x0, t, eps = batch(p)
    t = t.clamp(max=0.99)
    g, = torch.autograd.grad(DIVERGENCES.get("ikl")().loss(x0, t, eps, c).sum(), x0)
    x_t = p.alpha(t)[:, None] * x0.detach() + p.sigma(t)[:, None] * eps
    assert torch.allclose(g, c.fake(x_t, t) - c.teacher(x_t, t), rtol=1e-10)


def test_normalised_h_has_unit_batch_mean():
    p = VEProcess()
    c = nets(p)
    x0, t, eps = batch(p)
    plain = DIVERGENCES.get("fdiv")(f="fkl", weighting="unit")
    normed = DIVERGENCES.get("fdiv")(f="fkl", weighting="unit", normalise_h=True)
    g1, = torch.autograd.grad(plain.loss(x0, t, eps, c).sum(), x0)
    g2, = torch.autograd.grad(normed.loss(x0, t, eps, c).sum(), x0)
    x_t = x0.detach() + t[:, None] * eps
    h = torch.exp(c.log_ratio(x_t, t).clamp(-10.0, 10.0))  # the default log_ratio_clip
    assert torch.allclose(g2, g1 / h.mean(), rtol=1e-10)
