"""Metrics of toy-mixture samples against the exact target: the teacher, or for a reward run the exact
RLHF optimum p* (with the mean reward and an estimate of the KL to the teacher beside the optimum's)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from unidistill.engine.metrics import energy_draws, floor_draws, gaussian_radius, kl_to, mode_report, sliced_wasserstein

from .config import EvalConfig
from .mixture import GaussianMixture


class Evaluator:
    """Energy distance (V-statistic) as mean +- sd over `draws` disjoint parts of the samples, each against
    fresh target samples, next to its floor (fresh true samples under the same protocol), sliced Wasserstein,
    mode coverage, the largest mode-weight error and the off-mode share over all samples; the target
    is the teacher, or the optimum's mixture p* when `optimum` is given. With a `reward`: its mean, and the KL of
    the samples to the teacher (k-NN estimate), next to the optimum's exact values."""

    def __init__(self, mixture: GaussianMixture, cfg: EvalConfig, reward: Callable | None = None,
                 optimum: dict | None = None):
        self.teacher, self.cfg, self.reward, self.optimum = mixture, cfg, reward, optimum
        self.mixture = optimum["mixture"] if optimum is not None else mixture
        self.radius = cfg.radius or gaussian_radius(float(self.mixture.stds.max()), self.mixture.dim)
        self.per_draw = cfg.n_samples // cfg.draws
        self.floor = floor_draws(self._target, self.per_draw, cfg.draws, torch.Generator().manual_seed(12345))

    def _target(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.mixture.sample(n, generator=generator)

    def __call__(self, samples: torch.Tensor) -> dict[str, float]:
        if not torch.isfinite(samples).all():
            return {"energy": float("nan"), "modes_covered": 0.0}
        rep = mode_report(samples, self.mixture.means.float(), self.mixture.weights.float(), self.radius,
                          min_fraction=self.cfg.min_fraction)
        g = torch.Generator().manual_seed(54321)  # the same target sets at every evaluation
        energy = energy_draws(samples, self._target, self.cfg.draws, g)
        out = {
            "energy": energy.mean,
            "energy_sd": energy.sd,
            "energy_floor": self.floor.mean,
            "energy_floor_sd": self.floor.sd,
            "sliced_w2": sliced_wasserstein(samples[: self.per_draw], self._target(self.per_draw, g),
                                            generator=torch.Generator().manual_seed(0)),
            "modes_covered": float(rep.modes_covered),
            "modes": float(rep.n_modes),
            "max_weight_error": float(rep.max_weight_error),
            "off_mode": float(rep.off_mode),
        }
        if self.reward is not None:
            out["reward"] = float(self.reward(samples.double()).mean())
            out["kl_teacher"] = kl_to(samples, self.teacher.log_prob)
        if self.optimum is not None:
            out["reward_optimum"], out["kl_optimum"] = self.optimum["reward"], self.optimum["kl"]
        return out
