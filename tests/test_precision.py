"""fp16 training: the dynamic loss scale per module (engine/precision.py) keeps gradients fp16 would flush to
zero, skips and backs off on overflow, grows after a run of finite steps, and is checkpointed."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unidistill.engine import checkpoint as ckpt
from unidistill.engine.config import TrainConfig
from unidistill.engine.objective import Objective
from unidistill.engine.precision import LossScale
from unidistill.engine.trainer import Trainer


class HalfObjective(Objective):
    """x0 = G(z); the loss is `factor` * sum(x0) computed through an fp16 tensor, so the gradient reaching the
    generator passed through fp16 at size `factor` (times the loss scale)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor, self.half = factor, True
        torch.manual_seed(0)
        self.modules = {"generator": nn.Linear(3, 3)}

    def generator_loss(self, noise, n, progress):
        x0 = self.modules["generator"](noise.randn(n, 3))
        return self.factor * (x0.half() if self.half else x0).sum(1).float(), {}


def trainer(tmp_path, factor, precision="fp16", steps=3, **kw):
    cfg = TrainConfig(steps=steps, batch_size=4, progress=False, device="cpu", mixed_precision=precision,
                      lr={"generator": 1e-3}, **kw)
    return Trainer(HalfObjective(factor), cfg, tmp_path)


def generator_grad(t: Trainer) -> torch.Tensor:
    t._train_only(["generator"])
    loss, _ = t.obj.generator_loss(t.noise, t.n, t.progress)
    t._update(["generator"], {"generator": loss})
    return t.obj.modules["generator"].weight.grad.clone()


def test_scale_keeps_gradients_fp16_would_flush(tmp_path):
    """1e-9 is below fp16's smallest subnormal (6e-8): unscaled it arrives as 0, scaled it arrives exactly."""
    scaled = generator_grad(trainer(tmp_path / "a", 1e-9))
    plain = trainer(tmp_path / "b", 1e-9)
    plain.scales["generator"].scale = 1.0
    flushed = generator_grad(plain)
    assert flushed.abs().max() == 0
    reference = trainer(tmp_path / "c", 1e-9, precision="no")
    reference.obj.half = False  # the same loss in float32
    exact = generator_grad(reference)
    assert exact.abs().max() > 0
    assert torch.allclose(scaled, exact, rtol=1e-3, atol=0)


def test_overflow_is_skipped_and_backs_off(tmp_path):
    """The gradient reaching x0 in fp16 is 1e3 / 4 (batch mean) times the scale, over fp16's 65504 at 2^16
    (and the fp16 autocast linear's weight gradient sums 4 of them): each such step is skipped and counted and
    halves the scale once, until a power of two at most 256 fits; then the weights move."""
    t = trainer(tmp_path, 1e3, max_skipped=50, steps=16)
    before = t.obj.modules["generator"].weight.detach().clone()
    t.fit()
    scale = t.scales["generator"].scale
    assert scale <= 256.0 and t.skipped["generator"] == 16 - math.log2(scale)
    assert t.skipped["generator"] < 16 and not torch.equal(before, t.obj.modules["generator"].weight)
    assert not torch.equal(before, t.obj.modules["generator"].weight)
    meta = ckpt.load(ckpt.latest(tmp_path / "checkpoints"))[1]
    assert meta["loss_scale"]["generator"] == {"scale": scale, "good": t.scales["generator"].good}


def test_resume_restores_the_scale(tmp_path):
    t = trainer(tmp_path, 1e3, max_skipped=50, steps=16)
    t.fit()
    again = trainer(tmp_path, 1e3, max_skipped=50, steps=16)
    again._resume()
    assert again.scales["generator"].state() == t.scales["generator"].state()


def test_loss_scale_grows_after_interval():
    s = LossScale(init=8.0, interval=3)
    for _ in range(2):
        s.update(True)
    assert s.scale == 8.0
    s.update(True)
    assert s.scale == 16.0 and s.good == 0
    s.update(False)
    assert s.scale == 8.0 and s.good == 0


def test_bf16_and_no_have_no_scale(tmp_path):
    assert trainer(tmp_path / "a", 1.0, precision="bf16").scales == {}
    assert trainer(tmp_path / "b", 1.0, precision="no").scales == {}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_tiny_distillation_trains_in_half_precision(tmp_path, precision):
    """SiD on the tiny Gaussian teacher runs in autocast bf16/fp16 with finite weights; bf16 skips nothing, fp16
    skips exactly the steps whose scaled gradients overflowed (one halving of that module's scale each)."""
    from tiny import make_objective

    cfg = TrainConfig(steps=20, batch_size=32, progress=False, device="cpu", mixed_precision=precision,
                      lr={"generator": 1e-2, "fake": 1e-2})
    t = Trainer(make_objective("sid"), cfg, tmp_path)
    t.fit()
    if precision == "bf16":
        assert t.skipped == {"generator": 0, "aux": 0}
    else:
        halvings = {k: 16 - math.log2(s.scale) for k, s in t.scales.items()}  # no growth within 20 steps
        assert t.skipped == {"generator": halvings["generator"], "aux": halvings["fake"]} and t.skipped["aux"] < 20
    assert all(torch.isfinite(p).all() for p in t.obj.modules["generator"].parameters())
