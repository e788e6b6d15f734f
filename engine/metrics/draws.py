"""A sample metric as mean +- sd over disjoint draws, and a comparison that calls one sampler better than
another only when the difference exceeds its uncertainty.

One draw of a two-sample statistic such as the energy distance varies by about half its mean at a
few thousand points, so a single figure cannot rank samplers that are close. `energy_draws` splits
the samples into `draws` disjoint sets of equal size and scores each against its own fresh target
set; `floor_draws` does the same for fresh true samples: what a perfect sampler scores under the
same protocol.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .distances import energy_distance

TargetSampler = Callable[[int, torch.Generator], Tensor]  # (n, generator) -> (n, D) true samples


@dataclass(frozen=True)
class Estimate:
    """Mean and sample standard deviation of `k` independent draws of a statistic."""

    mean: float
    sd: float
    k: int

    @classmethod
    def of(cls, values) -> Estimate:
        v = torch.as_tensor(values, dtype=torch.float64).flatten()
        if v.numel() < 2:
            raise ValueError(f"an estimate needs at least 2 draws, got {v.numel()}")
        return cls(float(v.mean()), float(v.std()), int(v.numel()))

    @property
    def se(self) -> float:
        """Standard error of the mean."""
        return self.sd / math.sqrt(self.k)

    def minus(self, other: Estimate) -> tuple[float, float]:
        """(difference of means, its standard error) for independent draws."""
        return self.mean - other.mean, math.hypot(self.se, other.se)

    def lower_than(self, other: Estimate, z: float = 2.0) -> bool:
        """True only when this mean is below the other's by more than z standard errors of the difference."""
        diff, se = self.minus(other)
        return diff < -z * se

    def __format__(self, spec: str) -> str:
        spec = spec or ".4f"
        return f"{self.mean:{spec}} ± {self.sd:{spec}}"


def energy_draws(samples: Tensor, target: TargetSampler, draws: int, generator: torch.Generator) -> Estimate:
    """Energy distance (V-statistic) of `draws` disjoint equal parts of `samples` (N, D), each against its own
    fresh set of as many target samples: mean +- sd over the parts. N must be at least 2 * draws."""
    n = samples.shape[0] // draws
    if draws < 2 or n < 2:
        raise ValueError(f"energy_draws needs draws >= 2 and at least 2 samples per draw; got {samples.shape[0]} "
                         f"samples in {draws} draws")
    parts = samples[: n * draws].reshape(draws, n, *samples.shape[1:])
    return Estimate.of([energy_distance(p, target(n, generator), unbiased=False) for p in parts])


def floor_draws(target: TargetSampler, n: int, draws: int, generator: torch.Generator) -> Estimate:
    """What a perfect sampler scores under `energy_draws`: fresh true sets of n against fresh target sets of n."""
    return energy_draws(target(n * draws, generator), target, draws, generator)
