"""Mixed precision: autocast for the forward passes and, for fp16, a dynamic loss scale per optimised module.

fp16 has 5 exponent bits: gradients below about 6e-8 flush to zero. Dynamic loss scaling (Micikevicius et al.
2018, "Mixed Precision Training", sec. 3.2) multiplies the loss by S before backward, so the gradients are S
times larger while they pass through fp16, and divides them by S before clipping and the step. A step whose
gradients overflow is skipped (counted like any non-finite step) and S halves; after `interval` finite steps
in a row S doubles. Each optimised module has its own S, since their losses and gradients live on different
scales (the defaults are those of `torch.amp.GradScaler`). bf16 has float32's exponent range and needs none.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .parallel import local

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(mode: str, device: torch.device):
    """The forward passes' autocast context for train.mixed_precision (`no`: nothing)."""
    if mode in DTYPES:
        return torch.autocast(device.type, dtype=DTYPES[mode])
    return contextlib.nullcontext()


class LossScale:
    """S for one module: `scale` multiplies its loss, `unscale` divides its gradients, `update` adapts S."""

    def __init__(self, init: float = 2.0 ** 16, growth: float = 2.0, backoff: float = 0.5, interval: int = 2000):
        self.scale, self.growth, self.backoff, self.interval = init, growth, backoff, interval
        self.good = 0  # finite steps since S last changed

    def unscale(self, params: list[nn.Parameter]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            torch._foreach_mul_([local(g) for g in grads], 1.0 / self.scale)

    def update(self, finite: bool) -> None:
        if not finite:
            self.scale, self.good = self.scale * self.backoff, 0
            return
        self.good += 1
        if self.good >= self.interval:
            self.scale, self.good = self.scale * self.growth, 0

    def state(self) -> dict:
        return {"scale": self.scale, "good": self.good}

    def load(self, state: dict) -> None:
        self.scale, self.good = float(state["scale"]), int(state["good"])
