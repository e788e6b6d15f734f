"""Metrics of toy-mixture samples against the exact target."""
from __future__ import annotations

import torch

from unidistill.engine.metrics import energy_distance, gaussian_radius, mode_report, sliced_wasserstein

from .config import EvalConfig
from .mixture import GaussianMixture


class Evaluator:
    """Energy distance (V-statistic) to target samples next to its two-sample floor (true vs true
    samples of the same size), sliced Wasserstein,
    mode coverage and the largest mode-weight error."""

    def __init__(self, mixture: GaussianMixture, cfg: EvalConfig):
        self.mixture, self.cfg = mixture, cfg
        self.radius = cfg.radius or gaussian_radius(float(mixture.stds.max()), mixture.dim)
        g = torch.Generator().manual_seed(12345)
        self.target = mixture.sample(cfg.n_samples, generator=g)
        draws = [energy_distance(mixture.sample(cfg.n_samples, generator=g), mixture.sample(cfg.n_samples, generator=g),
                                 unbiased=False) for _ in range(5)]
        self.floor = sum(draws) / len(draws)  # one draw's spread is comparable to its mean

    def __call__(self, samples: torch.Tensor) -> dict[str, float]:
        if not torch.isfinite(samples).all():
            return {"energy": float("nan"), "modes_covered": 0.0}
        rep = mode_report(samples, self.mixture.means.float(), self.mixture.weights.float(), self.radius,
                          min_fraction=self.cfg.min_fraction)
        return {
            "energy": energy_distance(samples, self.target, unbiased=False),
            "energy_floor": self.floor,
            "sliced_w2": sliced_wasserstein(samples, self.target, generator=torch.Generator().manual_seed(0)),
            "modes_covered": float(rep.modes_covered),
            "modes": float(rep.n_modes),
            "max_weight_error": float(rep.max_weight_error),
            "off_mode": float(rep.off_mode),
        }
