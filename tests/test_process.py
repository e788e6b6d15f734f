"""Corruption processes: schedules, conversions between predictions, masking, time samplers."""
from __future__ import annotations

import math

import pytest
import torch

from unidistill.engine.process import (
    PREDICTIONS,
    PROCESSES,
    TIME_SAMPLERS,
    MaskingProcess,
    VEProcess,
    gumbel_argmax,
    karras_sigmas,
)

GAUSSIAN = [PROCESSES.get(n)() for n in PROCESSES.names()]


@pytest.mark.parametrize("p", GAUSSIAN, ids=PROCESSES.names())
@pytest.mark.parametrize("kind", PREDICTIONS)
def test_conversions_round_trip_and_agree_with_definitions(p, kind):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = p.t_min + (p.t_max - p.t_min) * torch.rand(64, generator=g, dtype=torch.float64) * 0.98 + 1e-3
    x_t = p.add_noise(x0, t, eps)
    pred = p.from_denoiser(x0, x_t, t, kind)  # the prediction a perfect network makes
    assert torch.allclose(p.to_denoiser(pred, x_t, t, kind), x0, atol=1e-8)
    a, b = p.alpha(t)[:, None], p.sigma(t)[:, None]
    da, db = (d[:, None] for d in p.derivatives(t))
    want = {"x0": x0, "eps": eps, "score": -eps / b, "v": a * eps - b * x0, "velocity": da * x0 + db * eps}[kind]
    assert torch.allclose(pred, want, atol=1e-8)


def test_schedules():
    t = torch.tensor([0.25, 0.5], dtype=torch.float64)
    vp = PROCESSES.get("vp_linear")(beta_min=0.1, beta_max=20.0)
    integral = 0.1 * t + 0.5 * t**2 * (20.0 - 0.1)
    assert torch.allclose(vp.alpha(t), torch.exp(-0.5 * integral))
    assert torch.allclose(vp.alpha(t) ** 2 + vp.sigma(t) ** 2, torch.ones(2, dtype=torch.float64))
    cos = PROCESSES.get("vp_cosine")()
    assert torch.allclose(cos.alpha(t) ** 2 + cos.sigma(t) ** 2, torch.ones(2, dtype=torch.float64))
    assert abs(cos.alpha(torch.zeros(1))[0].item() - 1) < 1e-6
    rf = PROCESSES.get("rectified_flow")()
    assert torch.allclose(rf.alpha(t), 1 - t) and torch.allclose(rf.sigma(t), t)
    ve = PROCESSES.get("ve")()
    assert torch.equal(ve.sigma(t), t) and torch.equal(ve.alpha(t), torch.ones(2, dtype=torch.float64))
    da, db = rf.derivatives(t)
    one = torch.ones(2, dtype=torch.float64)
    assert torch.allclose(da, -one) and torch.allclose(db, one)


def test_bad_process_arguments():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        PROCESSES.get("ve")(sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="unknown prediction kind 'logits'"):
        GAUSSIAN[0].to_denoiser(torch.zeros(2, 1), torch.zeros(2, 1), torch.ones(2), "logits")


def test_karras_grid_endpoints_and_order():
    s = karras_sigmas(10, 0.002, 80.0)
    assert s[0].item() == pytest.approx(80.0) and s[-1].item() == pytest.approx(0.002)
    assert (s[1:] < s[:-1]).all()


@pytest.mark.parametrize("name,kw,mean", [
    ("uniform", {}, None), ("lognormal", {"p_mean": -1.2, "p_std": 1.2}, None),
    ("karras", {"n_grid": 16}, None), ("beta", {"a": 2.0, "b": 5.0}, 2.0 / 7.0),
])
def test_time_samplers_stay_in_range(name, kw, mean):
    p = PROCESSES.get("vp_linear")() if name == "beta" else PROCESSES.get("ve")()
    t = TIME_SAMPLERS.get(name)(**kw)(20000, p, generator=torch.Generator().manual_seed(1))
    assert t.shape == (20000,) and (t >= p.t_min - 1e-9).all() and (t <= p.t_max + 1e-9).all()
    if mean is not None:  # Beta(2, 5) on [t_min, 1]
        assert t.mean().item() == pytest.approx(p.t_min + (1 - p.t_min) * mean, abs=0.01)
        assert t.var().item() == pytest.approx((1 - p.t_min) ** 2 * 10 / (49 * 8), rel=0.05)
    if name == "lognormal":
        assert torch.log(t).median().item() == pytest.approx(-1.2, abs=0.05)
    assert "beta" in TIME_SAMPLERS


def test_masking_corrupt_rate_and_step():
    m = MaskingProcess(mask_id=7, eps=0.0)
    x = torch.randint(0, 7, (4000, 16), generator=torch.Generator().manual_seed(0))
    t = torch.full((4000,), 0.3)
    z = m.corrupt(x, t, generator=torch.Generator().manual_seed(1))
    frac = (z == 7).float().mean().item()
    assert frac == pytest.approx(0.3, abs=0.01)
    assert torch.equal(z[z != 7], x[z != 7])  # unmasked tokens are kept
    probs = torch.zeros(4000, 16, 7)
    probs[..., 3] = 1.0
    s = torch.full((4000,), 0.1)
    z2 = m.step(z, probs, t, s, generator=torch.Generator().manual_seed(2))
    # a masked token unmasks with probability (alpha_s - alpha_t) / (1 - alpha_t) = (0.9 - 0.7) / 0.3
    unmasked = ((z == 7) & (z2 != 7)).float().sum() / (z == 7).float().sum()
    assert unmasked.item() == pytest.approx(2 / 3, abs=0.02)
    assert (z2[(z == 7) & (z2 != 7)] == 3).all()
    assert torch.equal(z2[z != 7], z[z != 7])
    z3 = m.step(z, probs, t, torch.zeros(4000))  # the last step unmasks everything
    assert not (z3 == 7).any()


def test_gumbel_argmax_matches_probabilities():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]]).expand(60000, 3))
    draws = gumbel_argmax(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=3).double() / 60000
    assert torch.allclose(freq, torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64), atol=0.01)
    assert math.isclose(freq.sum().item(), 1.0)


def _ramp(u: float, lo: float = 0.002, hi: float = 80.0, rho: float = 7.0) -> float:
    """The Karras ramp at u in [0, 1] (u = 0: sigma_min), written independently of the sampler."""
    return (lo ** (1 / rho) + u * (hi ** (1 / rho) - lo ** (1 / rho))) ** rho


def test_karras_bound_is_sids_noise_distribution():
    """SiD's generator loss draws u ~ U(0, 0.8) on the ramp: sigma at most 24.4, median 0.97 (closed form)."""
    p = VEProcess(0.002, 80.0)
    t = TIME_SAMPLERS.get("karras")(n_grid=None, u_max=0.8)(200_000, p, generator=torch.Generator().manual_seed(0))
    assert t.max().item() <= _ramp(0.8) + 1e-9 and t.max().item() > 0.99 * _ramp(0.8)
    assert _ramp(0.8) == pytest.approx(24.41, abs=0.01) and _ramp(0.4) == pytest.approx(0.965, abs=0.001)
    for q in (0.1, 0.5, 0.9):  # the sample quantiles are the ramp at q * u_max
        assert torch.quantile(t[:50_000].double(), q).item() == pytest.approx(_ramp(0.8 * q), rel=0.02)
    unbounded = TIME_SAMPLERS.get("karras")(n_grid=None)(50_000, p, generator=torch.Generator().manual_seed(0))
    assert torch.quantile(unbounded.double(), 0.5).item() == pytest.approx(_ramp(0.5), rel=0.02)


def test_karras_grid_bound_keeps_the_low_part_of_the_grid():
    p = VEProcess(0.002, 80.0)
    grid = karras_sigmas(64, 0.002, 80.0).float()
    t = TIME_SAMPLERS.get("karras")(n_grid=64, u_max=0.8)(20_000, p, generator=torch.Generator().manual_seed(0))
    allowed = grid[1 - torch.arange(64, dtype=torch.float64) / 63 <= 0.8 + 1e-12]
    assert set(t.unique().tolist()) == set(allowed.tolist())
    full = TIME_SAMPLERS.get("karras")(n_grid=64)(20_000, p, generator=torch.Generator().manual_seed(0))
    assert full.max().item() == pytest.approx(80.0)
    for bad in ({"u_max": 0.0}, {"u_max": 1.5}, {"n_grid": 1}, {"rho": -1.0}):
        with pytest.raises(ValueError):
            TIME_SAMPLERS.get("karras")(**bad)


def test_uniform_anneals_its_upper_end_with_training_progress():
    """ProlificDreamer-style: t_max moves from 0.98 to 0.5 as training goes from anneal[0] to anneal[1]."""
    p = PROCESSES.get("vp_linear")()
    sample = TIME_SAMPLERS.get("uniform")(t_min=0.02, t_max=0.98, t_max_end=0.5, anneal=[0.2, 0.6])
    g = torch.Generator().manual_seed(0)
    for progress, hi in ((0.0, 0.98), (0.2, 0.98), (0.4, 0.74), (0.6, 0.5), (1.0, 0.5)):
        t = sample(20_000, p, generator=g, progress=progress)
        assert t.min().item() >= 0.02 and t.max().item() <= hi + 1e-6 and t.max().item() > hi - 0.01, progress
    jump = TIME_SAMPLERS.get("uniform")(t_min=0.02, t_max=0.98, t_max_end=0.5, anneal=[0.2, 0.2])
    assert jump(1000, p, generator=g, progress=0.19).max() > 0.9
    assert jump(1000, p, generator=g, progress=0.2).max() <= 0.5
    with pytest.raises(ValueError, match=r"start <= end") as refused:
        TIME_SAMPLERS.get("uniform")(anneal=[0.8, 0.2])
    assert refused.value.option == "anneal"  # the builder names the key: distill.time_sampler.anneal
